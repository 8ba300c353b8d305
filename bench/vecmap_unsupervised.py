"""Unsupervised vecmap (ACL 2018) on 20k × 20k points, d = 384: blocked CSLS dictionary step vs the dense one.

Data: a planted linear map between two structured sets. X is a view of a latent Gaussian mixture
(:class:`_common.LatentMixture`, float32); Y = X·R + noise for a random rotation R, then 20 % of Y's rows
are replaced by rows of other latent points and Y's rows are shuffled (the correspondence is thrown away).

Rows (each in its own subprocess, so that peak memory is the call's own; see ``_common``):

- ``fit``: ``VecMapUnsupervised(n_restarts=--restarts)`` (1 by default) fitted on X, Y (float32 in, the
  aligner's float64 copies and every temporary counted): seconds of the initialisation, per self-learning
  iteration (mean, from the kept restart's record), per restart, in total, and the peak extra RSS.
  ``--max-iter`` caps the iterations (0: the full schedule, p = 0.1 doubled after 50 iterations without gain
  until p = 1 gains nothing; several hundred iterations). R@1 of the fitted map on the true pairs is recorded
  as a sanity check.
- ``step`` / ``dense_step``: one dictionary-induction step (CSLS k = 10, forward ∪ backward, keep probability
  ``--keep-prob``) on the same mapped sets: alignkit's blocked two-pass
  :func:`alignkit.align.unsupervised.csls_induction` (never more than one 16M-entry block of the n × n
  similarities) vs the plain dense implementation written here (vecmap's ``map_embeddings.py`` loop without
  its batching: the full n × n float32 similarity matrix, top-k radii along both axes, a Bernoulli keep mask,
  argmax both ways). At keep probability 1 both are deterministic and their dictionaries must be equal
  (asserted in a separate small check on the same kind of data).

Usage: ``python bench/vecmap_unsupervised.py [--n 20000] [--d 384] [--threads 2] [--max-iter 0]``; ``--quick``
runs n = 1,500, d = 48 with 3 iterations (seconds). Writes ``bench/results/vecmap_unsupervised.jsonl``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    LatentMixture,
    Results,
    base_parser,
    child_main,
    markdown_table,
    measure,
    ratio,
    run_isolated,
    set_threads,
)

SCRIPT = Path(__file__).resolve()


def planted(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (n, d), Y (n, d) float32 and the true pairs (row of X, row of Y) of the 80 % of rows that have one."""
    mix = LatentMixture(latent_dim=32, clusters=200, within=0.5, seed=seed)
    (X,) = mix.views(n, [d], [0.1])
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    R = (q * np.sign(np.diag(r))).astype(np.float32)
    Y = X @ R + np.float32(0.05) * rng.standard_normal((n, d), dtype=np.float32)
    other = rng.choice(n, n // 5, replace=False)
    (Z,) = mix.views(mix.latent(2 * n)[n : n + n // 5], [d], [0.0])  # other latent points, same projection
    Y[other] = (Z + np.float32(0.1) * rng.standard_normal(Z.shape, dtype=np.float32)) @ R
    perm = rng.permutation(n)
    where = np.argsort(perm)
    kept = np.setdiff1d(np.arange(n), other)
    return X, Y[perm], np.stack([kept, where[kept]], axis=1)


def _mapped(n: int, d: int, seed: int) -> tuple[Any, Any]:
    """Normalised X mapped by Procrustes on 1,000 true pairs, and normalised Y: the sets a mid-run dictionary
    step sees (float32 torch tensors)."""
    import torch

    from alignkit.align.unsupervised import normalize_rows, procrustes_map

    X, Y, pairs = planted(n, d, seed)
    steps = ("unit", "center", "unit")
    xn = normalize_rows(torch.as_tensor(X, dtype=torch.float64), steps)[0]
    zn = normalize_rows(torch.as_tensor(Y, dtype=torch.float64), steps)[0]
    W = procrustes_map(xn[pairs[:1000, 0]], zn[pairs[:1000, 1]])
    return (xn @ W).float(), zn.float()


def dense_step(xw: Any, zw: Any, *, k: int, keep_prob: float, generator: Any) -> tuple[Any, Any]:
    """vecmap's dictionary step done densely: the whole n_x × n_y similarity matrix at once."""
    import torch

    S = xw @ zw.T
    r_x = S.topk(k, dim=1).values.mean(dim=1)
    r_y = S.topk(k, dim=0).values.mean(dim=0)
    C = S - r_x[:, None] / 2 - r_y[None, :] / 2
    if keep_prob < 1.0:
        fwd = torch.where(torch.rand(C.shape, generator=generator) < keep_prob, C, -torch.inf).argmax(dim=1)
        bwd = torch.where(torch.rand(C.shape, generator=generator) < keep_prob, C, -torch.inf).argmax(dim=0)
    else:
        fwd, bwd = C.argmax(dim=1), C.argmax(dim=0)
    return fwd, bwd


# ----------------------------------------------------------------------------------------- children


def run_fit(spec: dict[str, Any]) -> dict[str, Any]:
    import warnings

    import torch

    from alignkit.align.vecmap_unsupervised import VecMapUnsupervised

    X, Y, pairs = planted(spec["n"], spec["d"], spec["seed"])
    kw = {"max_iter": spec["max_iter"]} if spec["max_iter"] else {}
    est = VecMapUnsupervised(n_restarts=spec.get("restarts", 1), seed=spec["seed"], **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = measure(lambda: est.fit(X, Y), repeats=1, budget_s=0.0)
    rec = est.restarts_[est.best_restart_]
    r1 = est.score(X[pairs[:2000, 0]], Y[pairs[:2000, 1]])
    return {
        "restarts": len(est.restarts_),
        "seconds": m["seconds"],
        "seconds_per_restart": [r["seconds"] for r in est.restarts_],
        "seconds_init": rec["seconds_init"],
        "seconds_per_iteration": rec["seconds_per_iteration"],
        "iterations": rec["iterations"],
        "keep_prob_end": rec["keep_prob"],
        "converged": rec["converged"],
        "agreement": rec.get("agreement"),
        "peak_extra_mb": m["peak_extra_mb"],
        "peak_valid": m["peak_valid"],
        "r_at_1_true_pairs": r1,
        "torch_threads": torch.get_num_threads(),
    }


def run_step(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from alignkit.align.unsupervised import csls_induction

    xw, zw = _mapped(spec["n"], spec["d"], spec["seed"])
    g = torch.Generator().manual_seed(spec["seed"])
    if spec["impl"] == "step":
        call = lambda: csls_induction(xw, zw, k=10, keep_prob=spec["keep_prob"], generator=g)  # noqa: E731
    else:
        call = lambda: dense_step(xw, zw, k=10, keep_prob=spec["keep_prob"], generator=g)  # noqa: E731
    m = measure(call, repeats=spec["repeats"], budget_s=0.0)
    return {
        "seconds": m["seconds"],
        "times": m["times"],
        "peak_extra_mb": m["peak_extra_mb"],
        "peak_valid": m["peak_valid"],
    }


def agreement(seed: int) -> int:
    """Rows whose dictionary entry differs between the blocked and the dense step at keep probability 1
    (n = 3,000, d = 64, 7 blocks of rows)."""
    import torch

    from alignkit.align.unsupervised import csls_induction

    xw, zw = _mapped(3000, 64, seed)
    ours = csls_induction(xw, zw, k=10, block_rows=450)
    fwd, bwd = dense_step(xw, zw, k=10, keep_prob=1.0, generator=torch.Generator())
    return int((ours.forward != fwd).sum() + (ours.backward != bwd).sum())


RUNNERS = {"fit": run_fit, "step": run_step, "dense_step": run_step}


def main() -> None:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--max-iter", type=int, default=0, help="cap on self-learning iterations (0: full schedule)")
    ap.add_argument("--keep-prob", type=float, default=0.1, help="keep probability of the timed single steps")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense step (it needs ~3 n² · 4 bytes)")
    ap.add_argument("--restarts", type=int, default=1, help="restarts of the timed fit (the default aligner: 3)")
    ap.add_argument("--fit-only", action="store_true", help="time the fit alone (no single steps)")
    args = ap.parse_args()
    if args.one:
        child_main(args.one, args.threads, RUNNERS)
        return
    if args.quick:
        args.n, args.d, args.max_iter, args.repeats = 1500, 48, 3, 1
    out = Results("vecmap_unsupervised", args, {"data": planted.__doc__})
    base = {"n": args.n, "d": args.d, "seed": args.seed}
    t0 = time.perf_counter()
    rows = []
    for impl in () if args.fit_only else ("step", "dense_step"):
        if impl == "dense_step" and args.no_dense:
            continue
        spec = {**base, "impl": impl, "keep_prob": args.keep_prob, "repeats": args.repeats}
        rows.append(out.add(run_isolated(SCRIPT, spec, threads=args.threads, timeout=args.timeout)))
        print(f"[vecmap_unsupervised] {rows[-1]}", flush=True)
    fit = out.add(
        run_isolated(
            SCRIPT,
            {**base, "impl": "fit", "max_iter": args.max_iter, "restarts": args.restarts},
            threads=args.threads,
            timeout=args.timeout,
        )
    )
    print(f"[vecmap_unsupervised] {fit}", flush=True)
    set_threads(args.threads)  # the parent imports torch only now, after every timed child
    mismatches = agreement(args.seed)
    out.add({"check": "blocked_vs_dense_dictionary_mismatches_at_p1", "value": mismatches})
    assert mismatches == 0, f"blocked and dense dictionary steps differ in {mismatches} entries"
    by = {r["impl"]: r for r in rows if r.get("status") == "ok"}
    step, dense = by.get("step"), by.get("dense_step")
    print(
        markdown_table(
            rows,
            [
                ("impl", lambda r: r["impl"]),
                ("status", lambda r: r.get("status")),
                ("seconds", lambda r: f"{r['seconds']:.2f}" if r.get("seconds") is not None else "–"),
                ("peak extra MB", lambda r: f"{r['peak_extra_mb']:.0f}" if r.get("peak_extra_mb") is not None else "–"),
            ],
        )
    )
    if step and dense:
        print(f"blocked / dense step time ratio: {ratio(step['seconds'], dense['seconds']):.2f}")
    if fit.get("status") == "ok":
        print(
            f"fit: init {fit['seconds_init']:.1f} s, {fit['iterations']} iterations at "
            f"{fit['seconds_per_iteration']:.2f} s, "
            f"total {fit['seconds']:.0f} s, peak extra {fit['peak_extra_mb']:.0f} MB, converged={fit['converged']}, "
            f"R@1 on true pairs {fit['r_at_1_true_pairs']:.3f}, restarts {fit['restarts']} "
            f"(seconds {fit['seconds_per_restart']}, agreement {fit['agreement']})"
        )
    print(
        f"n = {args.n}, d = {args.d}, threads = {args.threads}, wall {time.perf_counter() - t0:.0f} s, "
        f"load average at the end: {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
