"""Linear CKA, biased and debiased: alignkit vs the dense Gram implementation with an explicit H.

ours   ``alignkit.metrics.cka`` (form chosen automatically: the O(n·d²) feature form when n ≥ d).
dense  float64 n×n Grams K = XXᵀ, L = YYᵀ and the textbook formulas, with O(n³) products:
       biased   HSIC = tr(KH·LH)/(n−1)², KH = K@H, LH = L@H, H = I − 11ᵀ/n (Kornblith et al. 2019);
       debiased HSIC_u = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1]/(n(n−3)) with K̃L̃ = K̃@L̃
                (K̃, L̃ = K, L with zeroed diagonal; Song et al. 2012).
Each (implementation, n, d) runs in a fresh subprocess; peak MB = peak RSS − RSS before the call.
Full run: ``python bench/cka.py`` (dense up to n=10k, ~1.5 min per dense run there).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

NOISE = (0.5, 1.0)
DENSE_BYTES_PER_N2 = 48  # six float64 n×n matrices alive at once (K, L, H, KH, LH, product)


def dense_cka(X: Any, Y: Any, debiased: bool) -> float:
    import torch

    x, y = X.double(), Y.double()
    K, L = x @ x.T, y @ y.T
    n = K.shape[0]
    if not debiased:
        H = torch.eye(n, dtype=torch.float64) - 1.0 / n
        KH, LH = K @ H, L @ H

        def hsic(A: torch.Tensor, B: torch.Tensor) -> float:
            return float(torch.trace(A @ B)) / (n - 1) ** 2

        return hsic(KH, LH) / math.sqrt(hsic(KH, KH) * hsic(LH, LH))
    K.fill_diagonal_(0.0)
    L.fill_diagonal_(0.0)

    def hsic_u(A: torch.Tensor, B: torch.Tensor) -> float:
        AB = A @ B
        total = float(torch.trace(AB)) + float(A.sum()) * float(B.sum()) / ((n - 1) * (n - 2))
        return (total - 2.0 / (n - 2) * float(AB.sum())) / (n * (n - 3))

    return hsic_u(K, L) / math.sqrt(hsic_u(K, K) * hsic_u(L, L))


def _inputs(spec: dict) -> tuple[Any, Any]:
    import torch

    X, Y = C.LatentMixture(seed=spec["seed"]).views(spec["n"], [spec["d"], spec["d"]], NOISE)
    return torch.from_numpy(X), torch.from_numpy(Y)


def run_ours(spec: dict) -> dict:
    from alignkit.metrics import cka
    from alignkit.metrics.kernel import _choose_form

    X, Y = _inputs(spec)
    out = C.measure(lambda: cka(X, Y, debiased=spec["debiased"]), repeats=spec["repeats"], budget_s=spec["budget_s"])
    return {**out, "form": _choose_form("auto", "linear", spec["n"], spec["d"], spec["d"])}


def run_dense(spec: dict) -> dict:
    X, Y = _inputs(spec)
    return C.measure(lambda: dense_cka(X, Y, spec["debiased"]), repeats=spec["repeats"], budget_s=spec["budget_s"])


RUNNERS = {"ours": run_ours, "dense": run_dense}


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 10000, 20000])
    p.add_argument("--d", type=int, nargs="+", default=[384, 768])
    p.add_argument("--dense-max", type=int, default=10000, help="largest n for the dense version")
    p.add_argument("--budget", type=float, default=20.0, help="no further repeat once this many seconds are spent")
    args = p.parse_args()
    if args.one:
        C.child_main(args.one, args.threads, RUNNERS)
        return 0
    if args.quick:
        args.n, args.d, args.dense_max, args.repeats = [300, 1500], [384], 1500, 2
    mix = C.LatentMixture(seed=args.seed)
    res = C.Results("cka", args, {"data": mix.describe() + f"; two views, noise {NOISE}"})
    summaries = []
    for d in args.d:
        for n in args.n:
            for debiased in (False, True):
                base = {"n": n, "d": d, "debiased": debiased, "seed": args.seed}
                base |= {"repeats": args.repeats, "budget_s": args.budget}
                runs = {}
                for impl in ("ours", "dense"):
                    spec = {"impl": impl, **base}
                    skip = None
                    if impl == "dense":
                        skip = f"n > --dense-max {args.dense_max}" if n > args.dense_max else _dense_skip(n)
                    if skip:
                        row = {**spec, "status": "skipped", "reason": skip}
                    else:
                        print(f"[cka] {impl:5s} n={n} d={d} debiased={debiased} ...", file=sys.stderr, flush=True)
                        row = C.run_isolated(__file__, spec, threads=args.threads, timeout=args.timeout)
                    runs[impl] = res.add(row)
                summaries.append(res.add({"kind": "summary", **_summary(runs, base)}))
    print(_table(summaries))
    print(
        f"\nseconds = best of up to {args.repeats} runs (fewer once {args.budget:g} s are spent); "
        f"MB = peak RSS − RSS before the call, fresh process each; threads = {args.threads}; "
        f"target: ours ≤ 0.2 s at n=10k"
    )
    print(f"results: {res.path}")
    bad = [(s["n"], s["d"], s["debiased"]) for s in summaries if s["agree"] is False]
    if bad:
        print(f"DISAGREEMENT (> 1e-6) between ours and dense at {bad}", file=sys.stderr)
        return 1
    return 0


def _dense_skip(n: int) -> str | None:
    need = DENSE_BYTES_PER_N2 * n * n
    avail = C.mem_available_bytes()
    if avail is not None and need > 0.8 * avail:
        return f"needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
    return None


def _summary(runs: dict[str, dict], base: dict) -> dict:
    ours, dense = runs["ours"], runs["dense"]
    diff = abs(ours["value"] - dense["value"]) if C.ok(ours) and C.ok(dense) else None
    return {
        "n": base["n"],
        "d": base["d"],
        "debiased": base["debiased"],
        "form": ours.get("form"),
        "ours_s": ours.get("seconds"),
        "dense_s": dense.get("seconds") if C.ok(dense) else None,
        "dense_over_ours": C.ratio(dense.get("seconds"), ours.get("seconds")) if C.ok(dense) else None,
        "ours_mb": ours.get("peak_extra_mb"),
        "dense_mb": dense.get("peak_extra_mb") if C.ok(dense) else None,
        "cka": ours.get("value"),
        "abs_diff": diff,
        "agree": None if diff is None else diff <= 1e-6,
        "ours_status": ours.get("status"),
        "dense_status": dense.get("status"),
        "dense_reason": dense.get("reason") or dense.get("error"),
    }


def _table(rows: list[dict]) -> str:
    def dense(key: str) -> Any:
        return lambda r: r[key] if r["dense_status"] == "ok" else r["dense_status"]

    return C.markdown_table(
        rows,
        [
            ("d", lambda r: r["d"]),
            ("n", lambda r: r["n"]),
            ("estimator", lambda r: "debiased" if r["debiased"] else "biased"),
            ("ours form", lambda r: r["form"]),
            ("ours s", lambda r: r["ours_s"] if r["ours_status"] == "ok" else r["ours_status"]),
            ("dense s", dense("dense_s")),
            ("dense/ours", lambda r: r["dense_over_ours"]),
            ("ours MB", lambda r: r["ours_mb"]),
            ("dense MB", dense("dense_mb")),
            ("CKA", lambda r: r["cka"]),
            ("|Δ|", lambda r: None if r["abs_diff"] is None else f"{r['abs_diff']:.1e}"),
            ("agree", lambda r: r["agree"]),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
