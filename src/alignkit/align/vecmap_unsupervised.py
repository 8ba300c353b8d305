"""vecmap's fully unsupervised mapping (Artetxe, Labaka & Agirre, ACL 2018) as an unpaired aligner.

"A robust self-learning method for fully unsupervised cross-lingual mappings of word embeddings", ACL 2018;
code artetxem/vecmap ``map_embeddings.py --unsupervised`` (@b560c94), docs/methods.md §4.2. Written from the
paper and a reading of that script; the steps and defaults are the script's unless said otherwise.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch

from alignkit.align.base import register_aligner
from alignkit.align.unsupervised import (
    MIN_AGREEMENT,
    SHARED_CONSTRAINTS,
    Restart,
    UnsupervisedAligner,
    chance_scores,
    check_normalize_steps,
    csls_induction,
    csls_scores,
    normalize_rows,
    procrustes_map,
    split_holdout,
    verdict_info,
)

INIT_ROWS: tuple[str, ...] = ("random", "first")
SEED_INITS: tuple[str, ...] = ("best", "pairs", "unsupervised")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _topk_mean_rows(m: torch.Tensor, k: int) -> torch.Tensor:
    return m.topk(min(k, m.shape[1]), dim=1).values.mean(dim=1)


def _sqrt_pair(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G^{-1/2}, G^{1/2})`` of a symmetric PSD matrix over its eigenvalues ``λ > d·eps·λ₁`` (a pseudo-inverse
    on the span when the dictionary has fewer distinct rows than dimensions)."""
    w, V = torch.linalg.eigh((G + G.T) / 2)
    keep = w > G.shape[0] * torch.finfo(torch.float64).eps * float(w.max().clamp_min(0.0))
    V, s = V[:, keep], w[keep].sqrt()
    return (V / s) @ V.T, (V * s) @ V.T


def similarity_init(
    xs: torch.Tensor, zs: torch.Tensor, steps: tuple[str, ...], csls_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """vecmap's unsupervised initial dictionary between two samples of the same size m (rows already normalised).

    ``M = sqrt(XXᵀ) = U S Uᵀ`` (X = USVᵀ: the similarity matrix of the whitened X with X), each row sorted, the
    rows normalised with ``steps``; likewise for Z. Rows of X and Z describing the same item have (ideally)
    the same similarity distribution, so ``sim = M_X M_Zᵀ``, corrected with CSLS (minus half of each side's
    mean of its ``csls_k`` best), is argmax-ed both ways and the two directions are joined. Returns
    (rows of xs, rows of zs), 2m pairs.
    """
    sims = []
    for t in (xs, zs):
        U, S, _ = torch.linalg.svd(t, full_matrices=False)
        m = (U * S) @ U.T
        m = m.sort(dim=1).values
        sims.append(normalize_rows(m, steps)[0])
    sim = sims[0] @ sims[1].T
    sim -= _topk_mean_rows(sim, csls_k)[:, None] / 2 + _topk_mean_rows(sim.T, csls_k)[None, :] / 2
    m = sim.shape[0]
    ar = torch.arange(m, device=sim.device)
    return torch.cat([ar, sim.argmax(dim=0)]), torch.cat([sim.argmax(dim=1), ar])


@register_aligner(
    "vecmap_unsupervised",
    paired=False,
    constraints={
        **SHARED_CONSTRAINTS,
        "normalize": {"validator": check_normalize_steps},
        "n_init": {"low": 2},
        "init_rows": {"choices": INIT_ROWS},
        "seed_init": {"choices": SEED_INITS},
        "max_rows": {"low": 2},
        "csls_k": {"low": 1},
        "keep_prob": {"low": 0.0, "low_open": True, "high": 1.0},
        "keep_multiplier": {"low": 1.0, "low_open": True},
        "patience": {"low": 1},
        "threshold": {"low": 0.0},
        "max_iter": {"low": 1},
        "reweight": {"low": 0.0},
    },
)
class VecMapUnsupervised(UnsupervisedAligner):
    """vecmap, fully unsupervised (Artetxe, Labaka & Agirre, ACL 2018): fit(X, Y) on unpaired sets.

        Rows of X and Y carry no correspondence and their counts may differ. Steps (artetxem/vecmap
        ``map_embeddings.py --unsupervised``):

        0. Normalise each side with ``normalize`` (default unit, center, unit; means over all rows).
        1. Initial dictionary (:func:`similarity_init`) on ``n_init`` rows of each side (4,000 in vecmap, which
           takes the most frequent words; ``init_rows="first"`` does the same, ``"random"``, the default, draws
           a seeded sample per restart because generic sets are not frequency-ordered and restarts then start
           from different samples).
        2. Self-learning on the first ``max_rows`` rows of each side (vecmap's ``--vocabulary_cutoff`` 20,000):
           orthogonal Procrustes ``W = UVᵀ`` on the dictionary, then a new dictionary by CSLS retrieval
           (k = ``csls_k``) forward ∪ backward, each candidate kept with probability p
           (:func:`alignkit.align.unsupervised.csls_induction`, blocked). p starts at ``keep_prob`` (0.1) and is
           multiplied by ``keep_multiplier`` (2) after ``patience`` (50) iterations without a gain ≥ ``threshold``
           (1e-6) of the objective, the mean best similarity of both directions; the loop ends when p = 1 brings
           no gain (or at ``max_iter``, a safety cap vecmap does not have).
        3. The full mapping on the final dictionary: whiten each side (``(X_dᵀX_d)^{-1/2}``), orthogonal map from
           ``svd(X_wᵀZ_w) = U S Vᵀ``, re-weight both by ``S^reweight`` (0.5), de-whiten each side with its own
           ``(X_dᵀX_d)^{1/2}`` (``whiten``, ``dewhiten``; as :class:`alignkit.align.VecMap`).

        Seed pairs (semi-supervised) join every dictionary (vecmap replaces its dictionary each iteration; the seed
        pairs are known to be right) and may replace the initial dictionary of step 1: ``seed_init="pairs"`` is
        vecmap's ``--semi_supervised`` (the seed pairs alone start the self-learning), ``"unsupervised"`` keeps
        step 1 (plus the seed pairs), and ``"best"`` (the default) runs both and keeps the one with the better
        held-out criterion (converged first), recorded as ``init`` with both in ``inits`` (their ``converged`` flags
    are the single-restart checks, before the agreement between restarts). Both are needed: on Bible
        verses 10 seed pairs alone start self-learning nowhere (R@1 0.02) where step 1 reaches 0.95, while on
        structureless data step 1 fails and 50 seed pairs succeed. With seed pairs a restart therefore costs two
        self-learning runs.

        Criterion and verdict: a seeded ``holdout`` share (10 %) of the rows of X is left out of the fit; the
        criterion is :func:`~alignkit.align.unsupervised.mean_csls_criterion` of (up to ``n_queries`` of) these
        held-out rows in the self-learning space (normalised X mapped by the final orthogonal W against normalised
        Y), so a map that merely fits its own rows (as self-learning does even on two unrelated sets) scores chance;
        a restart has converged by :func:`~alignkit.align.unsupervised.verdict_info` (gain over the chance level of
        random orthogonal maps at least ``min_gain``, mean CSLS lifted over its chance level). Each restart's record
        holds the iterations, the final keep probability, the objective per iteration, the seconds of the
        initialisation and per iteration, and the verdict's reasons.

        d_x ≠ d_y: W is the semi-orthogonal thin-SVD factor and the full mapping keeps min(d_x, d_y) shared
        coordinates. Compute: the similarity passes are float32 (vecmap's default precision), O(n_x·n_y·d) per
        iteration in two blocked passes, memory O(block + n·d); everything else is float64.

        Learned: ``map_x_`` (d_x × k), ``map_y_`` (d_y × k), ``centers_x_``, ``centers_y_`` (one row per "center"
        step), ``singular_values_`` (k). Shared space only (no ``translate``): both sides are mapped.
    """

    _arrays: ClassVar[tuple[str, ...]] = ("map_x_", "map_y_", "centers_x_", "centers_y_", "singular_values_")
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {
        "map_x_": ("d_x", "k"), "map_y_": ("d_y", "k"), "centers_x_": ("c", "d_x"), "centers_y_": ("c", "d_y"),
        "singular_values_": ("k",), "criterion_": (),
    }  # fmt: skip

    def __init__(
        self,
        n_restarts: int = 3,
        seed: int = 0,
        normalize: tuple[str, ...] = ("unit", "center", "unit"),
        n_init: int = 4000,
        init_rows: str = "random",
        seed_init: str = "best",
        max_rows: int = 20000,
        csls_k: int = 10,
        keep_prob: float = 0.1,
        keep_multiplier: float = 2.0,
        patience: int = 50,
        threshold: float = 1e-6,
        max_iter: int = 2000,
        whiten: bool = True,
        reweight: float = 0.5,
        dewhiten: bool = True,
        n_queries: int = 10_000,
        min_gain: float = 0.2,
        holdout: float = 0.1,
        min_agreement: float = MIN_AGREEMENT,
    ) -> None:
        self.n_restarts = n_restarts
        self.seed = seed
        self.normalize = normalize
        self.n_init = n_init
        self.init_rows = init_rows
        self.seed_init = seed_init
        self.max_rows = max_rows
        self.csls_k = csls_k
        self.keep_prob = keep_prob
        self.keep_multiplier = keep_multiplier
        self.patience = patience
        self.threshold = threshold
        self.max_iter = max_iter
        self.whiten = whiten
        self.reweight = reweight
        self.dewhiten = dewhiten
        self.n_queries = n_queries
        self.min_gain = min_gain
        self.holdout = holdout
        self.min_agreement = min_agreement

    def _validate_params(self) -> dict[str, Any]:
        hp = super()._validate_params()
        if hp["dewhiten"] and not hp["whiten"]:
            raise ValueError("dewhiten=True requires whiten=True (de-whitening undoes a whitening)")
        return hp

    # ------------------------------------------------------------------------------------------ fit

    def _fit_once(self, x: torch.Tensor, y: torch.Tensor, *, seed: int, pairs: np.ndarray) -> Restart:
        hp = self._hp
        steps = hp["normalize"]
        t0 = time.perf_counter()
        xn, cx = normalize_rows(x, steps)
        zn, cz = normalize_rows(y, steps)
        split = split_holdout(x.shape[0], hp["holdout"], seed, pairs, x.device)
        xt = xn[split.train]
        n_t = min(zn.shape[0], hp["max_rows"])
        nq, k = hp["n_queries"], hp["csls_k"]
        chance = chance_scores(xn, zn[:n_t], seed=seed, n_queries=nq, k=k, queries=split.held)
        inits = (
            ["unsupervised"]
            if not pairs.shape[0]
            else {"best": ["pairs", "unsupervised"]}.get(hp["seed_init"], [hp["seed_init"]])
        )
        runs = []
        for init in inits:
            run = self._self_learn(xt, zn, split.seeds_x, split.seeds_y, init, seed)
            scores = csls_scores(xn @ run["W"], zn[:n_t], n_queries=nq, k=k, queries=split.held)
            converged, verdict = verdict_info(scores, chance, hp["min_gain"], [])
            runs.append({**run, "scores": scores, "converged": converged, "verdict": verdict, "init": init})
        best = max(runs, key=lambda r: (r["converged"], r["scores"][0]))
        map_x, map_y, s = self._full_mapping(xt[best["src"]], zn[best["trg"]])
        state = {
            "map_x_": _np(map_x), "map_y_": _np(map_y), "centers_x_": _np(cx), "centers_y_": _np(cz),
            "singular_values_": _np(s),
        }  # fmt: skip
        history, iter_s = best["history"], best["iter_seconds"]
        info = {
            "init": best["init"],
            "iterations": len(history),
            "keep_prob": best["keep"],
            "objective": history[-1] if history else None,
            "objective_history": history,
            "dictionary_size": int(best["src"].numel()),
            "n_held_out": int(split.held.numel()),
            "seconds_init": round(best["seconds_init"], 4),
            "seconds_per_iteration": round(float(np.mean(iter_s)), 4) if iter_s else None,
            "seconds": round(time.perf_counter() - t0, 3),
            "notes": best["notes"],
            **best["verdict"],
        }
        if len(runs) > 1:
            info["inits"] = {
                r["init"]: {"criterion": r["scores"][0], "converged": r["converged"], "iterations": len(r["history"])}
                for r in runs
            }
        return Restart(state, float(best["scores"][0]), bool(best["converged"]), info)

    def _self_learn(
        self, xt: torch.Tensor, zn: torch.Tensor, seeds_x: torch.Tensor, seeds_y: torch.Tensor, init: str, seed: int
    ) -> dict[str, Any]:
        """Steps 1-2 from one initial dictionary ("unsupervised" or the seed "pairs"): the final orthogonal W,
        dictionary, objective history and timings."""
        hp = self._hp
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(int(seed) + (104_729 if init == "pairs" else 0))
        n_s, n_t = min(xt.shape[0], hp["max_rows"]), min(zn.shape[0], hp["max_rows"])
        if init == "pairs":
            src, trg = seeds_x, seeds_y
        else:
            src, trg = self._initial_dictionary(xt[:n_s], zn[:n_t], g)
            src, trg = torch.cat([src, seeds_x]), torch.cat([trg, seeds_y])
        t_init = time.perf_counter() - t0
        keep, best, it, last_gain, end = float(hp["keep_prob"]), -np.inf, 1, 0, False
        history: list[float] = []
        iter_seconds: list[float] = []
        notes: list[str] = []
        while True:
            t_it = time.perf_counter()
            if it - last_gain > hp["patience"]:
                if keep >= 1.0:
                    end = True
                keep = min(1.0, hp["keep_multiplier"] * keep)
                last_gain = it
            W = procrustes_map(xt[src], zn[trg])
            if end:
                break
            step = csls_induction(xt[:n_s] @ W, zn[:n_t], k=hp["csls_k"], keep_prob=keep, generator=g)
            src, trg = step.union()
            src, trg = torch.cat([src, seeds_x]), torch.cat([trg, seeds_y])
            objective = step.objective
            history.append(round(objective, 7))
            if objective - best >= hp["threshold"]:
                last_gain, best = it, objective
            iter_seconds.append(time.perf_counter() - t_it)
            if it >= hp["max_iter"]:
                notes.append(f"stopped at max_iter={hp['max_iter']} with keep_prob={keep:g}")
                W = procrustes_map(xt[src], zn[trg])
                break
            it += 1
        return {
            "W": W, "src": src, "trg": trg, "history": history, "iter_seconds": iter_seconds, "keep": keep,
            "seconds_init": t_init, "notes": notes,
        }  # fmt: skip

    def _initial_dictionary(
        self, xn: torch.Tensor, zn: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hp = self._hp
        m = min(xn.shape[0], zn.shape[0], hp["n_init"])
        if hp["init_rows"] == "first":
            rows_x = torch.arange(m, device=xn.device)
            rows_y = torch.arange(m, device=zn.device)
        else:
            rows_x = torch.randperm(xn.shape[0], generator=g)[:m].to(xn.device)
            rows_y = torch.randperm(zn.shape[0], generator=g)[:m].to(zn.device)
        i, j = similarity_init(xn[rows_x], zn[rows_y], hp["normalize"], hp["csls_k"])
        return rows_x[i], rows_y[j]

    def _full_mapping(self, xd: torch.Tensor, zd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whitening, orthogonal mapping, re-weighting and de-whitening on the dictionary rows (vecmap's steps 1-4)."""
        hp = self._hp
        if hp["whiten"]:
            wx1, dx = _sqrt_pair(xd.T @ xd)
            wz1, dz = _sqrt_pair(zd.T @ zd)
        else:
            wx1 = dx = torch.eye(xd.shape[1], dtype=xd.dtype, device=xd.device)
            wz1 = dz = torch.eye(zd.shape[1], dtype=zd.dtype, device=zd.device)
        U, s, Vh = torch.linalg.svd(wx1 @ (xd.T @ zd) @ wz1, full_matrices=False)
        V = Vh.T
        w = s.clamp_min(0.0) ** hp["reweight"] if hp["reweight"] != 0.0 else torch.ones_like(s)
        map_x, map_y = wx1 @ U * w, wz1 @ V * w
        if hp["dewhiten"]:
            map_x = map_x @ (U.T @ dx @ U)
            map_y = map_y @ (V.T @ dz @ V)
        return map_x, map_y, s

    # ------------------------------------------------------------------------------------ transform

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        t, _ = normalize_rows(x, self._hp["normalize"], self._state("centers_x_", x.device))
        return t @ self._state("map_x_", x.device)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        t, _ = normalize_rows(y, self._hp["normalize"], self._state("centers_y_", y.device))
        return t @ self._state("map_y_", y.device)
