"""Geometry diagnostics (uniformity, anisotropy, modality gap): alignkit vs the dense formulas and the matmul roofline.

ours      ``alignkit.diagnostics.{geometry,pair}.<name>`` (the public function): uniformity = blocked
          upper-triangle Gram + running float64 logsumexp (memory O(block·n)); anisotropy and modality gap =
          closed forms from float64 column sums (O(n·d)).
dense     the straightforward numpy formulas, in the input's dtype (float32):
          uniformity  ``log mean exp(−t·(2 − 2G)[triu_indices(n, 1)])`` with the full n×n Gram G = ÛÛᵀ;
          anisotropy  ``(ÛÛᵀ)[~eye(n)].mean()``;  modality gap ``‖mean Û − mean V̂‖`` (already O(n·d)).
pdist     uniformity only: Wang & Isola's reference one-liner ``torch.pdist(Û).pow(2).mul(-t).exp().mean().log()``.
roofline  the dominant product alone, numpy, same dtype: uniformity = the full ``X @ X.T`` in row blocks of the size
          ours uses (ours computes only the upper triangle, so it can beat this); anisotropy / modality gap = the
          column sums ``1ᵀX`` (and ``1ᵀY``): one pass over the input.
Each (diagnostic, implementation, n, d) runs in a fresh subprocess; peak MB = peak RSS − RSS right before the
call (inputs excluded). Full run: ``python bench/diagnostics_geometry.py`` (n up to 100k at d = 768; the dense
and pdist baselines only up to --dense-max, 20k, and only where memory allows).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

NOISE = (0.5, 1.0)
T = 2.0
DIAGNOSTICS = ("uniformity", "anisotropy", "modality_gap")
IMPLS = {
    "uniformity": ("ours", "dense", "pdist", "roofline"),
    "anisotropy": ("ours", "dense", "roofline"),
    "modality_gap": ("ours", "dense", "roofline"),
}
# Peak bytes per n² of the dense baselines: uniformity: G 4 + (2 − 2G) 4 + triu indices 8 + selected values 2·2;
# anisotropy: G 4 + eye mask 1 + selected values 4; pdist: n(n−1)/2 float32 distances and two temporaries.
DENSE_BYTES_PER_N2 = {"uniformity": 20, "anisotropy": 9, "pdist": 6}
AGREE_TOL = 1e-4  # float32 products: |ours − dense| allowed


def _inputs(spec: dict) -> tuple[Any, Any]:
    import torch

    views = 2 if spec["diagnostic"] == "modality_gap" else 1
    out = C.LatentMixture(seed=spec["seed"]).views(spec["n"], [spec["d"]] * views, NOISE[:views])
    X = torch.from_numpy(out[0])
    return X, (torch.from_numpy(out[1]) if views == 2 else None)


def _unit_np(a: Any) -> Any:
    import numpy as np

    return a / np.linalg.norm(a, axis=1, keepdims=True)


def dense(diagnostic: str, X: Any, Y: Any) -> float:
    import numpy as np

    U = _unit_np(X.numpy())
    if diagnostic == "modality_gap":
        return float(np.linalg.norm(U.mean(axis=0) - _unit_np(Y.numpy()).mean(axis=0)))
    n = U.shape[0]
    G = U @ U.T
    if diagnostic == "anisotropy":
        return float(G[~np.eye(n, dtype=bool)].mean())
    sq = 2.0 - 2.0 * G
    return float(np.log(np.exp(-T * sq[np.triu_indices(n, 1)]).mean()))


def pdist_uniformity(X: Any) -> float:
    import torch.nn.functional as F
    from torch import pdist

    return float(pdist(F.normalize(X, dim=1), p=2).pow(2).mul(-T).exp().mean().log())


def roofline(diagnostic: str, X: Any, Y: Any) -> None:
    """The dominant product alone, in numpy (the library's kernels are numpy): blocked ``X @ X.T`` into one reused
    buffer with ours' block size, or the column sums."""
    import numpy as np

    from alignkit.diagnostics.geometry import block_rows

    x = X.numpy()
    if diagnostic != "uniformity":
        x.sum(axis=0)
        if Y is not None:
            Y.numpy().sum(axis=0)
        return
    n = x.shape[0]
    step = block_rows(n, x.itemsize, None)
    buffer = np.empty((min(step, n), n), dtype=x.dtype)
    for s in range(0, n, step):
        e = min(n, s + step)
        np.matmul(x[s:e], x.T, out=buffer[: e - s])


def run(spec: dict) -> dict:
    from alignkit.diagnostics import geometry, pair

    X, Y = _inputs(spec)
    name, impl = spec["diagnostic"], spec["impl"]
    args = (X,) if Y is None else (X, Y)
    calls = {
        "ours": lambda: getattr(pair if Y is not None else geometry, name)(*args),
        "dense": lambda: dense(name, X, Y),
        "pdist": lambda: pdist_uniformity(X),
        "roofline": lambda: roofline(name, X, Y),
    }
    out = C.measure(calls[impl], repeats=spec["repeats"], budget_s=spec["budget_s"])
    if out["value"] is not None:
        out["value"] = float(out["value"])
    return out


RUNNERS = {impl: run for impl in ("ours", "dense", "pdist", "roofline")}


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 20000, 100000])
    p.add_argument("--d", type=int, nargs="+", default=[768])
    p.add_argument("--diagnostics", nargs="+", default=list(DIAGNOSTICS), choices=DIAGNOSTICS)
    p.add_argument("--dense-max", type=int, default=20000, help="largest n for the n×n dense and pdist baselines")
    p.add_argument("--budget", type=float, default=20.0, help="no further repeat once this many seconds are spent")
    args = p.parse_args()
    if args.one:
        C.child_main(args.one, args.threads, RUNNERS)
        return 0
    impls = dict(IMPLS)
    if args.quick:  # one small size, fewer baselines: each configuration pays a fresh interpreter + torch import
        args.n, args.d, args.dense_max, args.repeats = [1500], [128], 1500, 2
        impls = {"uniformity": ("ours", "dense", "roofline")} | {k: ("ours", "dense") for k in DIAGNOSTICS[1:]}
    mix = C.LatentMixture(seed=args.seed)
    res = C.Results(
        "diagnostics_geometry", args, {"data": mix.describe() + f"; views with noise {NOISE}", "t": T, "dtype": "f32"}
    )
    summaries = []
    for name in args.diagnostics:
        for d in args.d:
            for n in args.n:
                base = {"diagnostic": name, "n": n, "d": d, "seed": args.seed}
                base |= {"repeats": args.repeats, "budget_s": args.budget}
                runs = {}
                for impl in impls[name]:
                    spec = {"impl": impl, **base}
                    skip = _skip(name, impl, n, args.dense_max)
                    if skip:
                        row = {**spec, "status": "skipped", "reason": skip}
                    else:
                        print(f"[diagnostics_geometry] {name} {impl:8s} n={n} d={d} ...", file=sys.stderr, flush=True)
                        row = C.run_isolated(__file__, spec, threads=args.threads, timeout=args.timeout)
                    runs[impl] = res.add(row)
                summaries.append(res.add({"kind": "summary", **_summary(runs, base)}))
    print(_table(summaries))
    print(
        f"\nseconds = best of up to {args.repeats} runs (fewer once {args.budget:g} s are spent); MB = peak RSS − RSS "
        f"before the call, fresh process each; threads = {args.threads}; float32 inputs; t = {T:g}. "
        "ours/roof < 1 for uniformity is expected: ours computes only the upper triangle of the Gram."
    )
    print(f"results: {res.path}")
    bad = [(s["diagnostic"], s["n"], s["d"]) for s in summaries if s["agree"] is False]
    if bad:
        print(f"DISAGREEMENT (> {AGREE_TOL:g}) between ours and dense at {bad}", file=sys.stderr)
        return 1
    return 0


def _skip(name: str, impl: str, n: int, dense_max: int) -> str | None:
    key = "pdist" if impl == "pdist" else name
    if impl not in ("dense", "pdist") or key not in DENSE_BYTES_PER_N2:
        return None
    if n > dense_max:
        return f"n > --dense-max {dense_max}"
    need = DENSE_BYTES_PER_N2[key] * n * n
    avail = C.mem_available_bytes()
    if avail is not None and need > 0.8 * avail:
        return f"needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
    return None


def _get(row: dict | None, key: str) -> Any:
    return row.get(key) if row is not None and C.ok(row) else None


def _summary(runs: dict[str, dict], base: dict) -> dict:
    ours, dense_row, pdist_row, roof = (runs.get(k) for k in ("ours", "dense", "pdist", "roofline"))
    ref = _get(dense_row, "value")
    diff = abs(ours["value"] - ref) if C.ok(ours) and ref is not None else None
    return {
        "diagnostic": base["diagnostic"],
        "n": base["n"],
        "d": base["d"],
        "ours_s": _get(ours, "seconds"),
        "dense_s": _get(dense_row, "seconds"),
        "pdist_s": _get(pdist_row, "seconds"),
        "roofline_s": _get(roof, "seconds"),
        "dense_over_ours": C.ratio(_get(dense_row, "seconds"), _get(ours, "seconds")),
        "ours_over_roofline": C.ratio(_get(ours, "seconds"), _get(roof, "seconds")),
        "ours_mb": _get(ours, "peak_extra_mb"),
        "dense_mb": _get(dense_row, "peak_extra_mb"),
        "value": _get(ours, "value"),
        "abs_diff": diff,
        "agree": None if diff is None else diff <= AGREE_TOL,
        "status": {k: r.get("status") for k, r in runs.items()},
        "reasons": {k: r.get("reason") or r.get("error") for k, r in runs.items() if not C.ok(r)},
    }


def _table(rows: list[dict]) -> str:
    def cell(key: str, impl: str) -> Any:
        return lambda r: r[key] if r["status"].get(impl) == "ok" else r["status"].get(impl, "–")

    return C.markdown_table(
        rows,
        [
            ("diagnostic", lambda r: r["diagnostic"]),
            ("d", lambda r: r["d"]),
            ("n", lambda r: r["n"]),
            ("ours s", cell("ours_s", "ours")),
            ("dense s", cell("dense_s", "dense")),
            ("pdist s", cell("pdist_s", "pdist")),
            ("roofline s", cell("roofline_s", "roofline")),
            ("dense/ours", lambda r: r["dense_over_ours"]),
            ("ours/roof", lambda r: r["ours_over_roofline"]),
            ("ours MB", lambda r: r["ours_mb"]),
            ("dense MB", cell("dense_mb", "dense")),
            ("value", lambda r: r["value"]),
            ("|Δ|", lambda r: None if r["abs_diff"] is None else f"{r['abs_diff']:.1e}"),
            ("agree", lambda r: r["agree"]),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
