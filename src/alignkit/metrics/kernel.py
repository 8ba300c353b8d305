"""HSIC and centred kernel alignment (CKA): linear / RBF kernels, biased / debiased, Gram or feature form.

Never an O(n³) product and no n×n centering matrix: the Gram form centres (HKH) or U-centres a
kernel by its row/column sums and takes one O(n²) inner product (linear kernels on host arrays: not even a
centred copy — the HSIC comes from ⟨K, L⟩, the diagonals and the row sums, with K = X'X'ᵀ in the input's
precision); linear kernels switch to the O(n·d²) feature form when n ≥ 0.9·(d1 + d2), where it takes fewer
flops, which needs only ``X_cᵀY_c`` and the row norms.

Scale: each space is divided by a power of two (its largest |entry| moved into [0.5, 1)) before any product,
which is exact. CKA is scale-invariant, so it is unchanged at any finite input scale; linear HSIC scales as
s_x²·s_y² and is multiplied back at the end (a RuntimeWarning when that leaves float64's range); the RBF kernels
get their distances in the input's units (``rbf_median`` is scale-free, ``rbf_abs`` is not).

Small n (docs/methods.md §1.6): biased CKA warns (:class:`~alignkit.metrics.cca.SmallSampleWarning`) when
``n − 1 < 10·sqrt(m_x·m_y)``, m = (tr K_c)²/‖K_c‖_F² the effective rank of each centred kernel, i.e. when
independent spaces would already score above 0.1 (:func:`~alignkit.metrics._moments.biased_cka_chance`).
Both estimators need n ≥ 4 (biased CKA is exactly 1 at n = 2 for any data).
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._common import median, pow2_rescale, times_pow2
from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_pair, check_choice, check_min_rows
from alignkit.metrics._moments import cka_ratio, effective_rank, warn_biased_cka
from alignkit.metrics._registry import register
from alignkit.metrics.cca import CentredProducts, _Side, centred_products

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

KERNELS: tuple[str, ...] = ("linear", "rbf_median", "rbf_abs")
FORMS: tuple[str, ...] = ("auto", "gram", "feature")
MIN_ROWS = 4


def _sq_dists(G: torch.Tensor) -> torch.Tensor:
    diag = torch.diagonal(G)
    return (diag[:, None] + diag[None, :] - 2.0 * G).clamp_min(0.0)


def gram(X: torch.Tensor, kernel: str = "linear", *, threshold: float = 1.0, sigma: float = 1.0) -> torch.Tensor:
    """The n×n kernel matrix in float64.

    ``rbf_median``: ``exp(−D²/(2·threshold²·median(D²)))``, median over all n² entries
    (Kornblith et al. 2019, ``gram_rbf``). ``rbf_abs``: ``exp(−D²/(2σ²))`` with absolute σ (PRH).
    Computed on X divided by a power of two, so only a linear Gram whose entries exceed float64 is ±inf.
    """
    x, e = pow2_rescale(X.double())
    K = scaled_gram(x, e, kernel, threshold=threshold, sigma=sigma)
    return times_pow2(K, 2 * e) if kernel == "linear" else K


def scaled_gram(
    x: torch.Tensor, e: int, kernel: str = "linear", *, threshold: float = 1.0, sigma: float = 1.0
) -> torch.Tensor:
    """The kernel of the space ``x·2^e``, from ``x`` (float64, near unit scale): linear ``x xᵀ`` in x's units
    (the true Gram is that times 4^e), RBF kernels exactly (their distances are taken back to the input's units)."""
    G = x @ x.T
    if kernel == "linear":
        return G
    D2 = _sq_dists(G)
    if kernel == "rbf_median":
        med = median(D2)
        if not med > 0:
            raise ValueError("rbf_median kernel: the median squared distance is 0 (too many duplicate rows)")
        return torch.exp(-D2 / (2.0 * threshold**2 * med))
    mant, sig_e = math.frexp(sigma)  # D²·4^e/(2σ²) = D²/(2·mant²)·4^(e − sig_e): no overflow before the ratio
    return torch.exp(-times_pow2(D2 / (2.0 * mant**2), 2 * (e - sig_e)))


def hsic_in_input_units(value: float, log2: int) -> float:
    """``value·2^log2``: a HSIC computed on rescaled data, back in the input's units.

    HSIC is scale-dependent (linear kernels: ∝ s_x²·s_y²), so at extreme input scales it can leave float64's
    range: then a RuntimeWarning and ±inf (overflow) or 0/subnormal (underflow), never a silent NaN.
    """
    if log2 == 0 or value == 0.0:
        return value
    try:
        out = math.ldexp(value, log2)
    except OverflowError:
        out = math.copysign(math.inf, value)
    if math.isinf(out) or abs(out) < sys.float_info.min:  # overflow, or underflow to a subnormal or 0
        warnings.warn(
            f"HSIC = {value!r}·2^{log2} is outside float64's range at this input scale (HSIC is scale-dependent); "
            f"returning {out!r}. Rescale the inputs, or use CKA (scale-invariant)",
            RuntimeWarning,
            stacklevel=3,
        )
    return out


def center_gram(K: torch.Tensor) -> torch.Tensor:
    """``HKH`` by row/column means, O(n²), in place."""
    r = K.mean(dim=1, keepdim=True)
    c = K.mean(dim=0, keepdim=True)
    total = K.mean()
    return K.sub_(r).sub_(c).add_(total)


def u_center_gram(K: torch.Tensor) -> torch.Tensor:
    """U-centering (Song et al. 2012), in place: zero diagonal, then
    ``K̃_ij − r_i/(n−2) − r_j/(n−2) + 1ᵀK̃1/((n−1)(n−2))`` off the diagonal, 0 on it.
    Then ``HSIC_u(K, L) = ⟨U(K), U(L)⟩_F / (n(n−3))``."""
    n = K.shape[0]
    K.fill_diagonal_(0.0)
    r = K.sum(dim=1)
    total = r.sum()
    K.sub_(r[:, None] / (n - 2)).sub_(r[None, :] / (n - 2)).add_(total / ((n - 1) * (n - 2)))
    K.fill_diagonal_(0.0)
    return K


def centred_gram(K: torch.Tensor, debiased: bool) -> torch.Tensor:
    """HKH (biased) or U(K) (debiased), in place."""
    return u_center_gram(K) if debiased else center_gram(K)


def hsic_centred(Kc: torch.Tensor, Lc: torch.Tensor, debiased: bool) -> float:
    """HSIC from centred kernels: biased ``tr(KHLH)/(n−1)²`` (Gretton et al. 2005) or unbiased
    ``⟨U(K),U(L)⟩/(n(n−3))`` (Song et al. 2012)."""
    n = Kc.shape[0]
    inner = float((Kc * Lc).sum())
    return inner / (n * (n - 3)) if debiased else inner / (n - 1) ** 2


def _choose_form(form: str, kernel: str, n: int, d1: int, d2: int) -> str:
    if kernel != "linear":
        if form == "feature":
            raise ValueError(f"form='feature' exists only for kernel='linear'; got kernel={kernel!r}")
        return "gram"
    if form == "auto":
        return "gram" if n < _GRAM_BELOW * (d1 + d2) else "feature"
    return form


#: ``form="auto"`` takes the linear Gram form when n < this·(d1 + d2). Multiply-adds: two symmetric n × n products,
#: n²(d1 + d2)/2, against the feature form's n(d1 + d2)²/2 (X̃ᵀỸ and two symmetric d × d products), so n < d1 + d2
#: is the flop crossover; the Gram form's O(n²) passes move the measured one a little lower (n ≈ 0.9–1.0·(d1 + d2)
#: for float32 at d = 64, 384 and 1,024, one thread).
_GRAM_BELOW = 0.9


def centred_features(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column-centred float64 features and their row squared norms ``r_i = ‖x_i − x̄‖²``."""
    xc = x.double() - x.double().mean(dim=0, keepdim=True)
    return xc, (xc * xc).sum(dim=1)


def feature_hsic(xa: torch.Tensor, ra: torch.Tensor, xb: torch.Tensor, rb: torch.Tensor, debiased: bool) -> float:
    """Linear HSIC from centred features (feature form, O(n·d1·d2)).

    Biased: ``‖X_cᵀY_c‖_F²/(n−1)²``. Unbiased (centred data, so the raw-moment terms of docs/methods.md §1.7
    with a = b = 0): ``[‖X_cᵀY_c‖² − ⟨r_x,r_y⟩ + Σr_x·Σr_y/((n−1)(n−2)) − 2⟨r_x,r_y⟩/(n−2)] / (n(n−3))``.
    """
    return hsic_from_products(float(((xa.T @ xb) ** 2).sum()), ra, rb, xa.shape[0], debiased)


def hsic_from_products(s2: float, ra: Any, rb: Any, n: int, debiased: bool) -> float:
    """Linear HSIC from ``s2 = ‖X_cᵀY_c‖_F²`` and the centred row squared norms (unused when biased)."""
    if not debiased:
        return s2 / (n - 1) ** 2
    p = float(ra @ rb)
    t2 = float(ra.sum()) * float(rb.sum())
    return (s2 - p + t2 / ((n - 1) * (n - 2)) - 2.0 * p / (n - 2)) / (n * (n - 3))


def _feature_terms(x: torch.Tensor, y: torch.Tensor, debiased: bool) -> tuple[float, float, float, CentredProducts]:
    """``(HSIC(X, Y), HSIC(X, X), HSIC(Y, Y))`` of the rescaled spaces in feature form, from float64 cross-products
    of centred row blocks (:func:`~alignkit.metrics.cca.centred_products`; no n × d float64 copy), and the products.
    float32 inputs are multiplied in float32 (blocks accumulated in float64; ~1e-7 relative), float64 in float64."""
    exact = torch.float64 in (x.dtype, y.dtype)
    P = centred_products(x, y, row_norms=debiased, exact=exact)
    for t, name in ((P.tx, "X"), (P.ty, "Y")):
        if not t > 0:
            raise ValueError(f"{name} is constant across items (every row identical): its similarity is undefined")
    assert P.xx is not None and P.yy is not None
    n = P.n
    terms = (
        hsic_from_products(_gram_inner(P.xy, P.xy), P.rx, P.ry, n, debiased),
        hsic_from_products(_gram_inner(P.xx, P.xx), P.rx, P.rx, n, debiased),
        hsic_from_products(_gram_inner(P.yy, P.yy), P.ry, P.ry, n, debiased),
    )
    return (*terms, P)


@dataclass(frozen=True)
class _LinearGram:
    """One space's linear Gram ``K = X'X'ᵀ`` (X' the centred, power-of-two-scaled rows, as
    :func:`~alignkit.metrics.cca.centred_products` makes them: float32 products for float32 inputs, except small or
    very wide ones, see :func:`_linear_gram`) with its float64 diagonal, row sums and total, which centring needs:
    nothing n × n is centred or copied."""

    K: np.ndarray
    diag: np.ndarray
    rows: np.ndarray
    e: int

    @property
    def total(self) -> float:
        return float(self.rows.sum())

    @property
    def centred_trace(self) -> float:
        """``tr HKH = tr K − 1ᵀK1/n``."""
        return float(self.diag.sum()) - self.total / self.K.shape[0]


#: float32 columns per slab of a linear Gram: BLAS accumulates each slab in float32, the slabs add up in float64, so
#: a very wide space keeps ~1e-7 entries (one float32 product over d = 200,000 columns moved a debiased CKA by 2e-5).
_GRAM_SLAB = 4096
#: Up to this many multiply-adds (n²·d) a float32 space is centred and multiplied in float64 (≤ ~0.3 ms): at a
#: handful of items the debiased estimator cancels most of its terms, and float32 entries left 2e-6 at n = 5.
_FLOAT64_GRAM_WORK = 1 << 24


def _linear_gram(x: torch.Tensor) -> _LinearGram:
    a = x.numpy()
    small = a.shape[0] ** 2 * a.shape[1] <= _FLOAT64_GRAM_WORK
    # float32: centred by the rounded mean, float32 products; float64 or small: centred exactly, in float64
    side = _Side(a, True, fast=not small, fold=False)
    b = side.block(a)
    if b.dtype == np.float64 or b.shape[1] <= _GRAM_SLAB:
        K = b @ b.T  # symmetric: BLAS's syrk, half the multiply-adds
    else:
        K = np.zeros((b.shape[0], b.shape[0]))
        for s in range(0, b.shape[1], _GRAM_SLAB):
            part = b[:, s : s + _GRAM_SLAB]
            K += part @ part.T
    rows = (K @ np.ones(K.shape[0], dtype=K.dtype)).astype(np.float64)  # ≈ 0: X' is centred up to rounding
    return _LinearGram(K, np.diagonal(K).astype(np.float64), rows, side.e)


_INNER_ELEMENTS = 1 << 16  # entries per float64 block of a Gram inner product (512 KiB)


def _gram_inner(K: np.ndarray, L: np.ndarray) -> float:
    """``⟨K, L⟩_F`` accumulated in float64 over row blocks, as BLAS dots (a float32 dot would accumulate in float32;
    a squared temporary costs more than the dot: 0.044 against 0.015 ms at 384 × 384)."""
    step = max(1, _INNER_ELEMENTS // K.shape[1])
    total = 0.0
    for s in range(0, K.shape[0], step):
        k = K[s : s + step].ravel().astype(np.float64, copy=False)
        l_ = k if L is K else L[s : s + step].ravel().astype(np.float64, copy=False)
        total += float(k @ l_)
    return total


def _hsic_from_grams(G: _LinearGram, H: _LinearGram, debiased: bool) -> float:
    """HSIC from two uncentred linear Grams, by their sums (no centred n × n copy):
    biased ``tr(KHLH) = ⟨K,L⟩ − 2·r_Kᵀr_L/n + (1ᵀK1)(1ᵀL1)/n²`` over (n−1)² (Gretton et al. 2005); unbiased with
    K̃ = K − diag(K): ``tr(K̃L̃) = ⟨K,L⟩ − d_Kᵀd_L``, ``1ᵀK̃1 = 1ᵀK1 − tr K``, ``1ᵀK̃L̃1 = (r_K − d_K)ᵀ(r_L − d_L)``
    in Song et al.'s estimator (JMLR 2012)."""
    n = G.K.shape[0]
    inner = _gram_inner(G.K, H.K)
    if not debiased:
        return (inner - 2.0 * float(G.rows @ H.rows) / n + G.total * H.total / n**2) / (n - 1) ** 2
    trace = inner - float(G.diag @ H.diag)
    sums = (G.total - float(G.diag.sum())) * (H.total - float(H.diag.sum()))
    cross = float((G.rows - G.diag) @ (H.rows - H.diag))
    return (trace + sums / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))


def _linear_gram_terms(
    x: torch.Tensor, y: torch.Tensor, debiased: bool
) -> tuple[float, float, float, _LinearGram, _LinearGram]:
    """``(HSIC(X, Y), HSIC(X, X), HSIC(Y, Y), G_x, G_y)`` of the rescaled spaces from their linear Grams in the input's
    precision (host arrays): O(n²·(d1 + d2)/2) by two symmetric products and O(n²) sums."""
    G, H = _linear_gram(x), _linear_gram(y)
    for g, name in ((G, "X"), (H, "Y")):
        if not g.centred_trace > 0:
            raise ValueError(f"{name} is constant across items (every row identical): its similarity is undefined")
    return _hsic_from_grams(G, H, debiased), _hsic_from_grams(G, G, debiased), _hsic_from_grams(H, H, debiased), G, H


def _check_not_constant(t: torch.Tensor, name: str) -> None:
    if bool((t == t[:1]).all()):
        raise ValueError(f"{name} is constant across items (every row identical): its similarity is undefined")


def _validated(
    X: ArrayLike, Y: ArrayLike, kernel: str, form: str, debiased: bool
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(x, y, form): both spaces validated (as given: the feature form reads them in row blocks)."""
    check_choice(kernel, KERNELS, "kernel")
    check_choice(form, FORMS, "form")
    x, y = as_pair(X, Y)
    n = x.shape[0]
    check_min_rows(n, MIN_ROWS, "debiased HSIC/CKA" if debiased else "HSIC/CKA")
    return x, y, _choose_form(form, kernel, n, x.shape[1], y.shape[1])


def _rescaled(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(x·2^−ex, y·2^−ey, ex, ey) in float64, after the constant-space check (Gram form)."""
    _check_not_constant(x, "X")
    _check_not_constant(y, "Y")
    (x, ex), (y, ey) = pow2_rescale(x.double()), pow2_rescale(y.double())
    return x, y, ex, ey


def _grams(
    x: torch.Tensor, y: torch.Tensor, ex: int, ey: int, kernel: str, debiased: bool, threshold: float, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    K = centred_gram(scaled_gram(x, ex, kernel, threshold=threshold, sigma=sigma), debiased)
    L = centred_gram(scaled_gram(y, ey, kernel, threshold=threshold, sigma=sigma), debiased)
    return K, L


_KERNEL_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "kernel": {"choices": KERNELS},
    "form": {"choices": FORMS},
    "threshold": {"low": 0, "low_open": True},
    "sigma": {"low": 0, "low_open": True},
}


@register(
    "hsic",
    family="kernel",
    range=(float("-inf"), float("inf")),
    invariances=("orthogonal", "translation", "permutation"),
    cost="O(n·d²) linear feature form; O(n²d) Gram",
    description="Hilbert–Schmidt independence criterion (biased /(n−1)² or unbiased Song 2012). Scale-dependent.",
    defaults={"kernel": "linear", "debiased": True},
    constraints=_KERNEL_CONSTRAINTS,
    prepare="alignkit.metrics.cka_prepared:prepare_cka",
)
def hsic(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    kernel: str = "linear",
    debiased: bool = True,
    form: str = "auto",
    threshold: float = 1.0,
    sigma: float = 1.0,
) -> float:
    """HSIC between X and Y.

    Biased: ``tr(KHLH)/(n−1)²`` (Gretton et al., ALT 2005). Unbiased (Song et al., JMLR 2012):
    ``[tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))``. Needs n ≥ 4.

    Scale-dependent (linear: HSIC(sX, tY) = s²t²·HSIC(X, Y)); computed on rescaled data and multiplied back, with
    a RuntimeWarning and ±inf or 0 when the value itself leaves float64's range.
    """
    x, y, form = _validated(X, Y, kernel, form, debiased)
    if form == "feature":
        value, _, _, P = _feature_terms(x, y, debiased)
        return hsic_in_input_units(value, 2 * (P.ex + P.ey))
    if _host_linear(x, y, kernel):
        value, _, _, G, H = _linear_gram_terms(x, y, debiased)
        return hsic_in_input_units(value, 2 * (G.e + H.e))
    x, y, ex, ey = _rescaled(x, y)
    value = hsic_centred(*_grams(x, y, ex, ey, kernel, debiased, threshold, sigma), debiased)
    return hsic_in_input_units(value, 2 * (ex + ey)) if kernel == "linear" else value


@register(
    "cka",
    family="kernel",
    range=(-1.0, 1.0),
    invariances=("orthogonal", "isotropic_scale", "translation", "permutation"),
    cost="O(n·(d1²+d2²+d1d2)) linear feature form; O(n²(d1+d2)) Gram",
    description="Centred kernel alignment (Kornblith 2019). Debiased (default) ≈ 0 on independent data; "
    "biased is in [0, 1] and inflated when d ≫ n.",
    defaults={"kernel": "linear", "debiased": True},
    constraints=_KERNEL_CONSTRAINTS,
    prepare="alignkit.metrics.cka_prepared:prepare_cka",
)
def cka(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    kernel: str = "linear",
    debiased: bool = True,
    form: str = "auto",
    threshold: float = 1.0,
    sigma: float = 1.0,
) -> float:
    """Centred kernel alignment ``HSIC(K,L)/sqrt(HSIC(K,K)·HSIC(L,L))``.

    Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations Revisited",
    ICML 2019; debiased HSIC from Song et al., JMLR 2012.

    kernel : "linear", "rbf_median" (bandwidth = threshold × median distance, Kornblith's
        ``gram_rbf``) or "rbf_abs" (absolute σ, PRH's convention). The two RBFs differ; never alias.
    debiased : use the unbiased HSIC estimator; the headline choice, since biased CKA is high even for
        random data when d ≫ n (Murphy et al., ICLR 2024).
    form : "auto" (Gram when n < 0.9·(d1 + d2), where it takes fewer flops, else feature form), "gram" or
        "feature" (linear only).

    Needs n ≥ 4 for either estimator. Biased CKA warns (SmallSampleWarning) when ``n − 1 < 10·sqrt(m_x·m_y)``,
    m = (tr K_c)²/‖K_c‖_F² the effective rank of each centred kernel: then independent spaces already score
    ≈ sqrt(m_x·m_y)/(n − 1) > 0.1 (d ≫ n drives it to 1; Murphy et al., ICLR 2024).
    """
    x, y, form = _validated(X, Y, kernel, form, debiased)
    n = x.shape[0]
    if form == "feature":
        xy, xx, yy, P = _feature_terms(x, y, debiased)
        if not debiased:
            scale = float((n - 1) ** 2)  # biased HSIC = ‖X_cᵀX_c‖²/(n−1)², tr K_c = ‖X_c‖²
            warn_biased_cka(n, effective_rank(P.tx, xx * scale), effective_rank(P.ty, yy * scale))
        return cka_ratio(xy, xx, yy)
    if _host_linear(x, y, kernel):
        xy, xx, yy, G, H = _linear_gram_terms(x, y, debiased)
        if not debiased:  # ‖K_c‖_F² = (n−1)²·HSIC_b(K, K)
            scale = float((n - 1) ** 2)
            warn_biased_cka(n, effective_rank(G.centred_trace, xx * scale), effective_rank(H.centred_trace, yy * scale))
        return cka_ratio(xy, xx, yy)
    x, y, ex, ey = _rescaled(x, y)
    K, L = _grams(x, y, ex, ey, kernel, debiased, threshold, sigma)
    xx, yy = hsic_centred(K, K, debiased), hsic_centred(L, L, debiased)
    if not debiased:
        warn_biased_cka(n, gram_effective_rank(K), gram_effective_rank(L))
    return cka_ratio(hsic_centred(K, L, debiased), xx, yy)


def _host_linear(x: torch.Tensor, y: torch.Tensor, kernel: str) -> bool:
    """Linear kernels on host arrays take :func:`_linear_gram_terms` (products in the input's precision, as the
    feature form); other kernels and devices build float64 torch Grams."""
    return kernel == "linear" and x.device.type == "cpu" and y.device.type == "cpu"


def gram_effective_rank(Kc: torch.Tensor) -> float:
    """``(tr K_c)²/‖K_c‖_F²`` of a centred (HKH) kernel: its effective rank (participation ratio)."""
    return effective_rank(float(torch.trace(Kc)), float((Kc * Kc).sum()))
