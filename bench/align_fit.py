"""Closed-form aligner fits on large paired data (issue 4): alignkit vs the straightforward formula.

Each aligner is fitted on n pairs of d-dimensional embeddings (two noisy views of a clustered latent,
float32), timed best-of-r in this process, next to a straightforward numpy float64 implementation of
the same closed form written here:

- Procrustes: ``U, _, Vt = svd(XᵀY); R = U Vt``
- Ridge (fixed λ): ``W = solve(X_cᵀX_c + λI, X_cᵀY_c)``; alignkit's default picks λ by GCV, timed too
- CCA: ``C_xx^{-1/2} C_xy C_yy^{-1/2}`` through eigendecompositions, then its SVD
- VecMap: unit/center/unit rows, whitening ``(XᵀX)^{-1/2}`` by eigh, SVD of the whitened cross-covariance,
  re-weighting by ``S^0.5`` and de-whitening (Artetxe et al., AAAI 2018)

Peak memory is the extra resident memory of each call over the process's RSS right before it
(:func:`_common.measure`); the inputs are not counted. Both columns run in this process, one after the other.

Usage: ``python bench/align_fit.py [--n 100000] [--d 768] [--repeats 2]``. Writes
``bench/results/align_fit.jsonl`` and prints a table.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LatentMixture, Results, base_parser, markdown_table, measure, ratio, set_threads
from alignkit.align import CCAAligner, Procrustes, Ridge, VecMap


def dense_procrustes(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(X.T.astype(np.float64) @ Y.astype(np.float64), full_matrices=False)
    return U @ Vt


def dense_ridge(X: np.ndarray, Y: np.ndarray, lam: float) -> np.ndarray:
    Xc = X.astype(np.float64) - X.mean(0)
    Yc = Y.astype(np.float64) - Y.mean(0)
    return np.linalg.solve(Xc.T @ Xc + lam * np.eye(X.shape[1]), Xc.T @ Yc)


def _inv_sqrt(C: np.ndarray, reg: float) -> np.ndarray:
    w, V = np.linalg.eigh(C + reg * np.eye(C.shape[0]))
    return (V / np.sqrt(w)) @ V.T


def dense_cca(X: np.ndarray, Y: np.ndarray, reg: float) -> np.ndarray:
    n = X.shape[0]
    Xc = X.astype(np.float64) - X.mean(0)
    Yc = Y.astype(np.float64) - Y.mean(0)
    M = _inv_sqrt(Xc.T @ Xc / n, reg) @ (Xc.T @ Yc / n) @ _inv_sqrt(Yc.T @ Yc / n, reg)
    return np.linalg.svd(M, compute_uv=False)


def dense_vecmap(X: np.ndarray, Y: np.ndarray, reweight: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    def norm(M: np.ndarray) -> np.ndarray:
        M = M.astype(np.float64)
        M /= np.linalg.norm(M, axis=1, keepdims=True)
        M -= M.mean(0)
        M /= np.linalg.norm(M, axis=1, keepdims=True)
        return M

    def sqrt_gram(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, V = np.linalg.eigh(M.T @ M)
        w = np.sqrt(np.clip(w, 1e-300, None))
        return (V / w) @ V.T, (V * w) @ V.T

    xn, yn = norm(X), norm(Y)
    wx1, dx = sqrt_gram(xn)
    wy1, dy = sqrt_gram(yn)
    U, s, Vt = np.linalg.svd(wx1 @ (xn.T @ yn) @ wy1)
    V = Vt.T
    w = s**reweight
    return (wx1 @ U * w) @ (U.T @ dx @ U), (wy1 @ V * w) @ (V.T @ dy @ V)


def main() -> None:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=768)
    args = ap.parse_args()
    if args.quick:
        args.n, args.d = 5_000, 128
    set_threads(args.threads)
    torch.set_num_threads(args.threads)
    mix = LatentMixture(seed=args.seed)
    X, Y = mix.views(args.n, [args.d, args.d], [0.1, 0.5])
    out = Results("align_fit", args, {"data": mix.describe() + "; two views, noise (0.1, 0.5)"})
    rows = []
    lam = 1.0
    cases = [
        ("Procrustes", lambda: Procrustes().fit(X, Y), lambda: dense_procrustes(X, Y)),
        ("Ridge(alpha=1)", lambda: Ridge(alpha=lam).fit(X, Y), lambda: dense_ridge(X, Y, lam)),
        ("Ridge (GCV)", lambda: Ridge().fit(X, Y), None),
        ("CCA(reg=1e-3)", lambda: CCAAligner(reg=1e-3).fit(X, Y), lambda: dense_cca(X, Y, 1e-3)),
        ("VecMap", lambda: VecMap().fit(X, Y), lambda: dense_vecmap(X, Y)),
    ]
    for name, ours, dense in cases:
        m_ours = measure(ours, repeats=args.repeats, budget_s=0.0)
        m_dense = measure(dense, repeats=args.repeats, budget_s=0.0) if dense is not None else None
        path = getattr(m_ours["value"], "_path", "gram")
        row = {
            "aligner": name,
            "n": args.n,
            "d": args.d,
            "path": path,
            "ours_s": m_ours["seconds"],
            "dense_s": None if m_dense is None else m_dense["seconds"],
            "ours_peak_mb": m_ours["peak_extra_mb"],
            "dense_peak_mb": None if m_dense is None else m_dense["peak_extra_mb"],
            "load_avg_1m": os.getloadavg()[0],
        }
        row["ratio"] = ratio(row["ours_s"], row["dense_s"])
        rows.append(row)
        out.add(row)
        print(f"[align_fit] {row}", flush=True)
    # agreement of the learned maps with the dense formulas
    R = Procrustes().fit(X, Y)
    agree = float(
        np.abs(np.asarray(R.transform_x(X[:100])) - X[:100].astype(np.float64) @ dense_procrustes(X, Y)).max()
    )
    out.add({"check": "procrustes_max_abs_diff_on_100_rows", "value": agree})
    print(
        markdown_table(
            rows,
            [
                ("aligner", lambda r: r["aligner"]),
                ("path", lambda r: r["path"]),
                ("alignkit s", lambda r: f"{r['ours_s']:.2f}"),
                ("plain numpy s", lambda r: "–" if r["dense_s"] is None else f"{r['dense_s']:.2f}"),
                ("ratio", lambda r: "–" if r["ratio"] is None else f"{r['ratio']:.2f}"),
                ("alignkit peak MB", lambda r: f"{r['ours_peak_mb']:.0f}"),
                ("numpy peak MB", lambda r: "–" if r["dense_peak_mb"] is None else f"{r['dense_peak_mb']:.0f}"),
            ],
        )
    )
    print(f"Procrustes vs dense formula, max |Δ| on 100 mapped rows: {agree:.1e}")
    print(f"n = {args.n}, d = {args.d}, threads = {args.threads}, load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
