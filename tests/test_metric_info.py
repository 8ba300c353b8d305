"""The evaluation-metric and scoring registries: labels, directions, order, families, unknown names,
and that every metric and scoring the evaluation protocols emit is registered."""

from __future__ import annotations

import importlib.util
import math

import pytest

from alignkit.evaluate.metric_info import (
    EVAL_METRICS,
    SCORINGS,
    eval_metric_info,
    register_eval_metric,
    scoring_info,
)


@pytest.mark.parametrize(
    ("name", "label", "hib"),
    [
        ("R@1", "R@1", True),
        ("R@10", "R@10", True),
        ("R@123", "R@123", True),
        ("mrr", "MRR", True),
        ("median_rank", "median rank", False),
        ("mean_rank", "mean rank", False),
        ("top1", "top-1", True),
        ("top5", "top-5", True),
        ("top16", "top-16", True),
        ("mean_class_top1", "mean class top-1", True),
        ("class_top1", "class top-1", True),
        ("heldout_top1_among_all", "held-out top-1 (among all)", True),
        ("heldout_top1_among_heldout", "held-out top-1 (among held-out)", True),
        ("P@5", "P@5", True),
        ("coverage", "coverage", None),
        ("mean_cosine", "mean cosine", True),
        ("accuracy", "accuracy", True),
        ("fold_accuracy", "fold accuracy", True),
        ("majority_baseline", "majority baseline", None),
    ],
)
def test_labels_and_directions(name, label, hib):
    info = eval_metric_info(name)
    assert info.name == name
    assert info.label == label
    assert info.higher_is_better is hib
    low, high = info.range
    assert low < high


def test_families_resolve_with_their_cutoff():
    r20 = eval_metric_info("R@20")
    assert r20.k == 20 and r20.range == (0.0, 1.0) and not r20.is_family
    assert eval_metric_info("mrr").k is None
    assert "R@{k}" in EVAL_METRICS and "top{k}" in EVAL_METRICS and "P@{k}" in EVAL_METRICS
    assert EVAL_METRICS.get("R@{k}").schema.names() == ["k"]
    with pytest.raises(ValueError, match="k must be"):
        eval_metric_info("R@0")
    assert eval_metric_info("median_rank").range == (1.0, math.inf)


def test_table_order():
    names = ["mean_rank", "top5", "R@10", "heldout_top1_among_heldout", "R@5", "mrr", "R@1", "median_rank"]
    names += ["heldout_top1_among_all", "mean_class_top1", "top1", "R@50"]
    ordered = sorted(names, key=lambda n: eval_metric_info(n).sort_key)
    assert ordered == [
        "R@1",
        "R@5",
        "R@10",
        "R@50",
        "mrr",
        "median_rank",
        "mean_rank",
        "top1",
        "top5",
        "mean_class_top1",
        "heldout_top1_among_all",
        "heldout_top1_among_heldout",
    ]


@pytest.mark.parametrize("name", ["R@", "R@k", "r@1", "top", "topk", "mean_rnak", "nonsense"])
def test_unknown_names_fail(name):
    with pytest.raises(ValueError, match=r"unknown evaluation metric .* Known evaluation metrics: "):
        eval_metric_info(name)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match="Did you mean 'mean_rank'"):
        eval_metric_info("mean_rnak")
    with pytest.raises(TypeError):
        eval_metric_info(1)  # type: ignore[arg-type]


def test_scorings():
    assert scoring_info("nn").label == "NN"
    assert scoring_info("csls").label == "CSLS"
    assert SCORINGS.names() == ["csls", "gram", "nn"]  # gram: one view against the rest (multiview retrieval)
    assert scoring_info("gram").label == "GRAM volume"
    with pytest.raises(ValueError, match="Did you mean 'csls'"):
        scoring_info("cls")


def test_register_a_plugin_metric():
    try:
        info = register_eval_metric(
            "my_loss", label="my loss", higher_is_better=False, order=500, range=(0, math.inf), description="x"
        )
        assert eval_metric_info("my_loss") == info and info.higher_is_better is False
        with pytest.raises(ValueError, match="already registered"):
            register_eval_metric("my_loss", label="x", higher_is_better=True, order=0, range=(0, 1), description="")
        fam = register_eval_metric(
            "hits{k}_x", label="hits@{k} x", higher_is_better=True, order=501, range=(0, 1), description=""
        )
        assert fam.is_family and eval_metric_info("hits3_x").label == "hits@3 x"
    finally:
        for name in ("my_loss", "hits{k}_x"):
            if name in EVAL_METRICS:
                EVAL_METRICS.remove(name)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"label": ""}, "label"),
        ({"higher_is_better": "yes"}, "higher_is_better"),
        ({"range": (1, 0)}, "range"),
        ({"range": (math.nan, 1)}, "range"),
        ({"label": "no k here"}, r"\{k\}"),
    ],
)
def test_register_checks_its_metadata(kwargs, match):
    args = {"label": "x@{k}", "higher_is_better": True, "order": 0, "range": (0, 1), "description": ""} | kwargs
    with pytest.raises(ValueError, match=match):
        register_eval_metric("bad@{k}", **args)
    assert "bad@{k}" not in EVAL_METRICS


def test_every_metric_and_scoring_of_the_protocols_rows_is_registered():
    # run every protocol (all scorings) and look up what its rows carry
    np = pytest.importorskip("numpy")
    from alignkit.evaluate import bli, retrieval, translation, zero_shot
    from alignkit.evaluate.multiview import multiview_retrieval

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8))
    y = x + 0.1 * rng.standard_normal((40, 8))
    rows = []
    for scoring in ("nn", "csls"):
        rows += retrieval(x, y, ks=(1, 5, 10), scoring=scoring, csls_k=5)
    rows += bli(x, y, {i: [i] for i in range(30)}, ks=(1, 5), scoring=("nn", "csls"), csls_k=5, n_oov=2)
    rows += translation(x, y, n_candidates=16, ks=(1, 4))
    rows += multiview_retrieval([x, y, x + y], ks=(1, 5), any_scoring=("gram",))
    labels = np.arange(40) % 5
    protos = np.stack([x[labels == c].mean(0) for c in range(5)])
    rows += zero_shot(x, protos, labels, heldout_classes=[3, 4])
    if importlib.util.find_spec("sklearn") is not None:
        from alignkit.evaluate import linear_probe

        rows += linear_probe(x, labels, n_folds=2)
    metrics = {r["metric"] for r in rows}
    assert {"R@1", "mrr", "median_rank", "mean_rank", "P@5", "coverage", "top4", "mean_class_top1"} <= metrics
    for name in sorted(metrics):
        assert eval_metric_info(name).label
    assert {r["scoring"] for r in rows if "scoring" in r} == set(SCORINGS.names())
