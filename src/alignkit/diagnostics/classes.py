"""Class diagnostics: how well labelled classes separate in one space (METHODS §3.5–3.6).

- :func:`separability_probe`: held-out accuracy and AUROC of a cross-validated linear probe.
- :func:`fisher_ratio`: the multiclass Fisher criterion ``J = tr(S_W⁻¹ S_B)`` and the per-feature ratio F1.
- :func:`thornton`: Thornton's separability index (1-NN label agreement).
- :func:`calinski_harabasz`: the Calinski–Harabasz variance ratio.

The scatter matrices come from one blocked pass over the rows (:func:`class_scatter`): per block, the rows are
shifted by a reference point and widened to float64, the class sums are accumulated with a sparse one-hot
product and the Gram ``BᵀB`` with one BLAS product (syrk), so the cost is O(n·d²) (the product ``XᵀX``
dominates) and the memory O(block·d + d² + C·d), never an n×d float64 copy.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignkit._validation import ArrayLike
from alignkit.diagnostics._inputs import as_array, check_groups, check_labels
from alignkit.diagnostics._registry import register
from alignkit.diagnostics._result import DiagnosticResult

_BLOCK_BYTES = 32 * 2**20  # one float64 block of rows
#: Automatic ridge of :func:`fisher_ratio`, relative to the mean within-class variance tr(S_W)/d.
AUTO_REG = 1e-3
#: Below this reciprocal condition number (LAPACK's 1-norm estimate) S_W counts as ill-conditioned.
RCOND_MIN = 1e-10


# --------------------------------------------------------------------------------------------- scatter


@dataclass(frozen=True)
class ClassScatter:
    """Class counts and means with the within- and between-class scatter (full d×d, or their diagonals).

    ``S_B = Σ_c n_c(μ_c−μ)(μ_c−μ)ᵀ``, ``S_W = Σ_c Σ_{x∈c}(x−μ_c)(x−μ_c)ᵀ``; ``centred_means`` holds μ_c − μ.
    ``class_sq`` (C×d, only when asked) holds each class's per-dimension sum of squared deviations. All are in
    the units of X·2^−``exponent`` (see :func:`class_scatter`).
    """

    counts: np.ndarray
    centred_means: np.ndarray
    within: np.ndarray
    between: np.ndarray
    total_trace: float
    class_sq: np.ndarray | None = None
    exponent: int = 0


def class_scatter(
    x: np.ndarray, codes: np.ndarray, n_classes: int, *, full: bool, per_class: bool = False
) -> ClassScatter:
    """Scatter matrices in one blocked pass (see the module docstring).

    Rows are shifted by s = the mean of the first block before squaring (the scatter does not change, and the
    cancellation in ``Σ(x−s)(x−s)ᵀ − Σ_c n_c(μ_c−s)(μ_c−s)ᵀ`` stays small), and the whole space is divided by
    one power of two (exact) that moves its largest |entry| into [0.5, 1), so no square overflows or
    underflows (only when the scale is extreme, beyond 2^±300): the scatter is in those units (J, F1 and CH are
    scale-free). ``full=False`` keeps only the diagonals (O(n·d)).
    """
    import scipy.sparse as sp

    n, d = x.shape
    step = max(1, min(n, _BLOCK_BYTES // (8 * d)))
    peak = max(-float(x.min()), float(x.max()))
    # rescale only where float64 squares summed over n·d terms could leave the normal range
    exponent = max(-1000, min(1000, math.frexp(peak)[1])) if peak > 0 and not 2.0**-300 < peak < 2.0**300 else 0
    unit = math.ldexp(1.0, -exponent)
    shift = x[:step].mean(axis=0, dtype=np.float64) * unit
    sums = np.zeros((n_classes, d))
    sq_class = np.zeros((n_classes, d)) if per_class else None
    gram = np.zeros((d, d)) if full else np.zeros(d)
    buf = np.empty((step, d))
    for s in range(0, n, step):
        src = x[s : s + step]
        b = buf[: src.shape[0]]
        if unit != 1.0:
            np.multiply(src, unit, out=b)
            b -= shift
        else:
            np.subtract(src, shift, out=b)  # float32 rows are widened on the fly: one pass
        m = b.shape[0]
        onehot = sp.csr_matrix((np.ones(m), (codes[s : s + step], np.arange(m))), shape=(n_classes, m))
        sums += onehot @ b  # class sums, O(m·d)
        if full:
            gram += b.T @ b  # numpy calls syrk for a product with its own transpose
        else:
            gram += np.einsum("ij,ij->j", b, b)
        if sq_class is not None:
            sq_class += onehot @ (b * b)
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    means = sums / counts[:, None]  # μ_c − s
    centred = means - sums.sum(axis=0) / n  # μ_c − μ
    weighted = counts[:, None] * centred
    if full:
        within = gram - (counts[:, None] * means).T @ means
        within = (within + within.T) / 2.0
        between = weighted.T @ centred
        total = float(np.trace(gram) - n * float(np.sum((means.T @ counts / n) ** 2)))
    else:
        within = gram - np.einsum("c,cj,cj->j", counts, means, means)
        between = np.einsum("cj,cj->j", weighted, centred)
        total = float(gram.sum() - n * float(np.sum((means.T @ counts / n) ** 2)))
    class_sq = None
    if sq_class is not None:
        class_sq = np.maximum(sq_class - counts[:, None] * means**2, 0.0)
    return ClassScatter(counts, centred, within, between, total, class_sq, exponent)


def _labelled(X: ArrayLike, labels: Any, *, min_per_class: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = as_array(X, "X")
    codes, classes = check_labels(labels, x.shape[0], min_per_class=min_per_class)
    return x, codes, classes


def _show(v: Any) -> str:
    """A label as the user wrote it (``5``, ``'cat'``), not numpy's ``np.int64(5)``."""
    return repr(v.item() if isinstance(v, np.generic) else v)


# --------------------------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class ProbeResult(DiagnosticResult):
    """Held-out scores of a cross-validated linear probe; ``value`` is the mean accuracy."""

    accuracy: float
    auroc: float
    chance: float  # the largest class's share: accuracy of always predicting it
    fold_accuracy: np.ndarray
    fold_auroc: np.ndarray  # NaN for a test fold holding one class (grouped folds only)
    auroc_folds: int  # folds whose AUROC is defined (the mean is over these)
    folds: int
    grouped: bool
    n_items: int
    n_classes: int
    C: float
    seed: int

    @property
    def value(self) -> float:
        return self.accuracy


@register(
    "separability_probe",
    family="classes",
    range=(0.0, 1.0),
    higher_is_better=True,
    cost="folds × one L2 logistic-regression fit (lbfgs): O(folds·iterations·n·d·C)",
    description="Held-out accuracy (and macro one-vs-rest AUROC) of an L2 logistic-regression probe under "
    "stratified k-fold cross-validation, scaler fitted inside each fold, grouped folds with groups= "
    "(Alain & Bengio 2017; METHODS §3.5). Compare with `chance` (the majority share).",
    constraints={"folds": {"low": 2}, "C": {"low": 0.0, "low_open": True}, "max_iter": {"low": 1}},
    null="shuffle_labels",
)
def separability_probe(
    X: ArrayLike,
    labels: Any,
    *,
    groups: Any = None,
    folds: int = 5,
    C: float = 1.0,
    seed: int = 0,
    max_iter: int = 1000,
) -> ProbeResult:
    """Linear separability of the classes: ``StandardScaler → LogisticRegression(C)`` (L2, lbfgs) fitted on
    each training fold of a stratified ``folds``-fold split (``StratifiedKFold``, shuffled with ``seed``;
    ``StratifiedGroupKFold`` when ``groups`` is given, so items sharing a group, e.g. a prompt, never sit on
    both sides), scored on the held-out fold.

    Reports the mean held-out accuracy (``value``), the mean AUROC (binary; macro one-vs-rest over the
    classes present in the test fold for C > 2), the per-fold values and ``chance`` = the majority-class share.
    Every class needs at least ``folds`` items. Shares its implementation with
    :func:`alignkit.evaluate.linear_probe` (:func:`~alignkit.evaluate.probe.cross_validate_probe`).
    Alain & Bengio, "Understanding intermediate layers using linear classifier probes" (ICLR workshop 2017).
    """
    from alignkit.evaluate.probe import cross_validate_probe

    x, codes, classes = _labelled(X, labels)
    n = x.shape[0]
    counts = np.bincount(codes)
    small = np.flatnonzero(counts < folds)
    if small.size:
        shown = ", ".join(f"{_show(classes[i])} ({counts[i]} item{'s' if counts[i] != 1 else ''})" for i in small[:5])
        fix = (
            f"use folds={int(counts.min())} or fewer" if counts.min() >= 2 else "drop or merge the classes with 1 item"
        )
        raise ValueError(
            f"separability_probe: every class needs at least folds={folds} items (one per test fold); "
            f"too few in {shown}: {fix}"
        )
    g = check_groups(groups, n)
    if g is not None and (n_groups := int(g.max()) + 1) < folds:
        raise ValueError(f"separability_probe: groups holds {n_groups} groups, fewer than folds={folds}")
    res = cross_validate_probe(
        x.astype(np.float64, copy=False), codes, n_folds=folds, C=C, seed=seed, max_iter=max_iter, groups=g, auroc=True
    )
    assert res.auroc is not None
    defined = np.isfinite(res.auroc)
    auroc = float(np.mean(res.auroc[defined])) if defined.any() else float("nan")
    if not defined.any():
        warnings.warn(
            "separability_probe: every test fold holds a single class (the groups follow the classes), so the "
            "AUROC is undefined (NaN, auroc_folds=0); the accuracy is still reported",
            RuntimeWarning,
            stacklevel=3,
        )
    return ProbeResult(
        accuracy=float(np.mean(res.accuracy)),
        auroc=auroc,
        chance=float(counts.max() / n),
        fold_accuracy=res.accuracy,
        fold_auroc=res.auroc,
        auroc_folds=int(defined.sum()),
        folds=int(folds),
        grouped=g is not None,
        n_items=int(n),
        n_classes=int(classes.size),
        C=float(C),
        seed=int(seed),
    )


# --------------------------------------------------------------------------------------------- Fisher


@dataclass(frozen=True)
class FisherResult(DiagnosticResult):
    """The Fisher criterion ``J = tr((S_W + εI)⁻¹ S_B)`` (ε = 0 unless ``regularised``) and the per-feature F1.

    ``reg`` is the relative ridge used (ε = reg·tr(S_W)/d, the mean within-class variance times reg) and
    ``ridge`` the absolute ε (in squared units of X); ``reason`` says why it was added. A regularised J
    depends on ``reg``: compare only values computed with the same one.
    """

    j: float
    f1: float  # max over dimensions of the multiclass 1-D ratio (``ratios``)
    f1_dim: int
    f1_ho_basu: float | None  # two classes: max_j (μ1j−μ2j)²/(σ1j²+σ2j²) (Ho & Basu 2002); None for C > 2
    regularised: bool
    reg: float
    ridge: float
    reason: str
    rcond: float | None  # LAPACK's reciprocal condition estimate of S_W (None when not factorised unridged)
    n_items: int
    n_classes: int
    dim: int
    ratios: np.ndarray  # per-dimension Σ_c n_c(μ_cj−μ_j)² / Σ_c Σ_{x∈c}(x_j−μ_cj)²

    @property
    def value(self) -> float:
        return self.j


@register(
    "fisher_ratio",
    family="classes",
    range=(0.0, float("inf")),
    higher_is_better=True,
    cost="O(n·d² + d³ + C·d²): one blocked XᵀX pass and a Cholesky factor of S_W",
    description="Multiclass Fisher criterion J = tr(S_W⁻¹ S_B) (Fukunaga 1990), with a recorded ridge "
    "εI, ε = reg·tr(S_W)/d, when S_W is singular (d > n − C) or ill-conditioned; also the per-feature "
    "ratio F1 (Ho & Basu 2002; multiclass form of Mollineda et al. 2005). METHODS §3.6.",
    constraints={"reg": {"low": 0.0}},
    null="shuffle_labels",
)
def fisher_ratio(X: ArrayLike, labels: Any, *, reg: float | None = None) -> FisherResult:
    """Fisher's class-separation criterion.

    ``J = tr(S_W⁻¹ S_B)`` with ``S_B = Σ_c n_c(μ_c−μ)(μ_c−μ)ᵀ`` and ``S_W = Σ_c Σ_{x∈c}(x−μ_c)(x−μ_c)ᵀ``
    (Fukunaga, *Introduction to Statistical Pattern Recognition*, 1990, section 10.2): the sum of the generalised
    eigenvalues of (S_B, S_W), invariant to any invertible linear map of the features (when unregularised).
    Computed as ``‖L⁻¹Mᵀ‖_F²`` with ``S_W = LLᵀ`` (Cholesky) and ``M = diag(√n_c)(μ_c−μ)`` (so S_B = MᵀM).

    ``reg``: None (default) adds ``εI`` only where needed, with ε = ``AUTO_REG``·tr(S_W)/d (1e-3 of the mean
    within-class variance): when d > n − C (S_W has rank ≤ n − C < d, so it is singular), when its
    Cholesky factorisation fails, or when its reciprocal condition number is below ``RCOND_MIN`` = 1e-10.
    A number ≥ 0 always uses ε = reg·tr(S_W)/d (0: never regularise, an error if S_W is singular). What was
    used is recorded in the result (``regularised``, ``reg``, ``ridge``, ``reason``).

    F1: ``max_j r_j`` over dimensions of the multiclass 1-D ratio ``r_j = Σ_c n_c(μ_cj−μ_j)² /
    Σ_c Σ_{x∈c}(x_j−μ_cj)²`` = diag(S_B)/diag(S_W) (Mollineda, Sánchez & Sotoca 2005, the form of Lorena et al.,
    "How complex is your classification problem?", ACM Comput. Surv. 2019, which report 1/(1+F1)); invariant to
    per-dimension scaling. For two classes it equals ``(n₁n₂/n)(μ₁−μ₂)²/(n₁σ₁²+n₂σ₂²)``, and Ho & Basu's
    original ``(μ₁−μ₂)²/(σ₁²+σ₂²)`` (IEEE TPAMI 24(3), 2002) is reported too (``f1_ho_basu``). A dimension
    constant within every class but not across them has r_j = inf (perfectly separating); one constant
    everywhere has r_j = 0.

    Every class needs at least 2 items. Errors: a space with no within-class variance (every class a single
    point: J is infinite), or reg=0 with a singular S_W.
    """
    import scipy.linalg as sla

    x, codes, classes = _labelled(X, labels, min_per_class=2)
    n, d = x.shape
    c = int(classes.size)
    sc = class_scatter(x, codes, c, full=True, per_class=c == 2)
    sw, sb = sc.within, sc.between
    tr_w = float(np.trace(sw))
    if not tr_w > 1e-12 * max(sc.total_trace, 0.0) or tr_w <= 0.0:
        raise ValueError(
            "fisher_ratio: X has no within-class variance (every class is a single point), so S_W = 0 and the "
            "Fisher ratio is infinite or undefined"
        )
    scale = tr_w / d
    w = sw / scale  # unit mean eigenvalue: the ridge and the condition threshold are relative
    m = np.sqrt(sc.counts)[:, None] * sc.centred_means  # C×d, S_B = MᵀM
    reason = ""
    rcond: float | None = None
    factor = None
    if reg is None or reg == 0.0:
        if d > n - c:
            reason = f"d={d} > n − C = {n - c}: S_W has rank ≤ n − C and is singular"
        else:
            try:
                factor = sla.cho_factor(w, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                reason = "S_W is not positive definite (a direction without within-class variance)"
            else:
                anorm = float(np.abs(w).sum(axis=0).max())
                (pocon,) = sla.get_lapack_funcs(("pocon",), (w,))
                rc, info = pocon(factor[0], anorm, uplo="L")
                rcond = float(rc) if info == 0 else 0.0
                if rcond < RCOND_MIN:
                    reason = f"S_W is ill-conditioned (reciprocal condition ≈ {rcond:.1e} < {RCOND_MIN:.0e})"
        if reason and reg == 0.0:
            raise ValueError(f"fisher_ratio: {reason}; use reg=None (automatic ridge) or reg > 0")
        rel = AUTO_REG if reason else 0.0
    else:
        rel = float(reg)
        reason = f"requested (reg={reg:g})"
    if rel > 0.0 or factor is None:
        factor = sla.cho_factor(w + rel * np.eye(d), lower=True, check_finite=False)
    z = sla.solve_triangular(factor[0], m.T, lower=True, check_finite=False)
    j = float(np.sum(z * z)) / scale

    dw, db = np.diag(sw), np.diag(sb)
    ratios = _ratios(db, dw, np.diag(sw) + db)
    f1_dim = int(np.argmax(ratios))
    ho_basu = None
    if sc.class_sq is not None:
        var = sc.class_sq / sc.counts[:, None]  # per-class biased variance per dimension
        gap = (sc.centred_means[0] - sc.centred_means[1]) ** 2
        ho_basu = float(np.max(_ratios(gap, var.sum(axis=0), gap + var.sum(axis=0))))
    return FisherResult(
        j=j,
        f1=float(ratios[f1_dim]),
        f1_dim=f1_dim,
        f1_ho_basu=ho_basu,
        regularised=rel > 0.0,
        reg=rel,
        ridge=math.ldexp(rel * scale, 2 * sc.exponent),
        reason=reason,
        rcond=rcond,
        n_items=int(n),
        n_classes=c,
        dim=int(d),
        ratios=ratios,
    )


def _ratios(num: np.ndarray, den: np.ndarray, total: np.ndarray) -> np.ndarray:
    """num/den per dimension: inf where den vanishes (relative to ``total``) but num does not, 0 where both do."""
    tiny = 1e-12 * np.maximum(total, 0.0)
    zero_den = den <= tiny
    out = np.divide(num, np.where(zero_den, 1.0, den))
    out[zero_den] = np.where(num[zero_den] > tiny[zero_den], np.inf, 0.0)
    return np.maximum(out, 0.0)


# --------------------------------------------------------------------------------------------- Thornton


@dataclass(frozen=True)
class ThorntonResult(DiagnosticResult):
    """Thornton's separability index; ``chance`` is its expectation under randomly permuted labels."""

    thornton: float
    chance: float  # Σ_c n_c(n_c − 1) / (n(n − 1))
    n_items: int
    n_classes: int
    metric: str

    @property
    def value(self) -> float:
        return self.thornton


@register(
    "thornton",
    family="classes",
    range=(0.0, 1.0),
    higher_is_better=True,
    cost="O(n²·d) exact blocked 1-NN search, memory O(n + block·n)",
    description="Thornton's separability index: the fraction of points whose nearest neighbour (itself "
    "excluded) has the same label (Thornton 1998; METHODS §3.5). An exact duplicate is a point's 1-NN.",
    constraints={"metric": {"choices": ("euclidean", "cosine")}},
    null="shuffle_labels",
)
def thornton(X: ArrayLike, labels: Any, *, metric: str = "euclidean") -> ThorntonResult:
    """``(1/n) Σ_i 1[y_i = y_{nn(i)}]``, nn(i) the nearest other row (Euclidean or cosine).

    C. Thornton, "Separability is a learner's best friend", 4th Neural Computation and Psychology Workshop,
    1998. The 1-NN comes from :func:`alignkit.neighbors.knn_graph` (exact blocked search, self excluded by
    index). Duplicates: an exact duplicate of a row is at distance 0, so it is that row's 1-NN (among several
    tied neighbours the search's order decides); deduplicate first when duplicates are artefacts.
    ``chance`` = Σ_c n_c(n_c−1)/(n(n−1)), the expected index under randomly permuted labels.
    """
    from alignkit.neighbors import knn_graph

    x, codes, classes = _labelled(X, labels)
    n = x.shape[0]
    nn = knn_graph(x, 1, metric=metric)  # type: ignore[arg-type]  # checked by the registry
    idx = nn.indices[:, 0].numpy()
    counts = np.bincount(codes).astype(np.float64)
    return ThorntonResult(
        thornton=float(np.mean(codes[idx] == codes)),
        chance=float(np.sum(counts * (counts - 1)) / (n * (n - 1))),
        n_items=int(n),
        n_classes=int(classes.size),
        metric=metric,
    )


# --------------------------------------------------------------------------------------------- Calinski–Harabasz


@register(
    "calinski_harabasz",
    family="classes",
    range=(0.0, float("inf")),
    higher_is_better=True,
    cost="O(n·d), one blocked pass",
    description="Calinski–Harabasz variance ratio [tr(S_B)/(C−1)] / [tr(S_W)/(n−C)] of the labelled classes "
    "(Calinski & Harabasz 1974; equals sklearn.metrics.calinski_harabasz_score). METHODS §3.5.",
    null="shuffle_labels",
)
def calinski_harabasz(X: ArrayLike, labels: Any) -> float:
    """``CH = [tr(S_B)/(C−1)] / [tr(S_W)/(n−C)]``, tr(S_B) = Σ_c n_c‖μ_c−μ‖², tr(S_W) = Σ_c Σ_{x∈c}‖x−μ_c‖².

    T. Caliński & J. Harabasz, "A dendrite method for cluster analysis", Communications in Statistics 3(1), 1974.
    Equals :func:`sklearn.metrics.calinski_harabasz_score`, except that a space without within-class variance
    (sklearn returns 1.0) is an error here, as is n = C (every class a single item).
    """
    x, codes, classes = _labelled(X, labels)
    n = x.shape[0]
    c = int(classes.size)
    if n <= c:
        raise ValueError(f"calinski_harabasz needs more items than classes (n − C ≥ 1); got n={n}, C={c}")
    sc = class_scatter(x, codes, c, full=False)
    tr_w, tr_b = float(np.sum(sc.within)), float(np.sum(sc.between))
    if not tr_w > 1e-12 * max(sc.total_trace, 0.0) or tr_w <= 0.0:
        raise ValueError("calinski_harabasz: X has no within-class variance (every class is a single point)")
    return (max(tr_b, 0.0) / (c - 1)) / (tr_w / (n - c))


__all__ = [
    "AUTO_REG",
    "RCOND_MIN",
    "ClassScatter",
    "FisherResult",
    "ProbeResult",
    "ThorntonResult",
    "calinski_harabasz",
    "class_scatter",
    "fisher_ratio",
    "separability_probe",
    "thornton",
]
