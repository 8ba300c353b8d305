"""Run-config evaluation tasks beyond retrieval: BLI (held-out whole source words) and translation metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alignkit.align.base import Aligner
from alignkit.evaluate import bli, translation
from alignkit.pipeline import ConfigError, load_config, plan_run, run
from alignkit.pipeline.jobs import _word_split
from pipeline_helpers import HashEncoder

N_WORDS = 90


def _pairs(tmp: Path) -> Path:
    rows = ["id\ten\tfr"]
    k = 0
    for i in range(N_WORDS):
        rows.append(f"p{k}\tw{i}\tw{i}")  # the same string: the two hashed encoders see related vectors
        k += 1
        if i % 3 == 0:  # a second translation, so gold sets have two members
            rows.append(f"p{k}\tw{i}\tw{i}x")
            k += 1
    path = tmp / "pairs.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _config(tmp: Path, **evaluate) -> dict:
    path = _pairs(tmp)
    return {
        "name": "words",
        "seed": 2,
        "output": str(tmp / "results"),
        "cache": str(tmp / "cache"),
        "device": "cpu",
        "spaces": {
            "en": {"data": f"{path}#en,id=id", "encoder": "test:alpha", "layers": ["output"]},
            "fr": {"data": f"{path}#fr,id=id", "encoder": "test:beta", "layers": ["output"]},
        },
        "experiments": {
            "w": {
                "a": "en",
                "b": "fr",
                "fit": {
                    "layers": "last",
                    "test": 20,
                    "sizes": [60],
                    "aligners": {"procrustes": {"type": "procrustes"}, "ridge": {"type": "ridge"}},
                },
                "evaluate": evaluate
                or {"bli": {"ks": [1, 5], "csls_k": 5}, "translation": {"n_candidates": 16, "ks": [1, 4]}},
            }
        },
        "report": False,
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("words")
    cfg = {**_config(tmp), "report": True}
    return tmp, run(cfg)


def test_bli_holds_out_whole_words_and_matches_a_direct_evaluation(finished) -> None:
    tmp, result = finished
    table = pd.read_csv(tmp / "pairs.tsv", sep="\t")
    en, fr = table["en"].tolist(), table["fr"].tolist()
    X = HashEncoder("alpha").encode(en, ["output"])["output"].numpy()
    Y = HashEncoder("beta").encode(fr, ["output"])["output"].numpy()
    fits = pd.read_parquet(result.tables["fits"])
    ev = pd.read_parquet(result.tables["evaluations"])
    vocab = sorted(set(fr))  # the target vocabulary: every distinct French item of the pairs
    rows_of = {w: fr.index(w) for w in vocab}
    for method in ("procrustes", "ridge"):
        model = Aligner.load(result.run_dir / fits.loc[fits.method == method, "path"].iloc[0])
        got = ev[(ev.method == method) & (ev.task == "bli")]
        assert (got.loc[got.metric == "coverage", "value"] == 1.0).all()
        # rebuild the held-out words from the run's documented split (seed 2), independently of the job code
        codes = np.unique(np.asarray(en), return_inverse=True)[1]
        order = np.random.default_rng([2, 7919]).permutation(codes.max() + 1)
        held_words = sorted({en[i] for i in range(len(en)) if codes[i] in set(order[:20].tolist())})
        assert len(held_words) == 20
        gold = {i: {vocab.index(fr[p]) for p in range(len(en)) if en[p] == w} for i, w in enumerate(held_words)}
        zs = model.transform_x(X[[en.index(w) for w in held_words]])
        zt = model.transform_y(Y[[rows_of[w] for w in vocab]])
        for scoring in ("nn", "csls"):
            direct = bli(zs, zt, gold, ks=(1, 5), scoring=scoring, csls_k=5)
            want = {(r["metric"], r["subset"]): r["value"] for r in direct if r["metric"].startswith("P@")}
            sub = got[(got.scoring == scoring) & got.metric.str.startswith("P@")]
            assert len(sub) == len(want) == 4
            for (metric, subset), value in want.items():
                match = sub[(sub.metric == metric) & (sub.subset == subset)]["value"]
                assert match.iloc[0] == pytest.approx(value, abs=1e-12)
        assert got.loc[got.metric == "P@1", "value"].max() > 0.1  # related spaces: > 10x chance (1/120)


def test_translation_rows_match_a_direct_call(finished) -> None:
    tmp, result = finished
    table = pd.read_csv(tmp / "pairs.tsv", sep="\t")
    en, fr = table["en"].tolist(), table["fr"].tolist()
    codes = np.unique(np.asarray(en), return_inverse=True)[1]
    held = set(np.random.default_rng([2, 7919]).permutation(codes.max() + 1)[:20].tolist())
    test = [p for p in range(len(en)) if codes[p] in held]  # every pair of the held-out words, in row order
    X = HashEncoder("alpha").encode([en[p] for p in test], ["output"])["output"].numpy()
    Y = HashEncoder("beta").encode([fr[p] for p in test], ["output"])["output"].numpy()
    fits = pd.read_parquet(result.tables["fits"])
    ev = pd.read_parquet(result.tables["evaluations"])
    model = Aligner.load(result.run_dir / fits.loc[fits.method == "ridge", "path"].iloc[0])
    want = {r["metric"]: r["value"] for r in translation(model.translate(X), Y, n_candidates=16, ks=(1, 4), seed=0)}
    got = ev[(ev.task == "translation") & (ev.method == "ridge")]
    assert set(got.metric) == set(want) >= {"mean_cosine", "top1", "top4", "mean_rank"}
    for metric, value in want.items():
        assert got.loc[got.metric == metric, "value"].iloc[0] == pytest.approx(value, abs=1e-12)


def test_the_report_shows_the_tasks(finished) -> None:
    _, result = finished
    html = (result.run_dir / "report.html").read_text(encoding="utf-8")
    assert "BLI · en→fr · NN scoring · all words (OOV wrong)" in html
    assert "translation · en→fr" in html and "BLI P@1" in html


def test_word_split_keeps_every_pair_of_a_held_out_word_out_of_the_pool() -> None:
    class Words:
        def __init__(self, words):
            self.w = words

        def items(self, start=0, stop=None):
            return self.w[start:stop]

    words = [f"w{i % 7}" for i in range(40)]
    test, pool = _word_split(Words(words), np.arange(40), {"seed": 0, "test": 3})
    held = {words[i] for i in test}
    assert len(held) == 3 and not held & {words[i] for i in pool}
    assert sorted([*test, *pool]) == list(range(40))


def test_task_settings_are_checked_before_anything_runs(tmp_path: Path) -> None:
    cfg = _config(tmp_path, translation={"n_candidates": 16})
    cfg["experiments"]["w"]["fit"]["aligners"] = {"cca": {"type": "cca"}}
    with pytest.raises(ConfigError, match=r"translation needs aligners that translate.*'cca'"):
        load_config(cfg)
    cfg = _config(tmp_path, bli={"ks": [1, 500]})
    with pytest.raises(ValueError, match=r"bli.ks: 500 exceeds the 120 words of the target vocabulary"):
        plan_run(cfg)
    cfg = _config(tmp_path, bli={})
    cfg["experiments"]["w"]["fit"]["test"] = N_WORDS
    with pytest.raises(ValueError, match="held-out source words leave none"):
        plan_run(cfg)
    cfg = _config(tmp_path, translation={"n_candidates": 16, "ks": [32]})
    with pytest.raises(ValueError, match=r"translation\.ks: 32 exceeds the 16 candidates"):
        plan_run(cfg)
