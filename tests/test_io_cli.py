"""Array readers/writers (alignkit.io), the bundled demo sample and the `alignkit` CLI."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file
from typer.testing import CliRunner

import alignkit
import alignkit.io as akio
from alignkit.cli import app
from alignkit.demo_data import bible_demo_info, load_bible_demo
from alignkit.io import SUPPORTED_EXTENSIONS, load_array, save_array

runner = CliRunner()


@pytest.fixture
def mat(rng):
    return rng.standard_normal((30, 5))


# ------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_npy_roundtrip_keeps_float_dtype(tmp_path, mat, dtype):
    A = mat.astype(dtype)
    np.save(tmp_path / "a.npy", A)
    out = load_array(tmp_path / "a.npy")
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, A)


def test_integers_become_float64(tmp_path):
    A = np.arange(12, dtype=np.int32).reshape(4, 3)
    np.save(tmp_path / "i.npy", A)
    out = load_array(tmp_path / "i.npy")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, A)


def test_npz_single_array_and_key(tmp_path, mat):
    np.savez(tmp_path / "one.npz", emb=mat)
    np.testing.assert_array_equal(load_array(tmp_path / "one.npz"), mat)
    np.savez_compressed(tmp_path / "two.npz", first=mat, second=2 * mat)
    np.testing.assert_array_equal(load_array(tmp_path / "two.npz", key="second"), 2 * mat)
    with pytest.raises(ValueError, match=r"two\.npz.*2 arrays.*key=.*first, second"):
        load_array(tmp_path / "two.npz")
    with pytest.raises(ValueError, match=r"no array named 'third'; available: first, second"):
        load_array(tmp_path / "two.npz", key="third")


def test_safetensors_single_key_and_bfloat16(tmp_path, mat):
    A = mat.astype(np.float32)
    save_file({"embeddings": A}, str(tmp_path / "one.safetensors"))
    np.testing.assert_array_equal(load_array(tmp_path / "one.safetensors"), A)
    save_file({"a": A, "b": -A}, str(tmp_path / "two.safetensors"))
    np.testing.assert_array_equal(load_array(tmp_path / "two.safetensors", key="b"), -A)
    with pytest.raises(ValueError, match=r"2 tensors.*available: a, b"):
        load_array(tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match=r"no tensor named 'c'"):
        load_array(tmp_path / "two.safetensors", key="c")
    import safetensors.torch

    t = torch.from_numpy(A).to(torch.bfloat16)
    safetensors.torch.save_file({"x": t}, str(tmp_path / "bf.safetensors"))
    out = load_array(tmp_path / "bf.safetensors")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, t.float().numpy())


@pytest.mark.parametrize("fixed", [True, False])
def test_parquet_list_column(tmp_path, mat, fixed):
    vec_type = pa.list_(pa.float64(), 5) if fixed else pa.list_(pa.float64())
    table = pa.table({"id": pa.array([f"item{i}" for i in range(30)]), "vec": pa.array(list(mat), type=vec_type)})
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=7)  # several chunks
    out = load_array(tmp_path / "v.parquet")
    np.testing.assert_array_equal(out, mat)
    assert out.flags.writeable  # Arrow's zero-copy views are read-only
    np.testing.assert_array_equal(load_array(tmp_path / "v.parquet", column="vec"), mat)


def test_parquet_choose_among_vector_columns(tmp_path, mat):
    table = pa.table({"a": pa.array(list(mat)), "b": pa.array(list(-mat)), "s": pa.array(np.arange(30))})
    pq.write_table(table, tmp_path / "two.parquet")
    np.testing.assert_array_equal(load_array(tmp_path / "two.parquet", column="b"), -mat)
    with pytest.raises(ValueError, match=r"2 vector columns; choose one with column=.*a, b"):
        load_array(tmp_path / "two.parquet")
    with pytest.raises(ValueError, match=r"no column 'zz'; columns: a, b, s"):
        load_array(tmp_path / "two.parquet", column="zz")
    with pytest.raises(ValueError, match=r"column 's' has type int64, not a list of numbers"):
        load_array(tmp_path / "two.parquet", column="s")


def test_parquet_scalar_columns_are_features(tmp_path, mat):
    pq.write_table(pa.table({f"f{j}": mat[:, j] for j in range(5)}), tmp_path / "s.parquet")
    out = load_array(tmp_path / "s.parquet")
    np.testing.assert_array_equal(out, mat)
    assert out.flags.writeable
    pq.write_table(pa.table({"x": mat[:, 0], "label": ["a"] * 30}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad\.parquet.*not numeric.*label \(string\)"):
        load_array(tmp_path / "bad.parquet")


def test_csv_with_and_without_header(tmp_path, mat):
    np.savetxt(tmp_path / "h.csv", mat, delimiter=",", header="a,b,c,d,e", comments="", fmt="%.17g")
    np.testing.assert_array_equal(load_array(tmp_path / "h.csv"), mat)
    np.savetxt(tmp_path / "n.csv", mat, delimiter=",", fmt="%.17g")
    np.testing.assert_array_equal(load_array(tmp_path / "n.csv"), mat)


# ------------------------------------------------------------------------------------ bad inputs


def test_missing_empty_unknown(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npy: no such file"):
        load_array(tmp_path / "nope.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.npy: file is empty"):
        load_array(tmp_path / "empty.npy")
    (tmp_path / "x.pkl").write_bytes(b"data")
    with pytest.raises(ValueError, match=r"x\.pkl: unsupported file type '\.pkl'; supported: \.npy, \.npz"):
        load_array(tmp_path / "x.pkl")
    with pytest.raises(ValueError, match=r"key='a' applies only to \.npz and \.safetensors"):
        load_array(tmp_path / "x.csv", key="a")
    assert set(SUPPORTED_EXTENSIONS) == {".npy", ".npz", ".safetensors", ".parquet", ".csv"}


@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
def test_corrupt_files_raise_valueerror_naming_the_path(tmp_path, ext):
    p = tmp_path / f"junk{ext}"
    p.write_bytes(b"\x00\x01garbage\xff" * 50)
    with pytest.raises(ValueError, match=rf"junk\{ext}"):
        load_array(p)


def test_truncated_files(tmp_path, mat):
    np.save(tmp_path / "t.npy", mat)
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:-40])
    with pytest.raises(ValueError, match=r"t\.npy: not a readable \.npy file \(corrupt or truncated\?\)"):
        load_array(tmp_path / "t.npy")
    save_file({"e": mat}, str(tmp_path / "t.safetensors"))
    raw = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(raw[:-40])
    with pytest.raises(ValueError, match=r"t\.safetensors: not a readable \.safetensors file"):
        load_array(tmp_path / "t.safetensors")
    pq.write_table(pa.table({"v": pa.array(list(mat))}), tmp_path / "t.parquet")
    raw = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "t.parquet").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"t\.parquet: not a readable \.parquet file"):
        load_array(tmp_path / "t.parquet")


def test_object_arrays_are_never_unpickled(tmp_path):
    obj = np.array([[{"a": 1}, None]], dtype=object)
    np.save(tmp_path / "o.npy", obj, allow_pickle=True)
    with pytest.raises(ValueError, match=r"o\.npy: holds an object array.*never unpickles"):
        load_array(tmp_path / "o.npy")
    np.savez(tmp_path / "o.npz", x=obj)
    with pytest.raises(ValueError, match=r"o\.npz: array 'x' is an object array"):
        load_array(tmp_path / "o.npz")


def test_ragged_and_missing_vectors(tmp_path):
    pq.write_table(pa.table({"v": pa.array([[1.0, 2.0], [3.0], [4.0, 5.0]])}), tmp_path / "r.parquet")
    with pytest.raises(ValueError, match=r"r\.parquet: column 'v' is ragged.*from 1 to 2.*row 1 has 1"):
        load_array(tmp_path / "r.parquet")
    pq.write_table(pa.table({"v": pa.array([[1.0, 2.0], None, [4.0, 5.0]])}), tmp_path / "m.parquet")
    with pytest.raises(ValueError, match=r"1 missing vector\(s\) \(first at row 1\)"):
        load_array(tmp_path / "m.parquet")
    pq.write_table(pa.table({"v": pa.array([["a"], ["b"]])}), tmp_path / "s.parquet")
    with pytest.raises(ValueError, match=r"holds lists of string; expected lists of numbers"):
        load_array(tmp_path / "s.parquet")


def test_wrong_shapes_and_types(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(5.0))
    with pytest.raises(ValueError, match=r"v\.npy: array is 1-D.*reshape\(-1, 1\)"):
        load_array(tmp_path / "v.npy")
    np.save(tmp_path / "c.npy", np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"c\.npy: array has shape \(2, 3, 4\); expected 2-D"):
        load_array(tmp_path / "c.npy")
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"e\.npy: array is empty"):
        load_array(tmp_path / "e.npy")
    np.save(tmp_path / "b.npy", np.ones((3, 2), dtype=bool))
    with pytest.raises(ValueError, match=r"b\.npy: array holds booleans"):
        load_array(tmp_path / "b.npy")
    np.save(tmp_path / "z.npy", np.ones((3, 2), dtype=complex))
    with pytest.raises(ValueError, match=r"z\.npy: array has dtype complex128"):
        load_array(tmp_path / "z.npy")
    (tmp_path / "s.csv").write_text("x,name\n1,a\n2,b\n")
    with pytest.raises(ValueError, match=r"s\.csv: non-numeric column\(s\): 'name' \(string\)"):
        load_array(tmp_path / "s.csv")


def test_nan_and_inf_are_counted(tmp_path, mat):
    A = mat.copy()
    A[0, 0] = A[3, 1] = np.nan
    A[5, 2] = np.inf
    np.save(tmp_path / "bad.npy", A)
    with pytest.raises(ValueError, match=r"bad\.npy: array contains 2 NaN and 1 Inf value\(s\) out of 150"):
        load_array(tmp_path / "bad.npy")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\nnan,inf\n")
    with pytest.raises(ValueError, match=r"bad\.csv: .*1 NaN and 1 Inf"):
        load_array(tmp_path / "bad.csv")


# ------------------------------------------------------------------------------------------ writer


@pytest.mark.parametrize("ext", [".npy", ".safetensors"])
def test_save_array_roundtrip_and_no_temp_left(tmp_path, mat, ext):
    p = save_array(tmp_path / f"out{ext}", mat.astype(np.float32))
    np.testing.assert_array_equal(load_array(p), mat.astype(np.float32))
    save_array(p, torch.from_numpy(2 * mat))  # overwrite, from torch
    np.testing.assert_array_equal(load_array(p), 2 * mat)
    assert sorted(os.listdir(tmp_path)) == [f"out{ext}"]
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(("ext", "writer"), [(".npy", "_write_npy"), (".safetensors", "_write_safetensors")])
def test_save_array_failure_keeps_old_file(tmp_path, mat, monkeypatch, ext, writer):
    p = tmp_path / f"keep{ext}"
    save_array(p, mat)
    before = p.read_bytes()

    def broken(f, *args):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(akio, writer, broken)
    with pytest.raises(OSError, match="disk full"):
        save_array(p, 3 * mat)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [p.name]


def test_save_array_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"cannot write '\.csv' files; writable: \.npy, \.safetensors"):
        save_array(tmp_path / "a.csv", np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"must be 2-D"):
        save_array(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(TypeError, match=r"real numbers"):
        save_array(tmp_path / "a.npy", np.array([["a"]]))
    with pytest.raises(FileNotFoundError, match=r"folder .* does not exist"):
        save_array(tmp_path / "nodir" / "a.npy", np.zeros((2, 2)))
    assert os.listdir(tmp_path) == []


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    ext=st.sampled_from([".npy", ".safetensors"]),
    seed=st.integers(0, 2**16),
)
def test_save_load_roundtrip_is_exact(rows, cols, dtype, ext, seed):
    A = (np.random.default_rng(seed).standard_normal((rows, cols)) * 100).astype(dtype)
    with tempfile.TemporaryDirectory() as d:
        out = load_array(save_array(Path(d) / f"x{ext}", A))
        assert out.dtype == dtype and out.shape == A.shape
        np.testing.assert_array_equal(out, A)
        assert os.listdir(d) == [f"x{ext}"]


# ---------------------------------------------------------------------------------------- demo data


def test_bible_demo_shapes_dtypes_and_provenance():
    X, Y, refs = load_bible_demo()
    assert X.shape == Y.shape == (2000, 384)
    assert X.dtype == Y.dtype == np.float32
    assert len(refs) == 2000 and len(set(refs)) == 2000 and refs[0].count(".") == 2
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=2e-3)  # L2-normalised, float16-rounded
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0, atol=2e-3)
    info = bible_demo_info()
    assert info["n"] == 2000 and info["seed"] == 0
    assert {"date", "command", "versions", "files", "data"} <= set(info)
    assert load_bible_demo(np.float64)[0].dtype == np.float64


def test_bible_demo_is_aligned_above_a_shuffled_control():
    X, Y, _ = load_bible_demo()
    real = alignkit.measure("cka", X, Y)
    shuffled = alignkit.measure("cka", X, Y[np.random.default_rng(0).permutation(len(Y))])
    assert real > 0.3 and abs(shuffled) < 0.02


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def pair(tmp_path, rng):
    X = rng.standard_normal((80, 12))
    Y = X @ rng.standard_normal((12, 7)) + 0.5 * rng.standard_normal((80, 7))
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "b.npy", Y)
    return tmp_path / "a.npy", tmp_path / "b.npy", X, Y


def _one_red_line(result):
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    err = result.stderr.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    return err


def test_measure_table_matches_library(pair):
    a, b, X, Y = pair
    result = runner.invoke(app, ["measure", str(a), str(b), "--measure", "mutual_knn", "--k", "5"])
    assert result.exit_code == 0, result.output
    assert "mutual_knn?k=5" in result.stdout
    assert f"{alignkit.measure('mutual_knn', X, Y, k=5):.4f}" in result.stdout


def test_measure_json_values_equal_library(pair):
    a, b, X, Y = pair
    args = ["measure", str(a), str(b), "-m", "mutual_knn", "-m", "cka?debiased=false", "-m", "cka", "--k", "7"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["measure"] for r in rows] == ["mutual_knn?k=7", "cka?debiased=false", "cka"]
    assert rows[0]["score"] == alignkit.measure("mutual_knn", X, Y, k=7)
    assert rows[1]["score"] == alignkit.measure("cka", X, Y, debiased=False)
    assert rows[2]["score"] == alignkit.measure("cka", X, Y)
    assert rows[1]["params"] == {"debiased": False} and "k" not in rows[2]["params"]
    assert rows[0]["n"] == 80 and rows[0]["dims"] == [12, 7]


def test_measure_json_single_object_with_preprocessing_and_params(pair):
    a, b, X, Y = pair
    args = ["measure", str(a), str(b), "-m", "cka", "--param", "kernel=rbf_median", "--param", "debiased=false"]
    result = runner.invoke(app, [*args, "--center", "--normalize", "--clip-quantile", "0.9", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    expected = alignkit.measure(
        "cka", X, Y, kernel="rbf_median", debiased=False, center=True, normalize=True, clip_quantile=0.9
    )
    assert row["score"] == pytest.approx(expected, abs=1e-12)


def test_measure_with_permutations(pair):
    a, b, X, Y = pair
    result = runner.invoke(
        app, ["measure", str(a), str(b), "-m", "mutual_knn", "--perm", "50", "--seed", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    ref = alignkit.permutation_test("mutual_knn", X, Y, n_perm=50, seed=3)
    for key in ("score", "null_mean", "null_std", "z", "p_value", "adjusted"):
        assert row[key] == pytest.approx(getattr(ref, key), abs=1e-12)
    assert row["n_perm"] == 50 and row["p_value"] == pytest.approx(1 / 51)
    table = runner.invoke(app, ["measure", str(a), str(b), "--perm", "20"])
    assert table.exit_code == 0 and "null mean ± sd" in table.stdout and "p-value" in table.stdout


def test_metrics_json_and_table():
    result = runner.invoke(app, ["metrics", "--json"])
    assert result.exit_code == 0
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert {"mutual_knn", "cka"} <= set(entries)
    assert entries["cka"]["family"] == "kernel" and entries["mutual_knn"]["higher_is_better"] is True
    table = runner.invoke(app, ["metrics"])
    assert table.exit_code == 0 and "mutual_knn" in table.stdout and "O(n²d) kNN" in table.stdout


def test_unknown_metric_suggests(pair):
    a, b, _, _ = pair
    err = _one_red_line(runner.invoke(app, ["measure", str(a), str(b), "--measure", "mutul_knn"]))
    assert "unknown measure 'mutul_knn'" in err and "Did you mean 'mutual_knn'" in err


def test_mismatched_rows(tmp_path, pair):
    a, _, X, _ = pair
    np.save(tmp_path / "short.npy", X[:50])
    err = _one_red_line(runner.invoke(app, ["measure", str(a), str(tmp_path / "short.npy")]))
    assert "paired by row" in err and "80 rows" in err and "has 50" in err


def test_bad_inputs_exit_2(tmp_path, pair):
    a, b, X, _ = pair
    err = _one_red_line(runner.invoke(app, ["measure", str(a), str(tmp_path / "missing.npy")]))
    assert "missing.npy: no such file" in err
    np.save(tmp_path / "vec.npy", X[:, 0])
    assert "1-D" in _one_red_line(runner.invoke(app, ["measure", str(a), str(tmp_path / "vec.npy")]))
    err = _one_red_line(runner.invoke(app, ["measure", str(a), str(b), "-m", "cka", "-p", "kernal=rbf_median"]))
    assert "unknown parameter(s) 'kernal' (did you mean 'kernel'?)" in err
    assert "key=value" in _one_red_line(runner.invoke(app, ["measure", str(a), str(b), "-p", "oops"]))
    assert "--key applies" in _one_red_line(runner.invoke(app, ["measure", str(a), str(b), "--key", "x"]))
    result = runner.invoke(app, ["measure", str(a), str(b), "-m", "mutual_knn", "--k", "500"])
    assert result.exit_code == 2 and "k must be < n" in result.stderr and "Traceback" not in result.output


def test_k_only_reaches_measures_that_take_it(pair):
    a, b, X, Y = pair
    result = runner.invoke(app, ["measure", str(a), str(b), "-m", "cka", "--k", "5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["score"] == alignkit.measure("cka", X, Y)


def test_npz_key_and_parquet_column_options(tmp_path, pair):
    _, _, X, Y = pair
    np.savez(tmp_path / "b.npz", first=Y, second=-Y)
    pq.write_table(pa.table({"u": pa.array(list(X)), "w": pa.array(list(-X))}), tmp_path / "a.parquet")
    cmd = ["measure", str(tmp_path / "a.parquet"), str(tmp_path / "b.npz"), "-m", "cka", "--json"]
    result = runner.invoke(app, [*cmd, "--key", "second", "--column", "w"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["score"] == pytest.approx(alignkit.measure("cka", -X, -Y), abs=1e-12)
    assert "choose one with key=" in _one_red_line(runner.invoke(app, [*cmd, "--column", "w"]))


def test_every_command_help_has_an_example():
    for cmd in (["--help"], ["measure", "--help"], ["metrics", "--help"], ["demo", "--help"]):
        result = runner.invoke(app, cmd)
        assert result.exit_code == 0
        assert "Examples" in result.stdout and "$ alignkit" in result.stdout


@pytest.mark.slow
def test_quick_demo_runs_end_to_end():
    result = runner.invoke(app, ["demo", "--quick"])
    assert result.exit_code == 0, result.output
    assert "True pairs" in result.stdout and "rows of B shuffled" in result.stdout
    assert "cka (debiased)" in result.stdout and "smallest that 100 permutations" in result.stdout
    data = json.loads(runner.invoke(app, ["demo", "--quick", "--perm", "50", "--json"]).stdout)
    real = {r["measure"]: r for r in data["rows"] if r["pair"] == "EN MiniLM vs ES e5"}
    ctrl = {r["measure"]: r for r in data["rows"] if r["pair"] == "shuffled control"}
    assert all(r["p_value"] == pytest.approx(1 / 51) for r in real.values())
    assert real["cka (debiased)"]["score"] > 0.3 > abs(ctrl["cka (debiased)"]["score"])
    assert ctrl["mutual_knn"]["score"] < 0.02 < real["mutual_knn"]["score"]
