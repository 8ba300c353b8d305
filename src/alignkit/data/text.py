"""Text datasets: plain lines, TSV / CSV / JSONL columns (gzip allowed), and parallel corpora.

Tables are read whole at construction (texts are small next to their embeddings), so errors about
missing columns, ragged rows or bad JSON surface at once, naming the file and line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from pathlib import Path
from typing import Any

from alignkit.data.base import Dataset, update_str

TABLE_FORMATS = ("tsv", "csv", "jsonl")
_SUFFIX_FORMAT = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def check_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` as a Path, with a clear error when it is missing or a folder."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such {what}")
    if p.is_dir():
        raise IsADirectoryError(f"{p}: is a folder; expected a {what}")
    return p


def open_text(p: Path) -> io.TextIOBase:
    """Open a UTF-8 text file for reading, gunzipping it when it is gzip-compressed (by content)."""
    with open(p, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    raw = gzip.open(p, "rb") if gz else open(p, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _read_error(p: Path, exc: BaseException) -> ValueError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ValueError(f"{p}: cannot read it as UTF-8 text (corrupt, truncated or another encoding?): {msg}")


class TextLines(Dataset):
    """One item per non-empty line of a text file (gzip allowed); id = the 1-based line number.

    Lines keep their text without the line ending; lines holding only whitespace are skipped.
    """

    modality = "text"

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None) -> None:
        super().__init__()
        p = check_file(path)
        self.path = p
        self.name = name or p.name
        texts: list[str] = []
        line_numbers: list[int] = []
        try:
            with open_text(p) as f:
                for number, line in enumerate(f, start=1):
                    line = line.rstrip("\r\n")
                    if line.strip():
                        texts.append(line)
                        line_numbers.append(number)
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise _read_error(p, exc) from None
        if not texts:
            raise ValueError(f"no items found in {p}: the file has no non-empty line")
        self._texts = texts
        self._set_ids(line_numbers, str(p))

    def items(self, start: int = 0, stop: int | None = None) -> list[str]:
        start, stop = self._range(start, stop)
        return self._texts[start:stop]

    def _content_hash(self, h: Any) -> None:
        for t in self._texts:
            update_str(h, t)


class _Table:
    """A parsed table: header + rows, with the file line of each row for error messages."""

    def __init__(self, path: str | os.PathLike[str], format: str | None) -> None:
        p = check_file(path)
        self.path = p
        self.format = _table_format(p, format)
        self.lines: list[int] = []
        self.rows: list[Any] = []
        try:
            with open_text(p) as f:
                if self.format == "jsonl":
                    self._read_jsonl(f)
                else:
                    self._read_delimited(f)
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise _read_error(p, exc) from None
        if not self.rows:
            raise ValueError(f"no items found in {p}: the table has no data rows")

    def _read_delimited(self, f: Any) -> None:
        csv.field_size_limit(2**31 - 1)
        # TSV is plain tab-separated text (IANA text/tab-separated-values: no quote processing, so a
        # text may start with '"'); CSV follows RFC 4180 quoting.
        reader = (
            csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if self.format == "tsv"
            else csv.reader(f, delimiter=",")
        )
        try:
            header = next(reader, None)
            if not header or not any(c.strip() for c in header):
                raise ValueError(f"no items found in {self.path}: the file is empty (expected a header line)")
            self.columns = [c.strip() for c in header]
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != len(self.columns):
                    raise ValueError(
                        f"{self.path}: line {reader.line_num} has {len(row)} field(s); the header has "
                        f"{len(self.columns)} ({', '.join(self.columns)})"
                    )
                self.rows.append(row)
                self.lines.append(reader.line_num)
        except csv.Error as exc:
            raise ValueError(
                f"{self.path}: malformed {self.format.upper()} near line {reader.line_num}: {exc}"
            ) from None

    def _read_jsonl(self, f: Any) -> None:
        columns: dict[str, None] = {}
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}: line {number} is not valid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{self.path}: line {number} holds a {type(obj).__name__}; expected a JSON object")
            for k in obj:
                columns.setdefault(k, None)
            self.rows.append(obj)
            self.lines.append(number)
        self.columns = list(columns)

    def column(self, name: str, *, what: str = "column", text: bool = False) -> list[Any]:
        if name not in self.columns:
            raise ValueError(
                f"{self.path}: no {what} {name!r}; columns: {', '.join(map(repr, self.columns)) or '(none)'}"
            )
        if self.format != "jsonl":
            i = self.columns.index(name)
            return [row[i] for row in self.rows]
        out = []
        for row, line in zip(self.rows, self.lines, strict=True):
            if name not in row or row[name] is None:
                raise ValueError(f"{self.path}: line {line} has no value for {what} {name!r}")
            v = row[name]
            if text and not isinstance(v, str):
                raise ValueError(f"{self.path}: line {line}: {what} {name!r} holds {type(v).__name__}; expected text")
            if not text and isinstance(v, (dict, list)):
                raise ValueError(f"{self.path}: line {line}: {what} {name!r} holds a JSON {type(v).__name__}")
            out.append(v)
        return out


def _table_format(p: Path, format: str | None) -> str:
    if format is not None:
        if format not in TABLE_FORMATS:
            raise ValueError(f"format must be one of {TABLE_FORMATS}; got {format!r}")
        return format
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _SUFFIX_FORMAT.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise ValueError(
            f"{p}: cannot tell the table format from the name; name it .tsv/.csv/.jsonl (optionally .gz) "
            f"or pass format= one of {TABLE_FORMATS}"
        )
    return fmt


class TextTable(Dataset):
    """The texts of one column of a .tsv / .csv / .jsonl file (gzip allowed).

    ids come from ``id_column`` (unique) or are the 1-based data-row numbers; labels from
    ``label_column`` (integers as given, strings mapped to indices of their sorted values, which
    become :attr:`class_names`); pairing keys from ``key_column`` (default: the ids).
    """

    modality = "text"

    def __init__(
        self,
        path: str | os.PathLike[str],
        text_column: str,
        id_column: str | None = None,
        label_column: str | None = None,
        key_column: str | None = None,
        format: str | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self._init_from(_Table(path, format), text_column, id_column, label_column, key_column, name)

    @classmethod
    def _from_table(
        cls,
        table: _Table,
        text_column: str,
        id_column: str | None,
        label_column: str | None,
        key_column: str | None,
        name: str | None,
    ) -> TextTable:
        obj = cls.__new__(cls)
        obj._init_from(table, text_column, id_column, label_column, key_column, name)
        return obj

    def _init_from(
        self,
        table: _Table,
        text_column: str,
        id_column: str | None,
        label_column: str | None,
        key_column: str | None,
        name: str | None,
    ) -> None:
        Dataset.__init__(self)
        self.path = table.path
        self.format = table.format
        self.text_column = text_column
        self.name = name or f"{table.path.name}:{text_column}"
        self._texts = table.column(text_column, what="text column", text=True)
        if id_column is not None:
            self._set_ids(table.column(id_column, what="id column"), f"{table.path} (id column {id_column!r})")
        else:
            self._set_ids(range(1, len(self._texts) + 1), str(table.path))
        if label_column is not None:
            self._set_labels(table.column(label_column, what="label column"))
        if key_column is not None:
            self._keys = [str(k) for k in table.column(key_column, what="key column")]

    def items(self, start: int = 0, stop: int | None = None) -> list[str]:
        start, stop = self._range(start, stop)
        return self._texts[start:stop]

    def _content_hash(self, h: Any) -> None:
        for t in self._texts:
            update_str(h, t)


class ParallelCorpus:
    """A table whose text columns are views of the same items (e.g. a verse in English and Spanish).

    :meth:`views` returns one :class:`TextTable` per column; they share ids (``id_column`` or row
    numbers) and pairing keys, so embeddings of the views pair row by row.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: tuple[str, ...] | list[str] = ("en", "es"),
        id_column: str | None = None,
        format: str | None = None,
        *,
        name: str | None = None,
    ) -> None:
        if len(columns) < 2:
            raise ValueError(f"a parallel corpus needs at least two text columns; got {list(columns)}")
        self._table = _Table(path, format)
        self.path = self._table.path
        self.columns = tuple(columns)
        self.id_column = id_column
        self.name = name or self.path.name
        self._views = tuple(
            TextTable._from_table(self._table, c, id_column, None, None, f"{self.name}:{c}") for c in self.columns
        )

    def views(self) -> tuple[TextTable, ...]:
        """One dataset per column, in ``columns`` order, sharing ids and keys."""
        return self._views

    def view(self, column: str) -> TextTable:
        if column not in self.columns:
            raise ValueError(f"{self.name}: no view {column!r}; views: {list(self.columns)}")
        return self._views[self.columns.index(column)]

    def __len__(self) -> int:
        return len(self._views[0])

    def __repr__(self) -> str:
        return f"ParallelCorpus(name={self.name!r}, columns={list(self.columns)}, n={len(self)})"
