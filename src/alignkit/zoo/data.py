"""Image data for the zoo: uint8 images → float tensors ``(n, C, H, W)`` normalised by a fixed mean/std.

The mean and std are Fashion-MNIST's training-set pixel statistics (0.2860, 0.3530 on [0, 1]), fixed so that every
network, every dataset and the :class:`~alignkit.zoo.encoder.ZooEncoder` see pixels the same way (checkpoints record
them). Images come through the dataset machinery (:class:`alignkit.data.IDXImages`, :func:`alignkit.data.read_idx`,
data specs), so users train on their own data with the specs they already use.

:func:`fashion_mnist` reads the four IDX files of the full dataset (Xiao et al. 2017, "Fashion-MNIST: a Novel Image
Dataset for Benchmarking Machine Learning Algorithms"; 60,000 training and 10,000 test images) from a folder;
:func:`sample_data` splits the bundled 1,000-image sample, for quick tests only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from alignkit.data.base import Dataset
from alignkit.data.image import IDXImages, read_idx

FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
#: the environment variable naming the folder of the Fashion-MNIST IDX files
ROOT_ENV = "ALIGNKIT_FASHION_MNIST"
FASHION_MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


class ImageData(NamedTuple):
    """Training and test images (float32 ``(n, C, H, W)``, normalised) and labels (int64 ``(n,)``)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def normalise(images: Any, mean: float = FASHION_MNIST_MEAN, std: float = FASHION_MNIST_STD) -> torch.Tensor:
    """uint8 images ``(n, H, W)`` or ``(n, H, W, C)`` (an array, a tensor or a list of ``H×W[×C]`` arrays / PIL
    images) → float32 ``(n, C, H, W)`` with ``(x/255 − mean)/std``."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is empty")
        arrays = [_item_array(im, i) for i, im in enumerate(images)]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"images must all have one size; got shapes {sorted(shapes)[:4]}")
        arr = np.stack(arrays)
    else:
        arr = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixels (0–255); got dtype {arr.dtype}")
    if arr.ndim not in (3, 4) or arr.shape[0] == 0:
        raise ValueError(f"images must be (n, H, W) or (n, H, W, C) with n ≥ 1; got shape {tuple(arr.shape)}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return ((x / 255.0 - mean) / std).contiguous()


def _item_array(item: Any, i: int) -> np.ndarray:
    """One dataset item (uint8 array, or a PIL image: made grey unless RGB) as a uint8 array."""
    if hasattr(item, "mode") and hasattr(item, "convert"):  # a PIL image (ImageFolder items)
        item = item if item.mode in ("L", "RGB") else item.convert("L")
        return np.asarray(item, dtype=np.uint8)
    arr = np.asarray(item)
    if arr.dtype != np.uint8:
        raise ValueError(f"image {i}: expected uint8 pixels; got dtype {arr.dtype}")
    return arr


def load_images(
    source: str | os.PathLike[str] | Dataset,
    labels: str | os.PathLike[str] | Sequence[int] | np.ndarray | None = None,
    *,
    limit: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, labels)``: float32 ``(n, C, H, W)`` normalised, int64 ``(n,)`` (None when there are none).

    source : a dataset, an IDX image file (``labels`` = its IDX label file), or a data spec
        (``sample:fashion-mnist``, ``PATH-images-idx3-ubyte.gz,labels=PATH``, ``images:DIR``; see
        :mod:`alignkit.data.spec`).
    labels : an IDX label file or an array of integer labels; None = the dataset's own labels.
    """
    if isinstance(source, Dataset):
        dataset = source
    else:
        text = os.fspath(source)
        p = Path(text).expanduser()
        if p.is_file():
            dataset = IDXImages(p, labels if isinstance(labels, (str, os.PathLike)) else None, limit=limit)
        else:
            from alignkit.data.spec import dataset_from_spec

            dataset = dataset_from_spec(text)
    if dataset.modality != "image":
        raise ValueError(f"source must be an image dataset; {dataset.name!r} holds {dataset.modality}")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    x = normalise(dataset.items(0, n))
    y: Any
    if labels is None:
        y = dataset.labels
    elif isinstance(labels, (str, os.PathLike)):
        y = dataset.labels if isinstance(dataset, IDXImages) and dataset.labels_path is not None else read_idx(labels)
    else:
        y = np.asarray(labels)
    if y is None:
        return x, None
    y = np.asarray(y)[:n]
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != n:
        raise ValueError(f"labels must be {n} integers (one per image); got {y.dtype} shape {tuple(y.shape)}")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"labels must be non-negative class indices; got {int(y.min())}")
    return x, torch.from_numpy(y.astype(np.int64))


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root}: no {stem} or {stem}.gz (a Fashion-MNIST folder holds the 4 IDX files)")


def fashion_mnist_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root``, else the folder in ``$ALIGNKIT_FASHION_MNIST``; an error naming both when neither is given."""
    if root is None:
        env = os.environ.get(ROOT_ENV)
        if not env:
            raise ValueError(
                f"no Fashion-MNIST folder: pass root= or set ${ROOT_ENV} to the folder holding "
                "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
                "t10k-labels-idx1-ubyte.gz (from https://github.com/zalandoresearch/fashion-mnist); "
                "alignkit.zoo.sample_data() gives the bundled 1,000 images for quick tests"
            )
        root = env
    p = Path(root).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such folder (the Fashion-MNIST IDX files)")
    return p


def fashion_mnist(root: str | os.PathLike[str] | None = None) -> ImageData:
    """The full Fashion-MNIST (60,000 training, 10,000 test images, 1×28×28, normalised) from the 4 IDX files
    (gzip or not) in ``root`` (default ``$ALIGNKIT_FASHION_MNIST``)."""
    folder = fashion_mnist_root(root)
    paths = {k: _find(folder, stem) for k, stem in FASHION_MNIST_FILES.items()}
    train_x, train_y = load_images(paths["train_x"], paths["train_y"])
    test_x, test_y = load_images(paths["test_x"], paths["test_y"])
    assert train_y is not None and test_y is not None  # label files were given
    return ImageData(train_x, train_y, test_x, test_y)


def sample_data(test_every: int = 5) -> ImageData:
    """The bundled 1,000 Fashion-MNIST test images (100 per class) split for quick tests: every
    ``test_every``-th image is a test image, the rest train. Far too few for a real zoo."""
    from alignkit.data.samples import fashion_mnist_sample

    if isinstance(test_every, bool) or not isinstance(test_every, int) or test_every < 2:
        raise ValueError(f"test_every must be an integer ≥ 2; got {test_every!r}")
    x, y = load_images(fashion_mnist_sample())
    assert y is not None
    test = torch.zeros(len(x), dtype=torch.bool)
    test[::test_every] = True
    return ImageData(x[~test], y[~test], x[test], y[test])


def check_data(data: Any, input_shape: Sequence[int] | None = None, num_classes: int | None = None) -> ImageData:
    """``data`` as :class:`ImageData`, validated: 4 tensors, float images ``(n, *input_shape)``, integer labels in
    ``[0, num_classes)``, one per image."""
    if not isinstance(data, tuple) or len(data) != 4:
        raise ValueError("data must be (train_x, train_y, test_x, test_y), e.g. alignkit.zoo.fashion_mnist(root)")
    out = []
    for name, t in zip(ImageData._fields, data, strict=True):
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(t)
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"data.{name} must be a tensor; got {type(t).__name__}")
        out.append(t)
    d = ImageData(*out)
    for split in ("train", "test"):
        x, y = getattr(d, f"{split}_x"), getattr(d, f"{split}_y")
        if not x.is_floating_point() or x.ndim != 4:
            raise ValueError(
                f"data.{split}_x must be float images (n, C, H, W) (see alignkit.zoo.normalise); got {x.dtype} "
                f"shape {tuple(x.shape)}"
            )
        if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
            raise ValueError(
                f"data.{split}_x holds images of shape {tuple(x.shape[1:])}; the network expects {tuple(input_shape)}"
            )
        if y.ndim != 1 or y.dtype not in (torch.int64, torch.int32, torch.uint8) or len(y) != len(x):
            raise ValueError(f"data.{split}_y must be {len(x)} integer labels; got {y.dtype} shape {tuple(y.shape)}")
        if len(x) == 0:
            raise ValueError(f"data.{split}_x holds no images")
        if num_classes is not None and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(
                f"data.{split}_y holds labels in [{int(y.min())}, {int(y.max())}]; "
                f"the network has {num_classes} classes"
            )
    return ImageData(d.train_x.float(), d.train_y.long(), d.test_x.float(), d.test_y.long())


def data_digest(data: ImageData) -> str:
    """sha256 of the training and test tensors' bytes (shapes included): what a checkpoint records of its data."""
    h = hashlib.sha256()
    for t in data:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().reshape(-1).view(np.uint8).data)
    return h.hexdigest()
