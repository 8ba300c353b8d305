"""Every measure parameter that only has a few valid values declares them, so a bad id fails at
``measure_spec`` (and so at ``alignkit run --dry-run``) rather than at compute time or never."""

from __future__ import annotations

import numpy as np
import pytest

from alignkit.metrics import measure, measure_spec

BAD_IDS = [
    "rsa?compare=bogus",
    "rsa?compare=Kendall",
    "rsa?rdm_metric=bogus",
    "rsa?block_size=0",
    "rsa?block_size=-3",
    "retrieval_alignment?k=0",
    "retrieval_alignment?k=-1",
    "retrieval_alignment?metric=bogus",
    "retrieval_alignment?direction=sideways",
    "retrieval_alignment?summary=median",
    "retrieval_mrr?metric=euclid",
    "retrieval_mrr?direction=bogus",
    "cknna?eps=-1",
    "cknna?eps=0",
    "cknna?knn_x=5",
    "cknna?knn_y=abc",
]


@pytest.mark.parametrize("ref", BAD_IDS)
def test_bad_measure_id_fails_at_spec(ref: str) -> None:
    key = ref.partition("?")[2].partition("=")[0]
    with pytest.raises(ValueError, match=key):
        measure_spec(ref)


@pytest.mark.parametrize(
    "ref",
    [
        "rsa?compare=kendall&rdm_metric=euclidean&block_size=7",
        "retrieval_alignment?k=3&metric=ip&direction=both&summary=mrr",
        "retrieval_mrr?metric=euclidean&direction=y_to_x",
        "cknna?eps=1e-9",
        "cknna?knn_x=none",
    ],
)
def test_good_measure_ids_still_accepted(ref: str) -> None:
    measure_spec(ref)


def test_cknna_graph_arguments_are_python_only() -> None:
    from alignkit.neighbors import knn_graph

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    Y = X @ rng.standard_normal((6, 5))
    g = knn_graph(X / np.linalg.norm(X, axis=1, keepdims=True), 5)
    direct = measure("cknna", X, Y, k=5)
    assert measure("cknna", X, Y, k=5, knn_x=g) == pytest.approx(direct, abs=1e-9)
    with pytest.raises(TypeError, match="KNNGraph"):
        measure("cknna", X, Y, k=5, knn_x=np.zeros((40, 5), dtype=np.int64))
