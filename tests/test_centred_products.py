"""Centred cross-products in row blocks (alignkit.metrics.cca.centred_products) against the dense float64 formula:
the float32 fast path folds the centring into the products when the mean is small, and centres blocks otherwise."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

cca_mod = importlib.import_module("alignkit.metrics.cca")


def _data(share: float, n: int = 3000, d: int = 48, seed: int = 0) -> np.ndarray:
    """float32 rows whose column mean holds ``share`` of Σ‖x_i‖² (anisotropic spectrum, one shared offset)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d)) * np.geomspace(1.0, 0.05, d)
    Z -= Z.mean(axis=0)
    direction = rng.standard_normal(d)
    # n‖m‖² / (Σ‖z‖² + n‖m‖²) = share  ⇒  ‖m‖² = share/(1 − share)·Σ‖z‖²/n
    m = direction / np.linalg.norm(direction) * np.sqrt(share / (1 - share) * np.square(Z).sum() / n)
    return (Z + m).astype(np.float32)


def _dense(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
    Yc = Y.astype(np.float64) - Y.astype(np.float64).mean(axis=0)
    return Xc.T @ Yc, Xc.T @ Xc, np.square(Xc).sum(axis=1), np.square(Yc).sum(axis=1)


@pytest.mark.parametrize(("share", "folded"), [(0.0, True), (0.3, True), (0.45, True), (0.7, False), (0.95, False)])
@pytest.mark.parametrize("row_norms", [False, True])
def test_fast_path_matches_the_dense_float64_formula(share, folded, row_norms):
    """Folded (mean share ≤ 0.5: no centred copy, XᵀY − n·x̄ȳᵀ) or centred block by block, the float32 products
    agree with the dense float64 formula to ~1e-6 of the centred energy, as do the traces and the row norms."""
    X, Y = _data(share, seed=1), _data(share / 2, seed=2)
    sx = cca_mod._Side(X, True, True)
    assert sx.folded is folded
    P = cca_mod.centred_products(torch.from_numpy(X), torch.from_numpy(Y), row_norms=row_norms, exact=False)
    xy, xx, rx, ry = _dense(X, Y)
    assert P.ex == 0 and P.ey == 0
    scale = np.sqrt(rx.sum() * ry.sum())
    assert np.abs(P.xy - xy).max() <= 1e-6 * scale
    assert np.abs(P.xx - xx).max() <= 1e-6 * rx.sum()
    assert P.tx == pytest.approx(rx.sum(), rel=1e-6) and P.ty == pytest.approx(ry.sum(), rel=1e-6)
    if row_norms:
        assert np.abs(P.rx - rx).max() <= 1e-6 * rx.max() and np.abs(P.ry - ry).max() <= 1e-6 * ry.max()


def test_fold_needs_a_pass_only_when_centring():
    """center=False: the products are of the input as it is (no centred copy, no correction)."""
    X = _data(0.9)
    side = cca_mod._Side(X, False, True)
    assert side.folded and not side.delta.any()
    P = cca_mod.centred_products(torch.from_numpy(X), torch.from_numpy(X), center=False, exact=False)
    X64 = X.astype(np.float64)
    assert np.allclose(P.xy, X64.T @ X64, rtol=0, atol=1e-6 * np.square(X64).sum())
    assert P.tx == pytest.approx(np.square(X64).sum(), rel=1e-6)


def test_a_sample_that_misjudges_the_mean_is_caught_after_the_pass(monkeypatch):
    """The fold is decided on a strided sample of rows and verified on the whole space: rows outside the sample
    that sit on a large shared offset (whole-space mean share ≈ 0.9) make the products be recomputed with centred
    blocks, so the result still matches the dense float64 formula."""
    n, d = 4096, 16
    rng = np.random.default_rng(5)
    X = (rng.standard_normal((n, d)) * 0.05 + 3.0).astype(np.float32)
    step = n // cca_mod._SAMPLE_ROWS
    X[::step] = rng.standard_normal((len(X[::step]), d)).astype(np.float32) * 5.0  # the sample: spread, no offset
    Y = _data(0.1, n=n, d=d, seed=6)
    mean = X.astype(np.float64).mean(axis=0)
    assert cca_mod._sampled_mean_share(X, mean) <= cca_mod._FOLD_SHARE  # the sample says fold ...
    share = n * float(mean @ mean) / float(np.square(X.astype(np.float64)).sum())
    assert share > cca_mod._FOLD_ACCEPT  # ... the whole space says no
    calls = []
    original = cca_mod.centred_products

    def counted(*args, **kwargs):
        calls.append(kwargs.get("fold", True))
        return original(*args, **kwargs)

    monkeypatch.setattr(cca_mod, "centred_products", counted)
    P = cca_mod.centred_products(torch.from_numpy(X), torch.from_numpy(Y), row_norms=True, exact=False)
    assert calls == [True, False]  # folded first, then recomputed with centred blocks
    xy, xx, rx, ry = _dense(X, Y)
    assert np.abs(P.xy - xy).max() <= 1e-6 * np.sqrt(rx.sum() * ry.sum())
    assert np.abs(P.xx - xx).max() <= 1e-6 * rx.sum()
    assert np.abs(P.rx - rx).max() <= 1e-6 * rx.max()


@pytest.mark.parametrize("scale", [1e-25, 1e25])
def test_entries_far_from_one_are_centred_not_folded(scale):
    """Entries whose float32 squares could underflow or overflow (scaled by a power of two) keep the centred path,
    and the products equal the scaled dense formula."""
    X, Y = (_data(0.1, n=500, d=8, seed=s) * np.float32(scale) for s in (3, 4))
    side = cca_mod._Side(X, True, True)
    assert side.e != 0 and not side.folded
    P = cca_mod.centred_products(torch.from_numpy(X), torch.from_numpy(Y), exact=False)
    xy, _, rx, ry = _dense(np.ldexp(X.astype(np.float64), -P.ex), np.ldexp(Y.astype(np.float64), -P.ey))
    assert np.abs(P.xy - xy).max() <= 1e-6 * np.sqrt(rx.sum() * ry.sum())
