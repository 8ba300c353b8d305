"""Relative paths in a run config file are taken from the file's folder (data, plugins, output, cache), so a
config runs from any working folder; a mapping config keeps the working folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from alignkit.pipeline import bundled_config, load_config, plan_run
from pipeline_helpers import small_config, write_lines


def _project(tmp: Path) -> Path:
    """``proj/run.yaml`` naming ``data/items.txt``, ``results`` and ``cache`` relatively."""
    proj = tmp / "proj"
    write_lines(proj / "data" / "items.txt", 240)
    cfg = small_config(tmp / "unused", output="results", cache="cache")
    for space in cfg["spaces"].values():
        space["data"] = "lines:data/items.txt"
    (proj / "run.yaml").write_text(yaml.safe_dump(cfg))
    return proj


def test_a_config_file_plans_from_another_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    plan = plan_run(proj / "run.yaml")  # the datasets resolve: planning reads them
    assert plan.run_dir == proj / "results" / "t"
    assert plan.config.cache == str(proj / "cache")
    embeds = [j for j in plan.jobs if j.kind == "embed"]
    assert embeds and all(j.spec["data"] == f"lines:{proj / 'data' / 'items.txt'}" for j in embeds)
    monkeypatch.chdir(proj)
    again = plan_run(Path("run.yaml"))  # the same run, named relatively from its own folder
    assert [(j.id, j.key) for j in again.jobs] == [(j.id, j.key) for j in plan.jobs]


def test_job_keys_do_not_depend_on_how_the_data_path_is_written(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    relative = plan_run(proj / "run.yaml")
    data = yaml.safe_load((proj / "run.yaml").read_text())
    for space in data["spaces"].values():
        space["data"] = f"lines:{proj / 'data' / 'items.txt'}"
    data.update(output=str(proj / "results"), cache=str(proj / "cache"))
    absolute = plan_run(data)
    assert [j.key for j in absolute.jobs] == [j.key for j in relative.jobs]
    moved = tmp_path / "moved"
    shutil.copytree(proj / "data", moved / "data")  # same content elsewhere, same cache
    data_moved = {**data, "spaces": {n: {**s, "data": f"lines:{moved / 'data' / 'items.txt'}"}
                                     for n, s in data["spaces"].items()}}  # fmt: skip
    assert [j.key for j in plan_run(data_moved).jobs] == [j.key for j in relative.jobs]


def test_a_mapping_config_keeps_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _project(tmp_path)
    data = yaml.safe_load((proj / "run.yaml").read_text())
    monkeypatch.chdir(proj)
    cfg = load_config(data)
    assert cfg.spaces["x"].data == "lines:data/items.txt" and cfg.output == "results" and cfg.cache == "cache"
    assert plan_run(cfg).run_dir == Path("results") / "t"


def test_default_output_is_next_to_the_config_file(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    data = yaml.safe_load((proj / "run.yaml").read_text())
    del data["output"], data["cache"]
    (proj / "run.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(proj / "run.yaml")
    assert cfg.output == str(proj / "results") and cfg.cache is None


def test_bundled_configs_write_under_the_working_folder() -> None:
    cfg = load_config(bundled_config("demo"))
    assert cfg.output == "results"  # never inside the installed package
    assert {sp.data for sp in cfg.spaces.values()} >= {"sample:bible-en", "captions:sample:fashion-mnist"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sample:bible-en", "sample:bible-en"),
        ("hf:org/name#text,split=test,label=y", "hf:org/name#text,split=test,label=y"),
        ("lines:items.txt", "lines:{d}/items.txt"),
        ("images:imgs", "images:{d}/imgs"),
        ("audio:sub/wavs", "audio:{d}/sub/wavs"),
        ("captions:images:imgs", "captions:images:{d}/imgs"),
        ("prompts:captions:lines:a.txt", "prompts:captions:lines:{d}/a.txt"),
        ("captions:sample:fashion-mnist", "captions:sample:fashion-mnist"),
        ("texts.tsv#sentence,id=ref", "{d}/texts.tsv#sentence,id=ref"),
        ("t/x.jsonl.gz#text", "{d}/t/x.jsonl.gz#text"),
        ("notes.txt", "{d}/notes.txt"),
        ("train-images-idx3-ubyte.gz,labels=train-labels-idx1-ubyte.gz,limit=10",
         "{d}/train-images-idx3-ubyte.gz,labels={d}/train-labels-idx1-ubyte.gz,limit=10"),
        ("/abs/items.txt", "/abs/items.txt"),
        ("lines:/abs/items.txt", "lines:/abs/items.txt"),
        ("lines:~/items.txt", "lines:~/items.txt"),
        ("not-a-known-kind", "not-a-known-kind"),
    ],
)  # fmt: skip
def test_resolve_data_spec(spec: str, expected: str, tmp_path: Path) -> None:
    from alignkit.pipeline.config import resolve_data_spec

    assert resolve_data_spec(spec, tmp_path) == expected.format(d=tmp_path)
