"""Safe readers and atomic writers for embedding matrices (items × features). No pickle anywhere.

Readers: ``.npy``, ``.npz``, ``.safetensors``, ``.parquet`` and ``.csv``. Every reader returns a
2-D floating numpy array (integers become float64; float16/32/64 are kept) and raises a clear error
naming the file for anything else: missing or empty files, unknown extensions, corrupt files, object
or string data, ragged vectors, 1-D arrays and NaN/Inf values.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".npy", ".npz", ".safetensors", ".parquet", ".csv")
WRITABLE_EXTENSIONS: tuple[str, ...] = (".npy", ".safetensors")
KEYED_EXTENSIONS: tuple[str, ...] = (".npz", ".safetensors")  # files holding several named arrays
COLUMN_EXTENSIONS: tuple[str, ...] = (".parquet",)
DEFAULT_TENSOR_KEY = "embeddings"


# --------------------------------------------------------------------------------------------- read


def load_array(path: str | os.PathLike[str], *, key: str | None = None, column: str | None = None) -> np.ndarray:
    """Read one 2-D float matrix (rows = items) from ``path``; the format follows the extension.

    key : which array of an ``.npz`` / ``.safetensors`` file (needed when it holds several).
    column : which vector column of a ``.parquet`` file (needed when it has several list columns).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"{p}: unsupported file type {p.suffix or '(no extension)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if key is not None and ext not in KEYED_EXTENSIONS:
        raise ValueError(f"{p}: key={key!r} applies only to {' and '.join(KEYED_EXTENSIONS)} files")
    if column is not None and ext not in COLUMN_EXTENSIONS:
        raise ValueError(f"{p}: column={column!r} applies only to .parquet files")
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise IsADirectoryError(f"{p}: is a directory, expected a {ext} file")
    if p.stat().st_size == 0:
        raise ValueError(f"{p}: file is empty (0 bytes)")
    reader = {
        ".npy": _read_npy,
        ".npz": _read_npz,
        ".safetensors": _read_safetensors,
        ".parquet": _read_parquet,
        ".csv": _read_csv,
    }[ext]
    arr = reader(p, key=key, column=column)
    return _check_matrix(arr, p)


LABEL_EXTENSIONS: tuple[str, ...] = (".npy", ".txt", ".csv", ".parquet")


def load_labels(path: str | os.PathLike[str], *, column: str | None = None) -> np.ndarray:
    """Read one label per row (class labels, or group ids) from ``path``: a 1-D ``.npy`` (numbers or
    strings, never pickled objects), a ``.txt`` with one label per line, a ``.csv`` / ``.parquet`` column
    (``column``, or the only column)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in LABEL_EXTENSIONS:
        raise ValueError(
            f"{p}: unsupported label file {p.suffix or '(no extension)'!r}; use {', '.join(LABEL_EXTENSIONS)}"
        )
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise ValueError(f"{p}: file is empty (0 bytes)")
    if ext == ".npy":
        arr = _read_npy(p)
    elif ext == ".txt":
        arr = np.asarray([line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()])
    else:
        import pandas as pd

        try:
            df = pd.read_parquet(p) if ext == ".parquet" else pd.read_csv(p)
        except Exception as exc:
            raise _corrupt(p, ext, exc) from None
        if column is None and df.shape[1] != 1:
            raise ValueError(f"{p}: {df.shape[1]} columns ({list(df.columns)[:8]}); name one with column=")
        col = column if column is not None else df.columns[0]
        if col not in df.columns:
            raise ValueError(f"{p}: no column {col!r}; columns: {list(df.columns)[:8]}")
        arr = df[col].to_numpy()
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{p}: expected one label per row (a 1-D list); got shape {arr.shape}")
    return arr


def _check_matrix(arr: np.ndarray, p: Path, what: str = "array") -> np.ndarray:
    """Dtype, shape and finiteness checks shared by every reader."""
    if arr.dtype == object:
        raise ValueError(f"{p}: {what} has dtype object; expected numbers (object arrays are never unpickled)")
    if arr.dtype.kind == "b":
        raise ValueError(f"{p}: {what} holds booleans; expected real numbers")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{p}: {what} has dtype {arr.dtype}; expected real numbers (int or float)")
    if arr.ndim == 1:
        raise ValueError(
            f"{p}: {what} is 1-D with shape {arr.shape}; expected 2-D (items × features). "
            "Reshape it before saving: a.reshape(-1, 1) for one feature per item, a.reshape(1, -1) for one item"
        )
    if arr.ndim != 2:
        raise ValueError(f"{p}: {what} has shape {arr.shape}; expected 2-D (items × features)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{p}: {what} is empty: shape {arr.shape}")
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    elif not arr.flags.writeable:  # Arrow hands out read-only zero-copy views; torch warns on those
        arr = arr.copy()
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise ValueError(
            f"{p}: {what} contains {n_nan} NaN and {n_inf} Inf value(s) out of {arr.size}; clean or impute them first"
        )
    return arr


def _corrupt(p: Path, fmt: str, exc: BaseException) -> ValueError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ValueError(f"{p}: not a readable {fmt} file (corrupt or truncated?): {msg}")


def _read_npy(p: Path, **_: Any) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise ValueError(
                f"{p}: holds an object array (Python objects, readable only by unpickling); "
                "alignkit never unpickles files. Save a numeric array instead"
            ) from None
        if "pickled" in str(exc):
            raise ValueError(
                f"{p}: not in NumPy .npy format (no .npy header; a pickle or another format?); "
                "alignkit never unpickles files"
            ) from None
        raise _corrupt(p, ".npy", exc) from None
    except (OSError, EOFError) as exc:
        raise _corrupt(p, ".npy", exc) from None


def _pick_key(p: Path, keys: list[str], key: str | None, kind: str) -> str:
    if key is None:
        if len(keys) == 1:
            return keys[0]
        if not keys:
            raise ValueError(f"{p}: holds no {kind}s")
        raise ValueError(f"{p}: holds {len(keys)} {kind}s; choose one with key=... (available: {', '.join(keys)})")
    if key not in keys:
        raise ValueError(f"{p}: no {kind} named {key!r}; available: {', '.join(keys)}")
    return key


def _read_npz(p: Path, *, key: str | None = None, **_: Any) -> np.ndarray:
    import zipfile

    try:
        with np.load(p, allow_pickle=False) as z:
            name = _pick_key(p, list(z.files), key, "array")
            try:
                return z[name]
            except ValueError as exc:
                if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                    raise ValueError(
                        f"{p}: array {name!r} is an object array (readable only by unpickling); "
                        "alignkit never unpickles files"
                    ) from None
                raise
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _corrupt(p, ".npz", exc) from None
    except ValueError as exc:
        if str(exc).startswith(str(p)):
            raise
        raise _corrupt(p, ".npz", exc) from None


def _read_safetensors(p: Path, *, key: str | None = None, **_: Any) -> np.ndarray:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(p), framework="numpy") as f:
            name = _pick_key(p, sorted(f.keys()), key, "tensor")
            try:
                return f.get_tensor(name)
            except TypeError:
                pass  # bfloat16 (and other dtypes numpy lacks): read through torch below
        import torch

        with safe_open(str(p), framework="pt") as f:
            t = f.get_tensor(name)
        if t.is_floating_point():
            return t.to(torch.float32).numpy()
        raise ValueError(f"{p}: tensor {name!r} has dtype {t.dtype}; expected real numbers")
    except (SafetensorError, OSError) as exc:
        raise _corrupt(p, ".safetensors", exc) from None


def _read_parquet(p: Path, *, column: str | None = None, **_: Any) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(p)
    except (pa.ArrowException, OSError) as exc:
        raise _corrupt(p, ".parquet", exc) from None
    fields = {f.name: f.type for f in schema}
    list_cols = [n for n, t in fields.items() if _is_list_type(t)]
    if column is not None:
        if column not in fields:
            raise ValueError(f"{p}: no column {column!r}; columns: {', '.join(fields)}")
        if not _is_list_type(fields[column]):
            raise ValueError(
                f"{p}: column {column!r} has type {fields[column]}, not a list of numbers (one vector per row)"
            )
        wanted = [column]
    elif len(list_cols) == 1:
        wanted = list_cols
    elif len(list_cols) > 1:
        raise ValueError(
            f"{p}: has {len(list_cols)} vector columns; choose one with column=... ({', '.join(list_cols)})"
        )
    else:
        bad = [f"{n} ({t})" for n, t in fields.items() if not _is_numeric_type(t)]
        if bad:
            raise ValueError(
                f"{p}: no vector (list) column, and these columns are not numeric, so the columns cannot be "
                f"stacked as features: {', '.join(bad)}"
            )
        wanted = list(fields)
    try:
        table = pq.read_table(p, columns=wanted)
    except (pa.ArrowException, OSError) as exc:
        raise _corrupt(p, ".parquet", exc) from None
    if table.num_rows == 0:
        raise ValueError(f"{p}: has no rows")
    if len(wanted) == 1 and _is_list_type(fields[wanted[0]]):
        return _stack_list_column(p, wanted[0], table.column(wanted[0]))
    return np.column_stack([_scalar_column(table.column(n)) for n in wanted])


def _is_list_type(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _is_numeric_type(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _scalar_column(col: Any) -> np.ndarray:
    """A numeric column as float; nulls become NaN (reported by the finiteness check)."""
    import pyarrow as pa

    col = col.cast(pa.float64()) if pa.types.is_integer(col.type) and col.null_count else col
    return col.to_numpy()


def _stack_list_column(p: Path, name: str, col: Any) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = col.combine_chunks()
    if arr.null_count:
        first = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"{p}: column {name!r} has {arr.null_count} missing vector(s) (first at row {first})")
    if not _is_numeric_type(arr.type.value_type):
        raise ValueError(f"{p}: column {name!r} holds lists of {arr.type.value_type}; expected lists of numbers")
    if pa.types.is_fixed_size_list(arr.type):
        width = arr.type.list_size
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        width = int(lengths[0])
        if (lengths != width).any():
            first = int(np.flatnonzero(lengths != width)[0])
            raise ValueError(
                f"{p}: column {name!r} is ragged: vector lengths range from {int(lengths.min())} to "
                f"{int(lengths.max())} (row 0 has {width}, row {first} has {int(lengths[first])}); "
                "every row must hold a vector of the same length"
            )
    values = _scalar_column(arr.flatten())
    return values.reshape(len(arr), width)


def _read_csv(p: Path, **_: Any) -> np.ndarray:
    import csv

    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        with open(p, newline="", encoding="utf-8") as f:
            first = next(csv.reader(f), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _corrupt(p, ".csv", exc) from None
    if not first:
        raise ValueError(f"{p}: the first line is empty; expected a header or a row of numbers")
    has_header = not all(_is_number(c) for c in first)
    try:
        table = pacsv.read_csv(p, read_options=pacsv.ReadOptions(autogenerate_column_names=not has_header))
    except (pa.ArrowException, OSError) as exc:
        raise _corrupt(p, ".csv", exc) from None
    if table.num_rows == 0:
        raise ValueError(f"{p}: has a header but no data rows")
    bad = [f"{f.name!r} ({f.type})" for f in table.schema if not _is_numeric_type(f.type)]
    if bad:
        raise ValueError(f"{p}: non-numeric column(s): {', '.join(bad)}; drop them or keep only numeric features")
    return np.column_stack([_scalar_column(table.column(i)) for i in range(table.num_columns)])


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


# -------------------------------------------------------------------------------------------- write


def save_array(
    path: str | os.PathLike[str],
    array: Any,
    *,
    key: str = DEFAULT_TENSOR_KEY,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a 2-D numeric array to ``.npy`` or ``.safetensors`` atomically.

    The bytes go to a temporary file in the destination folder, are flushed to disk, and then
    ``os.replace`` moves it over ``path``: readers see the old file or the complete new one, never a
    half-written file, and a failed write leaves the old file untouched and no temporary behind.
    ``key`` names the tensor and ``metadata`` (str → str) is stored in the header (safetensors only).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in WRITABLE_EXTENSIONS:
        raise ValueError(
            f"{p}: cannot write {p.suffix or '(no extension)'!r} files; writable: {', '.join(WRITABLE_EXTENSIONS)}"
        )
    arr = _to_numpy(array)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(f"array to save must hold real numbers (int or float); got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"array to save must be 2-D (items × features); got shape {arr.shape}")
    arr = np.ascontiguousarray(arr)
    if not p.parent.is_dir():
        raise FileNotFoundError(f"{p}: folder {p.parent} does not exist")
    with atomic_open(p) as f:
        if ext == ".npy":
            _write_npy(f, arr)
        else:
            _write_safetensors(f, arr, key, metadata)
    return p


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing so that readers see the old file or the complete new one.

    Bytes go to a temporary file in the same folder (created with O_EXCL: never follows or clobbers
    an existing name; the umask decides permissions), are fsynced, then ``os.replace`` moves it over
    ``path`` and the folder is fsynced. On any error the temporary is removed and ``path`` is untouched.
    """
    p = Path(path)
    tmp = temp_path(p)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(p.parent)


def fsync_dir(d: Path) -> None:
    """Make a rename in folder ``d`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: The names :func:`temp_path` makes: what a killed writer leaves behind, safe to delete before redoing its work.
TEMP_GLOB = ".*.tmp"


def temp_path(path: str | os.PathLike[str]) -> Path:
    """A fresh hidden temporary name beside ``path`` (for writers that need a path, e.g. memmaps)."""
    p = Path(path)
    return p.parent / f".{p.name}.{secrets.token_hex(6)}.tmp"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _to_numpy(array: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(array, torch.Tensor):
            t = array.detach().cpu()
            return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return np.asarray(array)


def _write_npy(f: Any, arr: np.ndarray) -> None:
    np.save(f, arr, allow_pickle=False)


def _write_safetensors(f: Any, arr: np.ndarray, key: str, metadata: dict[str, str] | None) -> None:
    from safetensors.numpy import save

    f.write(save({key: arr}, metadata=metadata))
