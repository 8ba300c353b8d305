"""Image datasets: folders of image files (labels from sub-folders) and IDX files (the MNIST format).

Unreadable files are found at construction: every file is read once, hashed (for the fingerprint)
and fully decoded with Pillow, so the ids, the labels and the fingerprint never change later because
a file failed to decode in the middle of an extraction. ``on_error="skip"`` leaves such files out
(listed in :attr:`ImageFolder.skipped`, with a warning naming them); ``"raise"`` stops at the first,
naming its path.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import warnings
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from alignkit._common import optional_import
from alignkit._progress import progress as progress_bar
from alignkit.data.base import Dataset, update_array, update_str

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
ON_ERROR = ("raise", "skip")


def _pil() -> Any:
    return optional_import("PIL.Image", "vision", what="reading image files", package="pillow")


def to_rgb_or_l(im: Any) -> Any:
    """A loaded PIL image as mode RGB or L (palette/alpha/CMYK/16-bit images become RGB or L)."""
    if im.mode in ("RGB", "L"):
        return im.copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        return _pil().fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if im.mode in ("1", "LA"):
        return im.convert("L")
    if im.mode == "P" and "transparency" in im.info:
        return im.convert("RGBA").convert("RGB")
    return im.convert("RGB")


def decode_image(data: bytes) -> Any:
    """Fully decode image bytes into a PIL image (RGB or L); raises on any unreadable or truncated file."""
    Image = _pil()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return to_rgb_or_l(im)


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
    return on_error


def check_folder(root: str | os.PathLike[str]) -> Path:
    p = Path(root).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such folder")
    if not p.is_dir():
        raise NotADirectoryError(f"{p}: is a file; expected a folder (one sub-folder per class)")
    return p


def scan_class_folder(root: Path, extensions: tuple[str, ...]) -> tuple[list[Path], list[str] | None, list[int]]:
    """Files under ``root`` with the given extensions, sorted by relative path.

    With sub-folders holding files, each first-level sub-folder is a class (sorted names, files found
    recursively inside it; files directly in ``root`` are then ignored, with a warning). Without
    sub-folders, the files of ``root`` itself, unlabelled. Hidden files and folders are skipped.
    """

    def wanted(f: Path) -> bool:
        return f.is_file() and f.suffix.lower() in extensions and not f.name.startswith(".")

    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes: list[str] = []
    files: list[Path] = []
    labels: list[int] = []
    for d in subdirs:
        found = sorted(
            (f for f in d.rglob("*") if wanted(f) and not any(part.startswith(".") for part in f.relative_to(d).parts)),
            key=lambda f: f.relative_to(root).as_posix(),
        )
        if found:
            labels.extend([len(classes)] * len(found))
            classes.append(d.name)
            files.extend(found)
    top = sorted((f for f in root.iterdir() if wanted(f)), key=lambda f: f.name)
    if classes:
        if top:
            warnings.warn(
                f"{root}: {len(top)} file(s) directly in the root folder are ignored (classes come from "
                f"sub-folders), e.g. {[f.name for f in top[:3]]}",
                stacklevel=3,
            )
        return files, classes, labels
    return top, None, []


class _FileFolder(Dataset):
    """Shared machinery of image and audio folders: scan, read + hash + check every file once."""

    extensions: tuple[str, ...] = ()
    kind = "file"

    def __init__(
        self,
        root: str | os.PathLike[str],
        on_error: str = "raise",
        *,
        name: str | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__()
        self.on_error = check_on_error(on_error)
        self.root = check_folder(root)
        self.name = name or self.root.name
        files, classes, labels = scan_class_folder(self.root, self.extensions)
        if not files:
            raise ValueError(
                f"no items found in {self.root}: no {'/'.join(self.extensions)} files "
                "(in the folder or its class sub-folders)"
            )
        self.skipped: list[tuple[str, str]] = []
        kept: list[Path] = []
        kept_labels: list[int] = []
        digests: list[bytes] = []
        iterator: Any = files
        if progress and len(files) > 2000:
            iterator = progress_bar(files, desc=f"checking {self.kind}s in {self.root.name}", unit=self.kind)
        for i, f in enumerate(iterator):
            try:
                data = f.read_bytes()
                self._check(data)
            except Exception as exc:  # any decoder failure makes the file unreadable
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if self.on_error == "raise":
                    raise ValueError(
                        f"{f}: unreadable {self.kind} ({type(exc).__name__}: {reason}); fix or remove it, or pass "
                        "on_error='skip' to leave unreadable files out"
                    ) from None
                self.skipped.append((str(f), f"{type(exc).__name__}: {reason}"))
                continue
            kept.append(f)
            digests.append(hashlib.sha256(data).digest())
            if classes is not None:
                kept_labels.append(labels[i])
        if self.skipped:
            shown = ", ".join(p for p, _ in self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
            warnings.warn(
                f"{self.root}: skipped {len(self.skipped)} unreadable {self.kind} file(s) (on_error='skip'): "
                f"{shown}; see .skipped for the reasons",
                stacklevel=3,
            )
        if not kept:
            raise ValueError(f"no items found in {self.root}: all {len(files)} {self.kind} files are unreadable")
        self.paths = kept
        self._digests = digests
        self._set_ids([f.relative_to(self.root).as_posix() for f in kept], str(self.root))
        if classes is not None:
            self._labels = np.asarray(kept_labels, dtype=np.int64)
            self._class_names = classes

    @abstractmethod
    def _check(self, data: bytes) -> None:
        """Decode ``data`` fully; raise if it is not a readable item."""

    def _content_hash(self, h: Any) -> None:
        update_str(h, type(self).__name__)
        for d in self._digests:
            h.update(d)

    def _read(self, path: Path) -> Any:
        try:
            return self._decode(path.read_bytes())
        except Exception as exc:
            raise ValueError(
                f"{path}: unreadable {self.kind} ({type(exc).__name__}: {exc}); it was readable when the dataset "
                "was built, so it changed since: rebuild the dataset"
            ) from None

    @abstractmethod
    def _decode(self, data: bytes) -> Any:
        """The item held in ``data``."""

    def items(self, start: int = 0, stop: int | None = None) -> list[Any]:
        start, stop = self._range(start, stop)
        return [self._read(p) for p in self.paths[start:stop]]


class ImageFolder(_FileFolder):
    """Images in ``root/<class>/...`` (labels = sorted sub-folder names) or directly in ``root`` (unlabelled).

    Reads .png/.jpg/.jpeg/.bmp/.gif/.webp with Pillow; items are PIL images in mode RGB or L (GIF:
    first frame). ids are paths relative to ``root`` (POSIX separators). The fingerprint hashes each
    file's bytes in sorted order. Every file is decoded once at construction (see the module notes).
    """

    modality = "image"
    extensions = IMAGE_EXTENSIONS
    kind = "image"

    def __init__(
        self,
        root: str | os.PathLike[str],
        on_error: str = "raise",
        *,
        name: str | None = None,
        progress: bool = True,
    ) -> None:
        _pil()
        super().__init__(root, on_error, name=name, progress=progress)

    def _check(self, data: bytes) -> None:
        decode_image(data)

    def _decode(self, data: bytes) -> Any:
        return decode_image(data)


# ------------------------------------------------------------------------------------------- IDX

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder(">").str: k for k, v in _IDX_DTYPES.items()}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzip allowed) into an array, validating header and size.

    Header: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32, 0x0D
    float32, 0x0E float64), the number of dimensions, then each dimension as a big-endian uint32.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise IsADirectoryError(f"{p}: is a folder; expected an IDX file")
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ValueError(f"{p}: corrupt or truncated gzip data: {exc}") from None
    if len(raw) < 4:
        raise ValueError(f"{p}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte magic number")
    zero, code, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{p}: not an IDX file: bad magic number 0x{raw[:4].hex()} (expected 0x0000 + a type code in "
            f"{[hex(c) for c in _IDX_DTYPES]} + the number of dimensions)"
        )
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{p}: truncated IDX header: {len(raw)} bytes, the header alone needs {head}")
    shape = struct.unpack(f">{ndim}I", raw[4:head])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = head + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(
            f"{p}: IDX file {state}: header says shape {list(shape)} of {dtype.name} ({expected} bytes in all); "
            f"the file holds {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed (reproducibly, mtime 0) when the name ends in .gz."""
    arr = np.asarray(array)
    code = _IDX_CODES.get(arr.dtype.newbyteorder(">").str)
    if code is None:
        raise TypeError(f"IDX holds uint8, int8, int16, int32, float32 or float64; got {arr.dtype}")
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions; got {arr.ndim}")
    header = b"\x00\x00" + bytes([code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">")).tobytes()
    p = Path(path)
    if p.suffix == ".gz":
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
            gz.write(data)
        data = buf.getvalue()
    p.write_bytes(data)
    return p


class IDXImages(Dataset):
    """Images of an IDX file (N×H×W, e.g. MNIST / Fashion-MNIST; gzip allowed), with optional IDX labels.

    Items are uint8 arrays H×W (a copy per item); ids are the record indices ``"0"``, ``"1"``, ...;
    ``limit`` keeps the first ``limit`` records. The fingerprint hashes the decoded pixels used.
    """

    modality = "image"

    def __init__(
        self,
        images_path: str | os.PathLike[str],
        labels_path: str | os.PathLike[str] | None = None,
        class_names: list[str] | None = None,
        limit: int | None = None,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__()
        images = read_idx(images_path)
        p = Path(images_path).expanduser()
        self.images_path = p
        self.labels_path = None if labels_path is None else Path(labels_path).expanduser()
        self.name = name or p.name.split(".")[0]
        if images.ndim not in (3, 4):
            raise ValueError(f"{p}: IDX images must be N×H×W (or N×H×W×C); got shape {list(images.shape)}")
        if images.dtype != np.uint8:
            raise ValueError(f"{p}: IDX images must be unsigned bytes (type 0x08); got {images.dtype}")
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit must be a positive number of images; got {limit}")
            images = images[:limit]
        if images.shape[0] == 0:
            raise ValueError(f"no items found in {p}: the IDX file holds 0 images")
        self._images = images
        self._set_ids(range(images.shape[0]), str(p))
        if self.labels_path is not None:
            labels = read_idx(self.labels_path)
            if labels.ndim != 1 or labels.dtype.kind not in "iu":
                raise ValueError(
                    f"{self.labels_path}: IDX labels must be a 1-D integer array; got {labels.dtype} "
                    f"shape {list(labels.shape)}"
                )
            if limit is not None:
                labels = labels[:limit]
            if labels.shape[0] != images.shape[0]:
                raise ValueError(f"{self.labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {p}")
            self._labels = labels.astype(np.int64)
            if class_names is not None and int(self._labels.max()) >= len(class_names):
                raise ValueError(
                    f"{self.labels_path}: label {int(self._labels.max())} has no class name "
                    f"({len(class_names)} names given)"
                )
        if class_names is not None:
            self._class_names = [str(c) for c in class_names]

    def items(self, start: int = 0, stop: int | None = None) -> list[np.ndarray]:
        start, stop = self._range(start, stop)
        return [img.copy() for img in self._images[start:stop]]

    def _content_hash(self, h: Any) -> None:
        update_array(h, self._images)
