"""``alignkit atlas / fit / evaluate`` on files, against the library calls they wrap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alignkit import atlas
from alignkit.align import Aligner, Procrustes
from alignkit.cli import app
from alignkit.evaluate import retrieval, zero_shot

runner = CliRunner()


def _views(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 12))
    x = z @ rng.standard_normal((12, 20)) + 0.2 * rng.standard_normal((n, 20))
    q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    return x.astype(np.float32), (x @ q + 0.2 * rng.standard_normal((n, 20))).astype(np.float32)


def test_atlas_command_equals_the_library(tmp_path: Path) -> None:
    x, y = _views()
    layers_a = {"first": x[:, :8], "second": x}
    layers_b = {"only": y, "half": y[:, :10]}
    np.savez(tmp_path / "a.npz", **layers_a)
    np.savez(tmp_path / "b.npz", **layers_b)
    res = runner.invoke(
        app,
        ["atlas", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "-m", "cka", "--perm", "20",
         "--out", str(tmp_path / "rows.csv"), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    want = atlas(layers_a, layers_b, "cka", n_perm=20, seed=0)
    assert (got["best_a"], got["best_b"]) == want.best[:2] and got["best_score"] == pytest.approx(want.best[2])
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert len(rows) == 4 and rows["p_value_fwer"].between(0, 1).all()
    table = runner.invoke(app, ["atlas", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--k", "rice"])
    assert table.exit_code == 0 and "best pair" in table.stdout


def test_atlas_command_needs_several_layers(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((5, 2), dtype=np.float32))
    res = runner.invoke(app, ["atlas", str(tmp_path / "x.npy"), str(tmp_path / "x.npy")])
    assert res.exit_code == 2 and "several layers" in res.output
    res = runner.invoke(app, ["atlas", str(tmp_path / "none.npz"), str(tmp_path / "x.npy")])
    assert res.exit_code == 2 and "no such file" in res.output


def test_fit_then_evaluate_equals_the_library(tmp_path: Path) -> None:
    x, y = _views()
    for name, arr in (("xtr", x[:200]), ("ytr", y[:200]), ("xte", x[200:]), ("yte", y[200:])):
        np.save(tmp_path / f"{name}.npy", arr)
    out = tmp_path / "aligner"
    fit = runner.invoke(
        app,
        ["fit", str(tmp_path / "xtr.npy"), str(tmp_path / "ytr.npy"), "-a", "procrustes",
         "-p", "center=true", "--out", str(out), "--json"],
    )  # fmt: skip
    assert fit.exit_code == 0, fit.output
    assert json.loads(fit.stdout)["n_pairs"] == 200
    model = Aligner.load(out)
    direct = Procrustes(center=True).fit(x[:200], y[:200])
    np.testing.assert_allclose(model.transform_x(x[200:]), direct.transform_x(x[200:]), atol=1e-6)
    ev = runner.invoke(
        app, ["evaluate", str(out), str(tmp_path / "xte.npy"), str(tmp_path / "yte.npy"), "--scoring", "csls", "--json"]
    )
    assert ev.exit_code == 0, ev.output
    want = retrieval(direct.transform_x(x[200:]), direct.transform_y(y[200:]), scoring="csls")
    got = json.loads(ev.stdout)
    assert [r["metric"] for r in got] == [r["metric"] for r in want]
    assert [r["value"] for r in got] == pytest.approx([r["value"] for r in want])


def test_evaluate_zero_shot_from_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    protos = rng.standard_normal((4, 20)).astype(np.float32)
    labels = rng.integers(0, 4, 80)
    images = protos[labels] + 0.3 * rng.standard_normal((80, 20)).astype(np.float32)
    prompts = np.repeat(protos, 2, axis=0) + 0.05 * rng.standard_normal((8, 20)).astype(np.float32)
    Procrustes().fit(images, protos[labels]).save(tmp_path / "al")
    np.save(tmp_path / "img.npy", images)
    np.save(tmp_path / "txt.npy", prompts)
    np.save(tmp_path / "y.npy", labels)
    res = runner.invoke(
        app,
        ["evaluate", str(tmp_path / "al"), str(tmp_path / "img.npy"), str(tmp_path / "txt.npy"), "--task",
         "zero_shot", "--labels", str(tmp_path / "y.npy"), "--templates-per-class", "2", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    model = Aligner.load(tmp_path / "al")
    want = zero_shot(model.transform_x(images), model.transform_y(prompts), labels, templates_per_class=2)
    assert json.loads(res.stdout)[0]["value"] == pytest.approx(want[0]["value"])


def test_fit_and_evaluate_errors_name_the_argument(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((10, 3), dtype=np.float32))
    bad = runner.invoke(app, ["fit", str(tmp_path / "x.npy"), str(tmp_path / "x.npy"), "-a", "nope", "-o", "o"])
    assert bad.exit_code == 2 and "unknown aligner 'nope'. Known aligners: asif" in bad.output
    bad = runner.invoke(
        app, ["fit", str(tmp_path / "x.npy"), str(tmp_path / "x.npy"), "-a", "ridge", "-p", "alpah=1", "-o", "o"]
    )
    assert bad.exit_code == 2 and "aligner 'ridge': unknown parameter(s) 'alpah' (did you mean 'alpha'?)" in bad.output
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "none"), str(tmp_path / "x.npy"), str(tmp_path / "x.npy")])
    assert missing.exit_code == 2 and "no such folder" in missing.output


def test_demo_show_config_prints_a_valid_run_config() -> None:
    import yaml

    from alignkit.pipeline import load_config

    res = runner.invoke(app, ["demo", "--show-config"])
    assert res.exit_code == 0, res.output
    cfg = load_config(yaml.safe_load(res.stdout))
    assert cfg.name == "demo" and set(cfg.experiments) == {"bible", "fashion"}
