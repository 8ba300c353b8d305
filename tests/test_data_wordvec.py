"""The .vec word-vector reader and the MUSE dictionary reader, on files written here."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from alignkit.data.wordvec import DuplicateWordsWarning, dictionary_indices, read_dictionary, read_vec

ROWS = [("the", [0.1, -0.2, 0.3]), ("cat", [1.0, 2.0, 3.5]), ("é", [-1e-3, 4e2, 0.0]), ("a\u00a0b", [1.0, 1.0, 1.0])]


def _write(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _vec_lines(header: bool = True, trailing_space: bool = True) -> list[str]:
    end = " " if trailing_space else ""
    lines = [f"{w} " + " ".join(repr(v) for v in vec) + end for w, vec in ROWS]
    return ([f"{len(ROWS)} 3"] if header else []) + lines


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("gz", [False, True])
def test_read_vec_round_trip(tmp_path, header, gz):
    path = _write(tmp_path / ("w.vec.gz" if gz else "w.vec"), _vec_lines(header), gz=gz)
    words, vecs = read_vec(path)
    assert words == [w for w, _ in ROWS]  # the no-break space stays inside its word
    assert vecs.dtype == np.float32 and vecs.shape == (4, 3)
    np.testing.assert_array_equal(vecs, np.array([v for _, v in ROWS], dtype=np.float32))


def test_read_vec_tabs_blank_lines_and_crlf(tmp_path):
    path = tmp_path / "w.vec"
    path.write_bytes(b"2 2\r\n\r\nx\t1 2\r\ny 3\t4\r\n\r\n")
    words, vecs = read_vec(path)
    assert words == ["x", "y"]
    np.testing.assert_array_equal(vecs, [[1, 2], [3, 4]])


def test_max_vocab_stops_early_and_ignores_the_rest(tmp_path):
    lines = [*_vec_lines(), "broken row with words"]  # never reached
    words, vecs = read_vec(_write(tmp_path / "w.vec", lines), max_vocab=2)
    assert words == ["the", "cat"] and vecs.shape == (2, 3)
    with pytest.raises(ValueError, match="max_vocab must be a positive integer"):
        read_vec(tmp_path / "w.vec", max_vocab=0)


def test_duplicates_keep_the_first_vector_and_are_counted(tmp_path):
    lines = ["4 2", "a 1 1", "b 2 2", "a 3 3", "a 4 4"]
    path = _write(tmp_path / "d.vec", lines)
    with pytest.warns(DuplicateWordsWarning, match="2 duplicate word row"):
        words, vecs = read_vec(path)
    assert words == ["a", "b"]
    np.testing.assert_array_equal(vecs, [[1, 1], [2, 2]])
    with pytest.raises(ValueError, match=r"line 4: duplicate word 'a' \(first on row 1\)"):
        read_vec(path, on_duplicate="error")
    words, _ = read_vec(path, on_duplicate="ignore")
    assert words == ["a", "b"]
    # max_vocab counts distinct words
    words, _ = read_vec(_write(tmp_path / "e.vec", ["a 1", "a 2", "b 3", "c 4"]), max_vocab=2, on_duplicate="ignore")
    assert words == ["a", "b"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["2 3", "a 1 2 3", "b 1 2"], r"line 3: ragged row: 2 values after the word 'b', but the header \(line 1\)"),
        (["a 1 2 3", "b 1 2 3 4"], r"line 2: ragged row: 4 values .* the first row says 3"),
        (["2 3", "a 1 2 3", "b 1 x 3"], r"line 3: non-numeric value 'x' in the vector of 'b'"),
        (["2 3", "a 1 2 3", "b 1 nan 3"], r"line 3: non-finite value"),
        (["3 3", "a 1 2 3", "b 1 2 3"], r"declares 3 rows but the file has 2"),
        (["2 0", "a 1"], r"line 1: bad header '2 0'"),
        (["2 abc", "a 1 2"], r"line 1: bad header '2 abc'"),
        (["2 3 4", "a 1 2 3"], r"line 1: bad header '2 3 4'"),
        (["10 3"], r"no vectors after the header on line 1"),
        (["lonely"], r"a row needs a word and at least one value"),
    ],
)
def test_read_vec_errors_name_the_line(tmp_path, lines, message):
    path = _write(tmp_path / "bad.vec", lines)
    with pytest.raises(ValueError, match=message) as info:
        read_vec(path)
    assert str(path) in str(info.value)


def test_read_vec_empty_missing_and_undecodable(tmp_path):
    empty = tmp_path / "empty.vec"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="empty file"):
        read_vec(empty)
    with pytest.raises(FileNotFoundError):
        read_vec(tmp_path / "nope.vec")
    latin = tmp_path / "latin.vec"
    latin.write_bytes("caf\u00e9 1 2\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not valid utf-8"):
        read_vec(latin)
    assert read_vec(latin, encoding="latin-1")[0] == ["caf\u00e9"]
    bad_gz = tmp_path / "bad.vec.gz"
    bad_gz.write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(ValueError, match="cannot be read as text"):
        read_vec(bad_gz)


# ------------------------------------------------------------------------------------------ dictionaries


def test_read_dictionary_whitespace_tabs_multiple_translations(tmp_path):
    path = _write(tmp_path / "en-fr.txt", ["cat chat", "cat\tminou", "", "dog  chien", "cat chat", "the le"], gz=False)
    assert read_dictionary(path) == [("cat", "chat"), ("cat", "minou"), ("dog", "chien"), ("the", "le")]


@pytest.mark.parametrize(("lines", "message"), [(["a b", "c"], r"line 2: expected two fields"), (["a b c"], "got 3")])
def test_read_dictionary_errors(tmp_path, lines, message):
    with pytest.raises(ValueError, match=message):
        read_dictionary(_write(tmp_path / "d.txt", lines))
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty dictionary"):
        read_dictionary(tmp_path / "e.txt")


def test_dictionary_indices_and_coverage():
    pairs = [("cat", "chat"), ("cat", "minou"), ("dog", "chien"), ("owl", "hibou"), ("the", "le")]
    src = ["the", "cat", "dog", "cat"]
    tgt = ["le", "chat", "chien"]
    res = dictionary_indices(pairs, src, tgt)
    np.testing.assert_array_equal(res.indices, [[1, 1], [2, 2], [0, 0]])
    assert (res.n_pairs, res.n_covered) == (5, 3) and res.coverage == pytest.approx(0.6)
    # vecmap's coverage: distinct source words with at least one covered pair (cat, dog, the of 4)
    assert (res.n_sources, res.n_sources_covered, res.source_coverage) == (4, 3, 0.75)
    assert res.missing == [("cat", "minou"), ("owl", "hibou")]
    none = dictionary_indices([("x", "y")], src, tgt)
    assert none.indices.shape == (0, 2) and none.coverage == 0.0
    with pytest.raises(ValueError, match="pairs is empty"):
        dictionary_indices([], src, tgt)
