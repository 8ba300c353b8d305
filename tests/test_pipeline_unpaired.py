"""``fit.pairs: none`` in a run: unsupervised aligners get unpaired sets (shuffled apart or disjoint) and seed pairs."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from alignkit.align import ALIGNERS, register_aligner
from alignkit.align.closed_form import Procrustes
from alignkit.align.unsupervised import Restart, UnsupervisedAligner
from alignkit.pipeline import ConfigError, load_config, plan_run, run
from pipeline_helpers import small_config

SEEN: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def seeded_procrustes():
    """A test-only unsupervised aligner: orthogonal Procrustes on the seed pairs only (records what it saw)."""

    @register_aligner("seeded_procrustes_test", paired=False)
    class SeededProcrustes(UnsupervisedAligner):
        _arrays = ("R_",)
        _shapes: ClassVar[dict] = {"R_": ("d_x", "d_y")}

        def __init__(self, n_restarts: int = 1, seed: int = 0) -> None:
            self.n_restarts = n_restarts
            self.seed = seed

        def _fit_once(self, x, y, *, seed, pairs):
            SEEN.append({"x": x.numpy().copy(), "y": y.numpy().copy(), "pairs": pairs.copy()})
            p = Procrustes(center=False).fit(x[pairs[:, 0]], y[pairs[:, 1]])
            return Restart({"R_": np.asarray(p.rotation_)}, criterion=1.0, converged=True)

        def _transform_x(self, x):
            return x @ torch.as_tensor(self.R_)

        def _transform_y(self, y):
            return y

    yield
    ALIGNERS.remove("seeded_procrustes_test")


def _config(tmp: Path, **fit) -> dict:
    cfg = small_config(tmp, n=200, name="u")
    exp = cfg["experiments"]["e"]
    del exp["atlas"]
    exp["fit"] = {
        "layers": ["output", "output"],
        "test": 50,
        "sizes": [40],
        "pairs": "none",
        "seed_pairs": 30,
        "aligners": {"sp": {"type": "seeded_procrustes_test"}},
        **fit,
    }
    exp["evaluate"] = {"retrieval": {"ks": [1], "scoring": ["nn"]}}
    return cfg


@pytest.mark.parametrize("unpaired", ["shuffled", "disjoint"])
def test_unsupervised_fit_gets_n_unpaired_rows_plus_the_seed_pairs(tmp_path: Path, unpaired: str) -> None:
    SEEN.clear()
    result = run(_config(tmp_path, unpaired=unpaired))
    (seen,) = SEEN
    x, y, pairs = seen["x"], seen["y"], seen["pairs"]
    assert x.shape[0] == y.shape[0] == 40 + 30 and pairs.shape == (30, 2)
    np.testing.assert_array_equal(pairs[:, 0], np.arange(40, 70))
    fits = pd.read_parquet(result.tables["fits"])
    assert fits["pairs"].iloc[0] == "none" and fits["unpaired"].iloc[0] == unpaired and fits["seed_pairs"].iloc[0] == 30
    assert "criterion" in fits and "restarts" in fits
    ev = pd.read_parquet(result.tables["evaluations"])
    assert ev.loc[ev.metric == "R@1", "value"].between(0, 1).all()
    (fit_job,) = [j for j in plan_run(_config(tmp_path, unpaired=unpaired)).jobs if j.kind == "fit"]
    assert fit_job.work.endswith(f"on 40 unpaired items ({unpaired})")


def test_unpaired_rows_are_shuffled_apart_or_disjoint(tmp_path: Path) -> None:
    """Identify items by their raw vectors: X's and Y's first 40 rows share no row order (shuffled) or no item."""
    from pipeline_helpers import HashEncoder

    lines = [f"item number {i} of the test corpus" for i in range(200)]
    xa = HashEncoder("alpha").encode(lines, ["output"])["output"].numpy()
    yb = HashEncoder("beta").encode(lines, ["output"])["output"].numpy()

    def items(rows, table):
        return [int(np.argmin(np.abs(table - r).sum(1))) for r in rows]

    for unpaired in ("shuffled", "disjoint"):
        SEEN.clear()
        run(_config(tmp_path / unpaired, unpaired=unpaired))
        x_items, y_items = items(SEEN[0]["x"][:40], xa), items(SEEN[0]["y"][:40], yb)
        assert items(SEEN[0]["x"][40:], xa) == items(SEEN[0]["y"][40:], yb)  # the seed pairs are true pairs
        if unpaired == "shuffled":
            assert sorted(x_items) == sorted(y_items) and x_items != y_items
        else:
            assert not set(x_items) & set(y_items)


def test_pairs_settings_are_checked(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    cfg["experiments"]["e"]["fit"]["aligners"] = {"p": {"type": "procrustes"}}
    with pytest.raises(ConfigError, match=r"pairs: none, but aligners \['p'\] need paired rows"):
        load_config(cfg)
    cfg = _config(tmp_path, pairs="paired", seed_pairs=0)
    with pytest.raises(ConfigError, match="learn from unpaired sets: set pairs: none"):
        load_config(cfg)
    cfg = _config(tmp_path, layers="best")
    with pytest.raises(ConfigError, match="layers: best selects layers on paired training items"):
        load_config(cfg)
    cfg = _config(tmp_path, unpaired="disjoint", sizes=[70])
    with pytest.raises(ValueError, match=r"sizes: \[170\] exceed the 150 training pairs"):
        plan_run(cfg)


def test_report_counts_the_restarts_that_converged(tmp_path: Path) -> None:
    """The fits table of the report says how many restarts of the unpaired fits converged (bad when none)."""
    pytest.importorskip("matplotlib")
    from alignkit.pipeline.report import build_report
    from alignkit.pipeline.report.sections.fits import converged_restarts

    result = run(_config(tmp_path, unpaired="shuffled"))
    sec = build_report(result.run_dir)[0].split("<section id='fits'>", 1)[1].split("</section>", 1)[0]
    assert "restarts converged" in sec and ">1 / 1<" in sec
    two = [{"restarts": '[{"converged": false}, {"converged": false}]'}, {"restarts": '[{"converged": false}]'}]
    assert converged_restarts(two) == "<span class='bad'>0 / 3</span>"
    assert converged_restarts([{"restarts": None}, {}]) is None
