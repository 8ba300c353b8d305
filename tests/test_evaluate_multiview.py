"""Retrieval across n views: GRAM volume scores against the determinant, and the any-view protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignkit.evaluate import retrieval
from alignkit.evaluate.multiview import gram_volume_scores, multiview_retrieval


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_gram_volume_equals_the_square_root_of_the_gram_determinant():
    rng = np.random.default_rng(0)
    q, u, w = (_unit(rng.standard_normal((7, 5))) for _ in range(3))
    S = gram_volume_scores(torch.as_tensor(q), [torch.as_tensor(u), torch.as_tensor(w)], eps=0.0).numpy()
    for i in range(7):
        for j in range(7):
            V = np.stack([q[i], u[j], w[j]])
            assert S[i, j] == pytest.approx(-np.sqrt(max(np.linalg.det(V @ V.T), 0.0)), abs=1e-10)


def test_two_vectors_give_the_sine_and_dependent_vectors_zero():
    theta = 0.3
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    o = torch.tensor([[np.cos(theta), np.sin(theta)]], dtype=torch.float64)
    assert float(gram_volume_scores(q, [o], eps=0.0)) == pytest.approx(-np.sin(theta))
    q3 = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    u = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[np.sqrt(0.5), np.sqrt(0.5), 0.0]], dtype=torch.float64)  # in q and u's plane
    assert float(gram_volume_scores(q3, [u, w], eps=0.0)) == pytest.approx(0.0, abs=1e-7)


def test_any_view_retrieval_finds_the_item_of_aligned_views_and_chance_on_noise():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((60, 16))
    views = [z + 0.3 * rng.standard_normal(z.shape) for _ in range(3)]
    rows = multiview_retrieval(views, ks=(1, 5), names=["a", "b", "c"], method="m")
    r1 = {(r["direction"], r["scoring"]): r["value"] for r in rows if r["metric"] == "R@1"}
    assert set(r1) == {
        *((f"{x}->{y}", "nn") for x in "abc" for y in "abc" if x != y),
        *((f"{x}->rest", s) for x in "abc" for s in ("gram", "nn")),
    }
    assert min(v for (d, sc), v in r1.items() if sc == "nn") > 0.9 and all(r["method"] == "m" for r in rows)
    # the volume also shrinks when an item's other views are nearly parallel to each other, whatever the query:
    # far above chance (1/60), not perfect
    assert min(v for (d, sc), v in r1.items() if sc == "gram") > 0.5
    noise = [rng.standard_normal((60, 16)) for _ in range(3)]
    r1n = [r["value"] for r in multiview_retrieval(noise, ks=(1,)) if r["metric"] == "R@1"]
    assert np.mean(r1n) < 0.1  # chance is 1/60


def test_pairs_agree_with_plain_retrieval_and_mean_cosine_is_a_dense_ranking():
    rng = np.random.default_rng(2)
    views = [rng.standard_normal((30, 8)) for _ in range(3)]
    rows = multiview_retrieval(views, ks=(1, 5), pair_scoring=("nn", "csls"), csls_k=3)
    direct = retrieval(views[0], views[2], ks=(1, 5), scoring="csls", csls_k=3)
    want = {r["metric"]: r["value"] for r in direct if r["direction"] == "g_to_q"}
    got = {r["metric"]: r["value"] for r in rows if r["direction"] == "2->0" and r["scoring"] == "csls"}
    assert got == pytest.approx(want)
    u = [_unit(v) for v in views]
    S = (u[1] @ u[0].T + u[1] @ u[2].T) / 2  # view 1 against the mean cosine of the others
    ranks = 1 + (S > np.diag(S)[:, None]).sum(1)
    got = {r["metric"]: r["value"] for r in rows if r["direction"] == "1->rest" and r["scoring"] == "nn"}
    assert got["R@5"] == pytest.approx(np.mean(ranks <= 5)) and got["mean_rank"] == pytest.approx(ranks.mean())


def test_bad_views_are_clear_errors():
    with pytest.raises(ValueError, match="at least 2"):
        multiview_retrieval([np.ones((4, 2))])
    with pytest.raises(ValueError, match=r"views\[1\] has shape"):
        multiview_retrieval([np.ones((4, 2)), np.ones((5, 2))])
    with pytest.raises(ValueError, match="any_scoring"):
        multiview_retrieval([np.eye(4)] * 3, any_scoring=("cosine",))
