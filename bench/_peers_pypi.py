"""Peer implementations from PyPI for ``bench/peers.py`` (issue 13): the libraries a user would pick instead.

``peers()`` maps a measure id to the peers that compute it (or something close to it). The id is alignkit's
canonical id of the ``(name, params)`` that peers.py measures, e.g. ``"cka?debiased=false"``,
``"shape_distance?alpha=0.0"``, ``"svcca?keep=10"``; :func:`key` builds it, :func:`peers_for` looks a pair up.
Each :class:`Peer` has ``call(X, Y) -> float`` on float32 numpy ``X``, ``Y`` (n × d), through the peer's public
API (torch tensors on the CPU for the torch libraries, in the data's float32 unless the peer converts itself), its
value converted to alignkit's scale where the ``note`` says so. ``tol``: the largest |alignkit − peer| allowed where
the definitions agree (for ``"hsic"``, as in peers.py, relative to the value); ``None`` where they differ, and then
``note`` says how. ``max_n``: beyond it the peer's dense n × n (or O(n³)) work is too slow or too large to time.
Peers that are not installed are left out.

Install: ``make bench-peers`` (the ``bench`` extra of pyproject.toml, every package with ``--no-deps`` so that pip
never touches torch or numpy; repsim is an sdist and builds with cmake and a C++17 compiler, ~1 minute).

Verified with (the versions pinned in the extra): repsim 0.1.5, ckatorch 1.0.3, pytorch-cka 1.1.3 (imports as
``cka``), torch-cka 0.21, cka-pytorch 1.1.3, deep-reps 0.0.6. Not on PyPI: netrep, anatome, similarity-repr (and
the PRH ``platonic`` code): no peer for ``svcca?keep=10`` or for a cosine ``mutual_knn``.

Definitions, per measure (alignkit's in bench/peers.py's docstring and src/alignkit/metrics/):

- cka, biased: ckatorch ``cka_base(unbiased=False)`` (Kornblith's n × n Gram centring, float64) and repsim
  ``cka(kernel="linear", estimator="gretton")`` (``tr(KHLH)/(n−1)²`` with dense H products, float64, O(n³)) are the
  same estimator. deep-reps ``centered_kernel_alignment`` is too, but builds each n × n RSM with a Python double
  loop (4·10⁶ torch calls at n = 2000): left out.
- cka, debiased (Song 2012 unbiased HSIC in all three terms): ckatorch ``cka_base(unbiased=True)`` (Kornblith's
  U-centring, float64), pytorch-cka ``cka_from_features`` (float32 Grams of the uncentred rows, clamped to
  [0, 1]), torch-cka ``CKA.compare`` and cka-pytorch ``CKACalculator`` (both through forward hooks on a model and a
  DataLoader: here identity models and one batch of all n rows; float32 uncentred Grams; torch-cka's
  ``tr(K @ L)`` is an O(n³) product; cka-pytorch adds ε = 1e-4 under the square root of its denominator).
  The debiased HSIC is invariant to the column means, so uncentred Grams give the same value up to float32
  round-off. repsim's ``estimator="song"`` is NOT debiased CKA: song's unbiased HSIC in the numerator over
  Gretton's *biased* HSIC(K,K), HSIC(L,L) in the denominator ("stable diagonals"; estimator "lange" likewise).
- hsic (unbiased, linear): repsim ``hsic(kernel="linear", estimator="song")`` (float64), pytorch-cka ``hsic`` and
  ckatorch ``hsic1`` on the float32 uncentred Grams (``hsic1`` is ckatorch's minibatch HSIC_1, one batch here).
- cca (mean ρ): repsim ``cca(summary_type="pillai")`` = ``‖Q_xᵀQ_y‖_* / min(r_x, r_y)`` from Jacobi-SVD
  orthonormal bases in float64 (its default "yanai" is mean ρ², alignkit's ``summary="mean_sq"``); deep-reps
  ``compute_standard_cca``: ``Σρ / d_X`` from float32 covariances, ``C^{-1/2}`` by eigh with eigenvalues clamped
  at 1e-10 (= mean ρ for equal full-rank widths).
- svcca, keep = 0.99: deep-reps ``compute_standard_svcca`` keeps per side the fewest top PCA directions reaching
  99 % of the variance (alignkit's rule) but divides Σρ by the input width d instead of min(k_x, k_y): its value
  is alignkit's × min(k_x, k_y)/d. repsim ``svcca`` applies its 99 % rule to the *whitened* orthonormal basis of
  each centred space (all singular values ≈ 1, so it keeps ⌈0.99·r⌉ of the r directions, arbitrary ones) and
  divides by the full ranks: a different quantity. Neither has an integer keep (``svcca?keep=10``: no peer).
- pwcca: repsim ``pwcca`` uses the same weights ``α_i = Σ_j |⟨h_i, x_j⟩|`` (h from ``U_x`` of the centred
  X) but symmetrises, ``(pwcca(X, Y) + pwcca(Y, X))/2``; alignkit's is asymmetric (weights from X). deep-reps
  ``compute_wvcca`` raises (it calls ``compute_cca`` with three arguments): left out.
- procrustes / shape_distance (α = 1): deep-reps ``orthogonal_procrustes`` is the distance
  ``sqrt(‖X‖² + ‖Y‖² − 2‖XᵀY‖_*)`` on the inputs as given; on centred, unit-Frobenius inputs (done in ``call``,
  as alignkit does) it is ``sqrt(2 − 2·procrustes)``, so ``call`` returns ``1 − d²/2`` (and arccos of that for the
  shape distance). deep-reps ``angular_shape_metric`` / ``partial_whitening_shape_metric`` are left out: they
  minimise arccos‖X̃Q ∘ Ỹ‖_F (an elementwise product, not the inner product ⟨X̃Q, Ỹ⟩) by 1000 / 100 Adam steps.
- mutual_knn (k = 10): deep-reps ``knn_jaccard_similarity`` uses Euclidean neighbours of the raw rows (alignkit:
  cosine) and the Jaccard index |A∩B|/|A∪B| (alignkit: |A∩B|/k); per row, Jaccard = m/(2k − m) for m shared.

pytorch-cka's import name is ``cka``, the same as bench/cka.py's (first on ``sys.path`` when a bench script runs),
so it is loaded from its installed files under another module name (:func:`_pytorch_cka_module`).
deep-reps 0.0.6 cannot be imported as a package (``deep_reps/__init__`` imports ``open_clip`` for a CLIP helper,
which needs torchvision and timm, and ``neighbors_measures`` imports a name from the half-initialised package), so
its measure modules are loaded without running ``__init__`` (:func:`_deep_reps_modules`); their code is unchanged.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import math
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Peer:
    """One peer implementation of a measure (see the module docstring)."""

    name: str  # library and function, e.g. "ckatorch.cka_base"
    version: str  # installed distribution version
    call: Callable[[np.ndarray, np.ndarray], float]  # float32 X, Y (n × d) → value on alignkit's scale
    tol: float | None  # |Δ| allowed where the definitions agree; None where they differ (see note)
    note: str  # what the peer computes, any conversion, and how it differs
    max_n: int | None = None  # skip beyond this n (dense n × n or O(n³) work)


#: The measure ids (alignkit canonical ids of peers.py's (name, params)) that peers() may return.
IDS = (
    "procrustes",
    "shape_distance?alpha=1.0",
    "shape_distance?alpha=0.0",
    "cka?debiased=false",
    "cka?debiased=true",
    "hsic",
    "cca",
    "svcca?keep=10",
    "svcca?keep=0.99",
    "pwcca",
    "mutual_knn?k=10",
)


def key(name: str, params: dict[str, Any] | None = None) -> str:
    """alignkit's canonical id of a measure and its parameters, e.g. ``key("cka", {"debiased": False})``."""
    from alignkit.metrics import measure_spec

    return measure_spec(name, **(params or {})).id


def peers_for(name: str, params: dict[str, Any] | None = None) -> list[Peer]:
    """The installed peers of ``(name, params)``; a parameter left at its default may be given or left out."""
    from alignkit.metrics import get, parse_measure_id

    defaults = get(name).defaults
    wanted = {**defaults, **(params or {})}
    for k, found in peers().items():
        n2, p2 = parse_measure_id(k)
        if n2 == name and {**defaults, **p2} == wanted:
            return found
    return []


def _version(dist: str) -> str:
    return importlib.metadata.version(dist)


def _torch_pair(X: np.ndarray, Y: np.ndarray) -> tuple[Any, Any]:
    import torch

    return torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.ascontiguousarray(Y))


def _unit_centred(X: np.ndarray) -> np.ndarray:
    Xc = X - X.mean(axis=0)
    return Xc / np.linalg.norm(Xc)


# ------------------------------------------------------------------------------------------ repsim


def _repsim() -> list[tuple[str, Peer]]:
    import repsim

    v = _version("repsim")
    # Eigen without BLAS, single-threaded: Gretton's HSIC forms K·H·L·H (three O(n³) products, ~14 s at n = 2000),
    # and the CCA family runs Jacobi SVDs of the n × d data (cca ~30 s, pwcca ~100 s at n = 2000, d = 384)
    big = 2000
    return [
        (
            "cka?debiased=false",
            Peer(
                "repsim.cka(linear, gretton)",
                v,
                lambda X, Y: float(repsim.cka([X, Y], kernel_type="linear", estimator="gretton")[0, 1]),
                1e-6,
                "same estimator: tr(KHLH)/(n−1)² on K = X_cX_cᵀ, float64, dense n × n products (O(n³))",
                big,
            ),
        ),
        (
            "cka?debiased=true",
            Peer(
                "repsim.cka(linear, song)",
                v,
                lambda X, Y: float(repsim.cka([X, Y], kernel_type="linear", estimator="song")[0, 1]),
                None,
                "differs: unbiased (Song) HSIC(K,L) over the BIASED (Gretton) HSIC(K,K), HSIC(L,L) — repsim always "
                "normalises with Gretton's 'stable diagonals'; float64, O(n³)",
                big,
            ),
        ),
        (
            "hsic",
            Peer(
                "repsim.hsic(linear, song)",
                v,
                lambda X, Y: float(repsim.hsic([X, Y], kernel_type="linear", estimator="song")[0, 1]),
                1e-6,
                "same estimator: Song 2012 unbiased HSIC on K = X_cX_cᵀ, float64 (tol relative); also computes "
                "HSIC(X,X), HSIC(Y,Y)",
                big,
            ),
        ),
        (
            "cca",
            Peer(
                "repsim.cca(pillai)",
                v,
                lambda X, Y: float(repsim.cca([X, Y], summary_type="pillai")[0, 1]),
                1e-6,
                "same: ‖Q_xᵀQ_y‖_*/min(r_x, r_y) = mean ρ, Jacobi-SVD orthonormal bases in float64 (rank rule "
                "s > 1e-12·s_1); repsim's default summary 'yanai' is mean ρ² (alignkit summary=mean_sq)",
                big,
            ),
        ),
        (
            "svcca?keep=0.99",
            Peer(
                "repsim.svcca(pillai)",
                v,
                lambda X, Y: float(repsim.svcca([X, Y], summary_type="pillai")[0, 1]),
                None,
                "differs: the 99 % variance rule is applied to the whitened orthonormal basis of each centred space "
                "(singular values ≈ 1, so ⌈0.99·r⌉ of its r directions are kept, arbitrary ones), not to the data's "
                "spectrum, and Σρ is divided by the full ranks",
                big,
            ),
        ),
        (
            "pwcca",
            Peer(
                "repsim.pwcca",
                v,
                lambda X, Y: float(repsim.pwcca([X, Y])[0, 1]),
                None,
                "differs: symmetrised, (pwcca(X,Y) + pwcca(Y,X))/2; each direction uses alignkit's weights "
                "α_i = Σ_j|⟨h_i, x_j⟩| (float64 Jacobi SVDs)",
                big,
            ),
        ),
    ]


# ------------------------------------------------------------------------------------------ ckatorch


def _ckatorch() -> list[tuple[str, Peer]]:
    import ckatorch

    v = _version("ckatorch")

    def cka(unbiased: bool) -> Callable[[np.ndarray, np.ndarray], float]:
        def call(X: np.ndarray, Y: np.ndarray) -> float:
            x, y = _torch_pair(X, Y)
            return float(ckatorch.cka_base(x, y, kernel="linear", unbiased=unbiased))

        return call

    def hsic1(X: np.ndarray, Y: np.ndarray) -> float:
        x, y = _torch_pair(X, Y)
        return float(ckatorch.hsic1((x @ x.T)[None], (y @ y.T)[None])[0])

    return [
        (
            "cka?debiased=false",
            Peer(
                "ckatorch.cka_base(unbiased=False)",
                v,
                cka(False),
                1e-6,
                "same estimator: Kornblith's centred n × n Grams of the uncentred rows, ⟨K_c,L_c⟩/(‖K_c‖‖L_c‖); "
                "casts to float64; ~25 s a call at n = 10⁴",
                10_000,
            ),
        ),
        (
            "cka?debiased=true",
            Peer(
                "ckatorch.cka_base(unbiased=True)",
                v,
                cka(True),
                1e-6,
                "same estimator: Kornblith's U-centred n × n Grams (Song's unbiased HSIC in all three terms); "
                "casts to float64; ~25 s a call at n = 10⁴",
                10_000,
            ),
        ),
        (
            "hsic",
            Peer(
                "ckatorch.hsic1",
                v,
                hsic1,
                1e-4,
                "same estimator: minibatch HSIC_1 (Nguyen 2021) of one batch = Song's unbiased HSIC; float32 "
                "Grams x xᵀ of the uncentred rows (tol relative); one O(n³) Gram product",
                2000,
            ),
        ),
    ]


# ------------------------------------------------------------------------------------------ pytorch-cka


def _pytorch_cka_module() -> types.ModuleType:
    """pytorch-cka's package. Its import name, ``cka``, is also bench/cka.py's (first on ``sys.path`` when a bench
    script runs), so it is loaded from its installed files under another name."""
    name = "_pytorch_cka_pkg"
    if name in sys.modules:
        return sys.modules[name]
    dist = importlib.metadata.distribution("pytorch-cka")
    init = next((f for f in dist.files or () if str(f).replace("\\", "/") == "cka/__init__.py"), None)
    if init is None:
        raise ImportError("pytorch-cka's cka/__init__.py not found")
    path = dist.locate_file(init)
    spec = importlib.util.spec_from_file_location(name, str(path), submodule_search_locations=[str(path.parent)])
    if spec is None or spec.loader is None:
        raise ImportError("cannot load pytorch-cka")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _pytorch_cka() -> list[tuple[str, Peer]]:
    cka = _pytorch_cka_module()
    v = _version("pytorch-cka")

    def cka_call(X: np.ndarray, Y: np.ndarray) -> float:
        x, y = _torch_pair(X, Y)
        return float(cka.cka_from_features(x, y)[0, 0])

    def hsic_call(X: np.ndarray, Y: np.ndarray) -> float:
        x, y = _torch_pair(X, Y)
        return float(cka.hsic((x @ x.T)[None], (y @ y.T)[None])[0][0, 0])

    return [
        (
            "cka?debiased=true",
            Peer(
                "pytorch-cka cka.cka_from_features",
                v,
                cka_call,
                1e-4,
                "same estimator: Song's unbiased HSIC from float32 Grams of the uncentred rows (O(n²) per term), "
                "clamped to [0, 1]",
                10_000,
            ),
        ),
        (
            "hsic",
            Peer(
                "pytorch-cka cka.hsic",
                v,
                hsic_call,
                1e-4,
                "same estimator: Song's unbiased HSIC from float32 Grams of the uncentred rows (tol relative); "
                "also returns HSIC(X,X), HSIC(Y,Y)",
                10_000,
            ),
        ),
    ]


# ------------------------------------------------------------------------------------------ torch-cka


def _torch_cka() -> list[tuple[str, Peer]]:
    import torch
    import torch_cka
    from torch.utils.data import DataLoader, TensorDataset

    v = _version("torch-cka")

    def call(X: np.ndarray, Y: np.ndarray) -> float:
        x, y = _torch_pair(X, Y)
        model = torch_cka.CKA(torch.nn.Identity(), torch.nn.Identity(), model1_name="X", model2_name="Y")
        loaders = [DataLoader(TensorDataset(t), batch_size=len(t)) for t in (x, y)]
        with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
            model.compare(*loaders)
        return float(model.export()["CKA"][0, 0])

    return [
        (
            "cka?debiased=true",
            Peer(
                "torch-cka CKA.compare",
                v,
                call,
                1e-4,
                "same estimator: Song's unbiased HSIC per batch (one batch of all n rows), float32 Grams of the "
                "uncentred rows, tr(K @ L) as a dense O(n³) product; through forward hooks on identity models",
                2000,
            ),
        ),
    ]


# ------------------------------------------------------------------------------------------ cka-pytorch


def _cka_pytorch() -> list[tuple[str, Peer]]:
    import torch
    from cka_pytorch import CKACalculator
    from torch.utils.data import DataLoader, TensorDataset

    v = _version("cka-pytorch")

    class Columns(torch.nn.Module):
        def __init__(self, start: int, stop: int) -> None:
            super().__init__()
            self.start, self.stop = start, stop

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z[:, self.start : self.stop]

    def call(X: np.ndarray, Y: np.ndarray) -> float:
        x, y = _torch_pair(X, Y)
        dx = x.shape[1]
        z = torch.cat([x, y], dim=1)  # one DataLoader feeds both models: each takes its own columns
        m1 = torch.nn.Sequential(Columns(0, dx))
        m2 = torch.nn.Sequential(Columns(dx, z.shape[1]))
        calc = CKACalculator(m1, m2, device=torch.device("cpu"), verbose=False)
        loader = DataLoader(TensorDataset(z, torch.zeros(len(z))), batch_size=len(z))
        return float(calc.calculate_cka_matrix(loader, num_epochs=1)[0, 0])

    return [
        (
            "cka?debiased=true",
            Peer(
                "cka-pytorch CKACalculator",
                v,
                call,
                1e-4,
                "same estimator: minibatch HSIC_1 (one batch of all n rows) = Song's unbiased HSIC, float32 Grams "
                "of the uncentred rows, one O(n³) Gram product per term; ε = 1e-4 under the square root of the "
                "denominator; through forward hooks on column-slicing models",
                2000,
            ),
        ),
    ]


# ------------------------------------------------------------------------------------------ deep-reps


def _deep_reps_modules() -> types.SimpleNamespace:
    """deep-reps' measure modules, loaded without running its broken ``deep_reps/__init__`` (see module doc)."""
    import importlib

    if "deep_reps" not in sys.modules or not hasattr(sys.modules["deep_reps"], "cca_measures"):
        spec = importlib.util.find_spec("deep_reps")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("deep_reps is not installed")
        pkg = types.ModuleType("deep_reps")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["deep_reps"] = pkg
        utils = importlib.import_module("deep_reps.utils")
        pkg.get_knn_indices_and_ranks = utils.get_knn_indices_and_ranks  # type: ignore[attr-defined]
        for name in ("cca_measures", "alignment_measures", "neighbors_measures"):
            setattr(pkg, name, importlib.import_module(f"deep_reps.{name}"))
    pkg = sys.modules["deep_reps"]
    return types.SimpleNamespace(
        cca=pkg.cca_measures,
        align=pkg.alignment_measures,
        knn=pkg.neighbors_measures,  # type: ignore[attr-defined]
    )


def _deep_reps() -> list[tuple[str, Peer]]:
    v = _version("deep-reps")
    dr = _deep_reps_modules()

    def procrustes(X: np.ndarray, Y: np.ndarray) -> float:
        x, y = _torch_pair(_unit_centred(X), _unit_centred(Y))
        d = dr.align.orthogonal_procrustes(x, y)
        return 1.0 - d * d / 2.0

    def shape(X: np.ndarray, Y: np.ndarray) -> float:
        return math.acos(min(1.0, max(-1.0, procrustes(X, Y))))

    def cca(X: np.ndarray, Y: np.ndarray) -> float:
        return float(dr.cca.compute_standard_cca(*_torch_pair(X, Y)))

    def svcca(X: np.ndarray, Y: np.ndarray) -> float:
        return float(dr.cca.compute_standard_svcca(*_torch_pair(X, Y), variance_retained=0.99))

    def knn(X: np.ndarray, Y: np.ndarray) -> float:
        return float(dr.knn.knn_jaccard_similarity(*_torch_pair(X, Y), 10))

    proc_note = (
        "same after preprocessing: orthogonal_procrustes(X̃, Ỹ) = sqrt(‖X̃‖² + ‖Ỹ‖² − 2‖X̃ᵀỸ‖_*) on the centred, "
        "unit-Frobenius inputs (done here; the peer does neither), float32 products and nuclear norm (|Δ| ~1.5e-4 at "
        "n = 10⁴, d = 384); value 1 − d²/2"
    )
    return [
        ("procrustes", Peer("deep-reps orthogonal_procrustes", v, procrustes, 1e-3, proc_note)),
        (
            "shape_distance?alpha=1.0",
            Peer("deep-reps orthogonal_procrustes", v, shape, 1e-3, proc_note + ", then arccos (angular)"),
        ),
        (
            "cca",
            Peer(
                "deep-reps compute_standard_cca",
                v,
                cca,
                1e-3,
                "same for equal full-rank widths: Σρ/d_X from float32 covariances, C^{-1/2} by eigh with "
                "eigenvalues clamped at 1e-10 (float32 accuracy)",
            ),
        ),
        (
            "svcca?keep=0.99",
            Peer(
                "deep-reps compute_standard_svcca",
                v,
                svcca,
                None,
                "differs: same keep rule (fewest top PCA directions reaching 99 % variance, float32 eigh) but Σρ is "
                "divided by the input width d, not min(k_x, k_y): value = alignkit·min(k_x, k_y)/d",
            ),
        ),
        (
            "mutual_knn?k=10",
            Peer(
                "deep-reps knn_jaccard_similarity",
                v,
                knn,
                None,
                "differs: Euclidean neighbours of the raw rows (alignkit: cosine) and the Jaccard index "
                "|A∩B|/|A∪B| per row (alignkit: |A∩B|/k; Jaccard = m/(2k − m)); dense cdist and two full argsorts "
                "of the n × n distances, a Python loop over rows",
                10_000,
            ),
        ),
    ]


_LIBRARIES: tuple[Callable[[], list[tuple[str, Peer]]], ...] = (
    _repsim,
    _ckatorch,
    _pytorch_cka,
    _torch_cka,
    _cka_pytorch,
    _deep_reps,
)


def peers() -> dict[str, list[Peer]]:
    """Measure id → the installed peers of that measure (ids from :data:`IDS`; absent when no peer is installed)."""
    out: dict[str, list[Peer]] = {}
    for lib in _LIBRARIES:
        try:
            entries = lib()
        except (ImportError, importlib.metadata.PackageNotFoundError):  # not installed, or an import missing
            continue
        for k, p in entries:
            out.setdefault(k, []).append(p)
    return out
