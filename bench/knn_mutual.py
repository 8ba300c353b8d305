"""Exact mutual kNN (k=10, cosine) between two spaces: alignkit vs the dense PRH-style implementation.

ours      ``alignkit.metrics.mutual_knn``: blocked similarity + top-k, O(n·k + block·n) memory.
dense     the straightforward version (as in the PRH code): full n×n similarity, full argsort of
          every row, dense n×n float masks; float32.
roofline  the two bare n×n×d float32 matmuls ``X @ X.T`` and ``Y @ Y.T`` the computation needs.

Each (implementation, n, d) runs in a fresh subprocess; peak MB is the peak RSS over the RSS right
before the timed call (inputs excluded). Full run: ``python bench/knn_mutual.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

NOISE = (0.1, 0.5)  # the two spaces: two noisy views of the same latent points
DENSE_BYTES_PER_N2 = 28  # similarity 4 + argsort indices 8 + sort buffer 4 + three float masks 12


def dense_mutual_knn(X: Any, Y: Any, k: int) -> float:
    """Mutual kNN exactly as the PRH reference computes it (Huh et al., ICML 2024), float32."""
    import torch
    import torch.nn.functional as F

    def neighbours(feats: torch.Tensor) -> torch.Tensor:
        feats = F.normalize(feats, dim=1)
        return (feats @ feats.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :k]

    knn_a, knn_b = neighbours(X), neighbours(Y)
    n = knn_a.shape[0]
    rows = torch.arange(n).unsqueeze(1)
    mask_a = torch.zeros(n, n)
    mask_b = torch.zeros(n, n)
    mask_a[rows, knn_a] = 1.0
    mask_b[rows, knn_b] = 1.0
    # PRH divides in float32; dividing the (exact) counts in float64 lets the check against ours be exact.
    acc = (mask_a * mask_b).sum(dim=1).double() / k
    return float(acc.mean())


def roofline(X: Any, Y: Any) -> None:
    sx = X @ X.T
    del sx
    sy = Y @ Y.T
    del sy


def _inputs(spec: dict) -> tuple[Any, Any]:
    import torch

    X, Y = C.LatentMixture(seed=spec["seed"]).views(spec["n"], [spec["d"], spec["d"]], NOISE)
    return torch.from_numpy(X), torch.from_numpy(Y)


def run_ours(spec: dict) -> dict:
    from alignkit.metrics import mutual_knn

    X, Y = _inputs(spec)
    return C.measure(lambda: mutual_knn(X, Y, spec["k"]), repeats=spec["repeats"], budget_s=spec["budget_s"])


def run_dense(spec: dict) -> dict:
    X, Y = _inputs(spec)
    return C.measure(lambda: dense_mutual_knn(X, Y, spec["k"]), repeats=spec["repeats"], budget_s=spec["budget_s"])


def run_roofline(spec: dict) -> dict:
    X, Y = _inputs(spec)
    return C.measure(lambda: roofline(X, Y), repeats=spec["repeats"], budget_s=spec["budget_s"])


RUNNERS = {"ours": run_ours, "dense": run_dense, "roofline": run_roofline}


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 10000, 20000])
    p.add_argument("--d", type=int, nargs="+", default=[384, 768])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--budget", type=float, default=30.0, help="no further repeat once this many seconds are spent")
    p.add_argument("--dense-max", type=int, default=20000, help="largest n for the dense version")
    args = p.parse_args()
    if args.one:
        C.child_main(args.one, args.threads, RUNNERS)
        return 0
    if args.quick:
        args.n, args.d, args.repeats = [1000, 2000], [384], 2
    data = C.LatentMixture(seed=args.seed)
    res = C.Results("knn_mutual", args, {"data": data.describe() + f"; two views, noise {NOISE}", "k": args.k})
    summaries = []
    for d in args.d:
        for n in args.n:
            base = {"n": n, "d": d, "k": args.k, "seed": args.seed, "repeats": args.repeats, "budget_s": args.budget}
            runs: dict[str, dict] = {}
            for impl in ("roofline", "ours", "dense"):
                spec = {"impl": impl, **base}
                skip = None
                if impl == "dense":
                    skip = f"n > --dense-max {args.dense_max}" if n > args.dense_max else _dense_skip(n)
                if skip:
                    row = {**spec, "status": "skipped", "reason": skip}
                else:
                    print(f"[knn_mutual] {impl:8s} n={n} d={d} ...", file=sys.stderr, flush=True)
                    row = C.run_isolated(__file__, spec, threads=args.threads, timeout=args.timeout)
                runs[impl] = res.add(row)
            summaries.append(_summary(runs, base))
            res.add({"kind": "summary", **summaries[-1]})
    print(_table(summaries))
    print(
        f"\nseconds = best of up to {args.repeats} runs (fewer once {args.budget:g} s are spent); "
        f"MB = peak RSS − RSS before the call, fresh process each; threads = {args.threads}"
    )
    print(f"results: {res.path}")
    bad = [s for s in summaries if s["agree"] is False]
    if bad:
        print(f"DISAGREEMENT between ours and dense at {[(s['n'], s['d']) for s in bad]}", file=sys.stderr)
        return 1
    return 0


def _dense_skip(n: int) -> str | None:
    need = DENSE_BYTES_PER_N2 * n * n
    avail = C.mem_available_bytes()
    if avail is not None and need > 0.8 * avail:
        return f"needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
    return None


def _summary(runs: dict[str, dict], base: dict) -> dict:
    def sec(impl: str) -> float | None:
        return runs[impl]["seconds"] if C.ok(runs[impl]) else None

    def mb(impl: str) -> float | None:
        return runs[impl]["peak_extra_mb"] if C.ok(runs[impl]) else None

    agree, diff = None, None
    if C.ok(runs["ours"]) and C.ok(runs["dense"]):
        diff = abs(runs["ours"]["value"] - runs["dense"]["value"])
        agree = diff <= 1e-12
    return {
        "n": base["n"],
        "d": base["d"],
        "roofline_s": sec("roofline"),
        "ours_s": sec("ours"),
        "dense_s": sec("dense"),
        "dense_over_ours": C.ratio(sec("dense"), sec("ours")),
        "ours_over_roofline": C.ratio(sec("ours"), sec("roofline")),
        "ours_mb": mb("ours"),
        "dense_mb": mb("dense"),
        "roofline_mb": mb("roofline"),
        "score": runs["ours"].get("value"),
        "abs_diff": diff,
        "agree": agree,
        "dense_status": runs["dense"].get("status"),
        "dense_reason": runs["dense"].get("reason") or runs["dense"].get("error"),
        "repeats": {impl: r.get("repeats") if C.ok(r) else None for impl, r in runs.items()},
    }


def _table(rows: list[dict]) -> str:
    def dense(key: str) -> Any:
        return lambda r: r[key] if r["dense_status"] == "ok" else r["dense_status"]

    return C.markdown_table(
        rows,
        [
            ("d", lambda r: r["d"]),
            ("n", lambda r: r["n"]),
            ("roofline s", lambda r: r["roofline_s"]),
            ("ours s", lambda r: r["ours_s"]),
            ("dense s", dense("dense_s")),
            ("dense/ours", lambda r: r["dense_over_ours"]),
            ("ours/roofline", lambda r: r["ours_over_roofline"]),
            ("ours MB", lambda r: r["ours_mb"]),
            ("dense MB", dense("dense_mb")),
            ("roofline MB", lambda r: r["roofline_mb"]),
            ("mknn", lambda r: r["score"]),
            ("agree", lambda r: r["agree"]),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
