"""Readers for the formats word-alignment users have: ``.vec`` word vectors and MUSE bilingual dictionaries.

- :func:`read_vec`: fastText / word2vec text files (``word v_1 … v_d`` per line, an optional ``count dim``
  header line, plain or gzip-compressed), streamed line by line, with ``max_vocab`` to stop after the first
  (most frequent) words. Returns ``(words, vectors)``: a list of str and a float32 array (n × d).
- :func:`read_dictionary`: MUSE-style dictionaries (``src tgt`` per line, whitespace or tab separated; a
  word may have several translations), returning the pairs in file order.
- :func:`dictionary_indices`: the pairs as row indices into given vocabularies, with coverage: how many
  pairs have both words in the vocabularies, and vecmap's source coverage (the share of distinct source
  words with at least one such pair; Artetxe et al., ``eval_translation.py``; docs/methods.md §5.3).

Every malformed input is a :class:`ValueError` naming the file and line: a ragged row, a bad header, an
empty file, a non-numeric or non-finite value. Duplicate words keep their first vector; how many were
dropped is reported (``on_duplicate="warn"``, the default) or refused (``"error"``).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

_SPLIT = re.compile(r"[ \t]+")  # fastText/word2vec separate fields by spaces; other Unicode spaces stay in words
_STRIP = " \t\r\n"
DUPLICATE_POLICIES = ("warn", "error", "ignore")


class DuplicateWordsWarning(UserWarning):
    """A word-vector file lists some words more than once; the first vector of each was kept."""


def _open_text(path: Path, encoding: str, errors: str) -> TextIO:
    with path.open("rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, errors=errors, newline=None)
    return path.open("r", encoding=encoding, errors=errors, newline=None)


def _lines(path: Path, encoding: str, errors: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, fields-line) for every non-blank line; decoding errors name the file."""
    try:
        with _open_text(path, encoding, errors) as f:
            for no, line in enumerate(f, start=1):
                text = line.strip(_STRIP)
                if text:
                    yield no, text
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not valid {encoding} text ({exc}); pass encoding=... or errors='replace'") from exc
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot be read as text ({type(exc).__name__}: {exc})") from exc


def _fields(text: str) -> list[str]:
    """The space/tab-separated fields of a stripped line (plain ``split(" ")`` when single spaces separate)."""
    if "\t" in text or "  " in text:
        return _SPLIT.split(text)
    return text.split(" ")


def _header(fields: list[str]) -> tuple[int, int] | None:
    """``(count, dim)`` when the line is a ``count dim`` header (two non-negative integers), else None."""
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


def read_vec(
    path: str | os.PathLike[str],
    *,
    max_vocab: int | None = None,
    encoding: str = "utf-8",
    errors: str = "strict",
    on_duplicate: str = "warn",
) -> tuple[list[str], np.ndarray]:
    """Read a fastText / word2vec text file (``.vec``, optionally ``.gz``): ``(words, vectors)``.

    Lines are ``word v_1 … v_d`` separated by spaces or tabs. A first line holding two integers
    ``count dim`` is the header (optional); then every row must have d values and, when the whole file is
    read, exactly ``count`` rows must follow. Without a header d comes from the first row. ``max_vocab``
    keeps the first ``max_vocab`` distinct words and stops reading there (files are sorted by frequency).
    Duplicate words keep their first vector; ``on_duplicate`` says what to do about the others: ``"warn"``
    (:class:`DuplicateWordsWarning` with their number), ``"error"`` or ``"ignore"``. Blank lines are
    skipped. The vectors are float32 (n × d).
    """
    p = Path(path)
    if max_vocab is not None and (isinstance(max_vocab, bool) or not isinstance(max_vocab, int) or max_vocab < 1):
        raise ValueError(f"max_vocab must be a positive integer or None; got {max_vocab!r}")
    if on_duplicate not in DUPLICATE_POLICIES:
        raise ValueError(f"on_duplicate must be one of {DUPLICATE_POLICIES}; got {on_duplicate!r}")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: dict[str, int] = {}
    duplicates: list[str] = []
    dim: int | None = None
    declared: int | None = None
    n_rows = 0
    header_line = 0
    first: list[str] = []
    first_no = 0
    stopped = False
    for no, text in _lines(p, encoding, errors):
        fields = _fields(text)
        if n_rows == 0 and declared is None and header_line == 0:
            head = _header(fields)
            if head is not None:
                declared, dim = head
                header_line = no
                if dim < 1:
                    raise ValueError(f"{p}: line {no}: bad header {text!r}: the dimension must be >= 1")
                continue
            if len(fields) == 2 and fields[0].isdigit() and not _is_number(fields[1]):
                raise ValueError(f"{p}: line {no}: bad header {text!r}: expected two integers 'count dim'")
        if dim is None:
            dim = len(fields) - 1
            if dim < 1:
                raise ValueError(f"{p}: line {no}: a row needs a word and at least one value; got {text!r}")
        if n_rows == 0:
            first, first_no = fields, no
        if len(fields) != dim + 1:
            if n_rows == 1 and header_line == 0 and all(_is_number(f) for f in first):
                raise ValueError(
                    f"{p}: line {first_no}: bad header {' '.join(first)!r}: a header is two integers 'count dim'"
                )
            where = f"the header (line {header_line})" if header_line else "the first row"
            raise ValueError(
                f"{p}: line {no}: ragged row: {len(fields) - 1} values after the word {fields[0]!r}, but {where} "
                f"says {dim} (a word containing spaces also gives this)"
            )
        n_rows += 1
        word = fields[0]
        if word in seen:
            duplicates.append(word)
            if on_duplicate == "error":
                raise ValueError(f"{p}: line {no}: duplicate word {word!r} (first on row {seen[word] + 1})")
            continue
        try:
            vec = np.array(fields[1:], dtype=np.float32)
        except ValueError:
            bad = next(f for f in fields[1:] if not _is_number(f))
            raise ValueError(f"{p}: line {no}: non-numeric value {bad!r} in the vector of {word!r}") from None
        if not np.isfinite(vec).all():
            raise ValueError(f"{p}: line {no}: non-finite value (NaN or ±inf) in the vector of {word!r}")
        seen[word] = len(words)
        words.append(word)
        rows.append(vec)
        if max_vocab is not None and len(words) >= max_vocab:
            stopped = True
            break
    if header_line == 0 and n_rows == 0:
        raise ValueError(f"{p}: empty file (no header and no vectors)")
    if n_rows == 0:
        raise ValueError(f"{p}: no vectors after the header on line {header_line}")
    if declared is not None and not stopped and n_rows != declared:
        raise ValueError(
            f"{p}: the header (line {header_line}) declares {declared} rows but the file has {n_rows}; "
            "the file is truncated or its header is wrong"
        )
    if duplicates and on_duplicate == "warn":
        shown = ", ".join(repr(w) for w in list(dict.fromkeys(duplicates))[:5])
        warnings.warn(
            DuplicateWordsWarning(
                f"{p}: {len(duplicates)} duplicate word row(s) skipped (the first vector of each word is kept): {shown}"
            ),
            stacklevel=2,
        )
    return words, np.stack(rows)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------ dictionaries


def read_dictionary(
    path: str | os.PathLike[str], *, encoding: str = "utf-8", errors: str = "strict"
) -> list[tuple[str, str]]:
    """Read a MUSE-style bilingual dictionary: one ``src tgt`` pair per line, whitespace or tab separated.

    Pairs are returned in file order; a source word may have several translations (several lines), and
    repeated identical lines are kept once. Blank lines are skipped; a line without exactly two fields is a
    :class:`ValueError` naming the line; a file with no pairs is an error too.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for no, text in _lines(p, encoding, errors):
        fields = text.split()
        if len(fields) != 2:
            raise ValueError(f"{p}: line {no}: expected two fields 'src tgt'; got {len(fields)}: {text!r}")
        pair = (fields[0], fields[1])
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    if not pairs:
        raise ValueError(f"{p}: empty dictionary (no 'src tgt' lines)")
    return pairs


@dataclass(frozen=True)
class DictionaryIndices:
    """Dictionary pairs mapped to vocabulary rows, with coverage.

    ``indices``: (m, 2) int64 rows ``(source index, target index)`` of the m pairs with both words in the
    vocabularies, in dictionary order. ``n_pairs``: pairs in the dictionary; ``n_covered``: m;
    ``coverage`` = m / n_pairs. ``n_sources`` distinct source words, ``n_sources_covered`` of them with at
    least one covered pair, ``source_coverage`` their share (vecmap's coverage). ``missing``: the pairs left
    out, in order.
    """

    indices: np.ndarray
    n_pairs: int
    n_covered: int
    coverage: float
    n_sources: int
    n_sources_covered: int
    source_coverage: float
    missing: list[tuple[str, str]] = field(default_factory=list)


def dictionary_indices(
    pairs: Sequence[tuple[str, str]], src_words: Sequence[str], tgt_words: Sequence[str]
) -> DictionaryIndices:
    """Map dictionary ``pairs`` to row indices of ``src_words`` / ``tgt_words`` (the first occurrence of a word
    that a vocabulary repeats) and report coverage (:class:`DictionaryIndices`)."""
    if len(pairs) == 0:
        raise ValueError("pairs is empty: a dictionary needs at least one (src, tgt) pair")
    src_index: dict[str, int] = {}
    for i, w in enumerate(src_words):
        src_index.setdefault(w, i)
    tgt_index: dict[str, int] = {}
    for i, w in enumerate(tgt_words):
        tgt_index.setdefault(w, i)
    rows: list[tuple[int, int]] = []
    missing: list[tuple[str, str]] = []
    sources: dict[str, bool] = {}
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"pairs must hold (src, tgt) pairs; got {pair!r}")
        s, t = pair
        hit = s in src_index and t in tgt_index
        sources[s] = sources.get(s, False) or hit
        if hit:
            rows.append((src_index[s], tgt_index[t]))
        else:
            missing.append((s, t))
    n_cov_src = sum(sources.values())
    return DictionaryIndices(
        indices=np.asarray(rows, dtype=np.int64).reshape(-1, 2),
        n_pairs=len(pairs),
        n_covered=len(rows),
        coverage=len(rows) / len(pairs),
        n_sources=len(sources),
        n_sources_covered=n_cov_src,
        source_coverage=n_cov_src / len(sources),
        missing=missing,
    )


__all__ = [
    "DictionaryIndices",
    "DuplicateWordsWarning",
    "dictionary_indices",
    "read_dictionary",
    "read_vec",
]
