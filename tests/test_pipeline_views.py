"""n-view experiments in a run: items paired across every view, n-way aligners, GRAM-style retrieval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alignkit.align import ALIGNERS, register_aligner
from alignkit.evaluate.multiview import multiview_retrieval
from alignkit.pipeline import ConfigError, load_config, plan_run, run
from pipeline_helpers import HashEncoder, write_lines

FITTED: list[list[np.ndarray]] = []


@pytest.fixture(scope="module", autouse=True)
def centred_views():
    """A test-only n-way aligner: each view centred on its training mean (records what fit saw)."""

    @register_aligner("centred_views_test", views=None)
    class CentredViews:
        def __init__(self, seed: int = 0) -> None:
            self.seed = seed

        def fit(self, views):
            FITTED.append([np.asarray(v).copy() for v in views])
            self.means_ = [np.asarray(v, dtype=np.float64).mean(axis=0) for v in views]
            return self

        def transform(self, i, X):
            return np.asarray(X, dtype=np.float64) - self.means_[i]

        def save(self, path):
            Path(path).mkdir(parents=True, exist_ok=True)
            (Path(path) / "means.json").write_text(json.dumps([m.tolist() for m in self.means_]))
            return Path(path)

        @classmethod
        def load(cls, path):
            obj = cls()
            obj.means_ = [np.asarray(m) for m in json.loads((Path(path) / "means.json").read_text())]
            return obj

    yield
    ALIGNERS.remove("centred_views_test")


def _config(tmp: Path, **exp) -> dict:
    lines = write_lines(tmp / "items.txt", 150)
    data = f"lines:{lines}"
    spaces = {v: {"data": data, "encoder": f"test:{v}", "layers": ["hidden", "output"]} for v in ("p", "q", "r")}
    experiment = {
        "views": ["p", "q", "r"],
        "fit": {"layers": "last", "test": 40, "sizes": [60, 100], "aligners": {"cv": {"type": "centred_views_test"}}},
        "evaluate": {"retrieval": {"ks": [1, 5], "scoring": ["nn"], "any_scoring": ["gram", "nn"]}},
        **exp,
    }
    return {
        "name": "v", "seed": 5, "output": str(tmp / "results"), "cache": str(tmp / "cache"), "device": "cpu",
        "spaces": spaces, "experiments": {"three": experiment}, "report": False,
    }  # fmt: skip


def test_a_three_view_run_fits_once_per_size_and_scores_every_direction(tmp_path: Path) -> None:
    FITTED.clear()
    result = run(_config(tmp_path))
    assert [len(f) for f in FITTED] == [3, 3] and sorted(f[0].shape[0] for f in FITTED) == [60, 100]
    ev = pd.read_parquet(result.tables["evaluations"])
    dirs = set(ev["direction"])
    assert {"p->q", "q->p", "p->r", "r->p", "q->r", "r->q", "p->rest", "q->rest", "r->rest"} == dirs
    assert set(ev.loc[ev.direction.str.endswith("rest"), "scoring"]) == {"gram", "nn"}
    # the run's numbers equal a direct evaluation on the documented split (seed 5) and the fitted means
    lines = (tmp_path / "items.txt").read_text().splitlines()
    test = np.sort(np.random.default_rng([5, 7919]).permutation(150)[:40])
    fitted = next(f for f in FITTED if f[0].shape[0] == 100)
    z = []
    for v, train_rows in zip(("p", "q", "r"), fitted, strict=True):
        out = HashEncoder(v).encode([lines[i] for i in test], ["output"])["output"].numpy().astype(np.float64)
        z.append(out - train_rows.astype(np.float64).mean(axis=0))
    want = multiview_retrieval(z, ks=(1, 5), pair_scoring=("nn",), names=["p", "q", "r"])
    got = ev[ev.n_train == 100]
    for row in want:
        m = got[(got.direction == row["direction"]) & (got.scoring == row["scoring"]) & (got.metric == row["metric"])]
        assert m["value"].iloc[0] == pytest.approx(row["value"], abs=1e-9)
    # training items never include held-out ones: each fitted view is a subset of the non-test lines' vectors
    held = HashEncoder("p").encode([lines[i] for i in test], ["output"])["output"].numpy()
    assert not any(np.isclose(np.abs(fitted[0][:, None, :] - held[None]).sum(-1), 0).any(axis=1))


def test_view_experiments_are_checked(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    cfg["experiments"]["three"]["a"] = "p"
    with pytest.raises(ConfigError, match="names two spaces"):
        load_config(cfg)
    cfg = _config(tmp_path)
    cfg["experiments"]["three"]["fit"]["aligners"] = {"p": {"type": "procrustes"}}
    with pytest.raises(ConfigError, match=r"aligners \['p'\] align two spaces; with views use n-way types"):
        load_config(cfg)
    cfg = _config(tmp_path)
    cfg["experiments"]["three"]["fit"]["layers"] = ["output", "output"]
    with pytest.raises(ConfigError, match="one layer per view"):
        load_config(cfg)
    cfg = _config(tmp_path, atlas={"measures": ["cka"]})
    with pytest.raises(ConfigError, match="an atlas compares two spaces"):
        load_config(cfg)
    cfg = _config(tmp_path)
    cfg["experiments"]["three"]["views"] = ["p", "q", "zz"]
    with pytest.raises(ConfigError, match=r"views.2: unknown space 'zz'"):
        load_config(cfg)
    cfg = _config(tmp_path)
    cfg["experiments"]["three"]["fit"]["sizes"] = [200]
    with pytest.raises(ValueError, match=r"sizes: \[200\] exceed the 110 training pairs"):
        plan_run(cfg)
    pair = _config(tmp_path)
    pair["experiments"] = {
        "e": {
            "a": "p",
            "b": "q",
            "fit": {"test": 40, "sizes": [60], "layers": "last", "aligners": {"c": {"type": "centred_views_test"}}},
        }
    }
    with pytest.raises(ConfigError, match="align n spaces jointly: use them in an experiment with views"):
        load_config(pair)


def test_a_multi_head_run_and_its_loss_checked_against_the_view_count(tmp_path: Path) -> None:
    from alignkit.align import MultiHeadAligner

    cfg = _config(tmp_path)
    mh = {"type": "multi_head", "head": "linear", "d_out": 16, "epochs": 4, "batch_size": 50, "loss": "mv_infonce"}
    cfg["experiments"]["three"]["fit"]["aligners"] = {"mh": mh, "gpa": {"type": "gpa"}, "maxvar": {"type": "maxvar"}}
    cfg["experiments"]["three"]["fit"]["sizes"] = [100]
    result = run(cfg)
    every = pd.read_parquet(result.tables["evaluations"])
    assert set(every.method) == {"mh", "gpa", "maxvar"}
    ev = every[every.method == "mh"]
    fits = pd.read_parquet(result.tables["fits"])
    model = MultiHeadAligner.load(result.run_dir / fits.loc[fits.method == "mh", "path"].iloc[0])
    lines = (tmp_path / "items.txt").read_text().splitlines()
    test = np.sort(np.random.default_rng([5, 7919]).permutation(150)[:40])
    z = [
        model.transform(i, HashEncoder(v).encode([lines[j] for j in test], ["output"])["output"].numpy())
        for i, v in enumerate("pqr")
    ]
    for row in multiview_retrieval(z, ks=(1, 5), pair_scoring=("nn",), names=["p", "q", "r"]):
        m = ev[(ev.direction == row["direction"]) & (ev.scoring == row["scoring"]) & (ev.metric == row["metric"])]
        assert m["value"].iloc[0] == pytest.approx(row["value"], abs=1e-9)
    bad = _config(tmp_path)
    bad["experiments"]["three"]["fit"]["aligners"] = {"mh": {**mh, "loss": "uniformity"}}
    with pytest.raises(ConfigError, match=r"aligners\.mh: .*'uniformity' cannot be used with"):
        load_config(bad)
