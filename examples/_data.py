"""Where the examples find their data: ``--data-dir DIR`` or the environment variable ``ALIGNKIT_DATA``.

The data are not part of alignkit (licences, size); each example documents the files it reads below that folder
(e.g. ``DIR/bible/verses.tsv.gz``). A flag naming the file itself (``--data``, ``--dictionary``) overrides the folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

ENV = "ALIGNKIT_DATA"
#: embedding cache shared by the examples (embeddings are keyed by model and data, so sharing is safe)
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "alignkit-exp-cache"


def add_data_dir(parser: argparse.ArgumentParser, layout: str) -> None:
    """``--data-dir`` (default ``$ALIGNKIT_DATA``); ``layout`` says what the example reads below it."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"folder holding the example's data ({layout}); default: ${ENV}",
    )


def data_path(args: argparse.Namespace, relative: str, *, override: Path | None = None, what: str) -> Path:
    """``override`` if given, else ``<--data-dir or $ALIGNKIT_DATA>/<relative>``; exits with a clear message
    when neither is given or the path does not exist."""
    if override is not None:
        path, source = override, "the path given"
    else:
        root = args.data_dir or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
        if root is None:
            _fail(f"{what}: not part of alignkit; pass --data-dir DIR or set {ENV}=DIR (reads DIR/{relative})")
        path = root / relative
        source = "--data-dir" if args.data_dir else f"${ENV}"
    if not path.exists():
        _fail(f"{what}: {path} does not exist ({source})")
    return path


def fashion_pairs(
    root: Path, *, n_train: int, n_test: int, data_seed: int = 0, input_size: int = 112, cache: Path = DEFAULT_CACHE
) -> dict[str, Any]:
    """Fashion-MNIST image ↔ caption pairs as ``zero_shot_fashion.py`` builds them, final layer only (cached).

    Images: ``zero_shot_fashion.load_split`` (``n_train`` of ``train``, ``n_test`` of ``t10k``, seeded by
    ``data_seed``) through ``offline:mobilenet-v2`` at ``input_size``, layer ``final`` (= ``block_18``, the
    pooled pre-logits). Captions: the 10·T class × template strings (class-major, as ``zero_shot`` wants its
    prototypes) through ``offline:minilm-l6`` final; each image gets its class in a template drawn with
    ``default_rng(data_seed + 1)`` (train, the draw ``zero_shot_fashion.py`` makes) or ``data_seed + 2`` (test).

    Returns float64 arrays ``img_tr`` (n_train, 1280), ``img_te``, ``txt`` (10·T, 384) and int arrays ``y_tr``,
    ``y_te``, ``tpl_tr``, ``tpl_te``; plus ``T`` and ``classes``. Caption of training image i:
    ``txt[y_tr[i] * T + tpl_tr[i]]``.
    """
    import time

    from alignkit.data import InMemory
    from alignkit.data.captions import CAPTION_TEMPLATES
    from alignkit.encoders import load_encoder
    from alignkit.store import EmbeddingStore
    from zero_shot_fashion import CLASSES, load_split  # the sibling script (examples/ is on sys.path)

    store = EmbeddingStore(cache)
    t0 = time.perf_counter()
    train = load_split(root, "train", n_train, data_seed)
    test = load_split(root, "t10k", n_test, data_seed)
    venc = load_encoder("offline:mobilenet-v2", input_size=input_size)
    img = [
        np.asarray(store.extract(venc, ds, ["final"], progress=False)["final"], dtype=np.float64)
        for ds in (train, test)
    ]
    T = len(CAPTION_TEMPLATES)
    texts = [tpl.format(c.lower()) for c in CLASSES for tpl in CAPTION_TEMPLATES]
    tenc = load_encoder("offline:minilm-l6")
    txt = store.extract(tenc, InMemory(texts, "text", name="fashion-caption-templates"), ["final"], progress=False)
    print(
        f"Fashion-MNIST: {len(train)} train + {len(test)} test images, {len(texts)} captions "
        f"({time.perf_counter() - t0:.0f}s, embedding included on first use)"
    )
    return {
        "img_tr": img[0],
        "img_te": img[1],
        "txt": np.asarray(txt["final"], dtype=np.float64),
        "y_tr": np.asarray(train.labels, dtype=np.int64),
        "y_te": np.asarray(test.labels, dtype=np.int64),
        "tpl_tr": np.random.default_rng(data_seed + 1).integers(T, size=len(train)),
        "tpl_te": np.random.default_rng(data_seed + 2).integers(T, size=len(test)),
        "T": T,
        "classes": list(CLASSES),
    }


def _fail(message: str) -> NoReturn:
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    raise SystemExit(2)
