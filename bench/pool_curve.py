"""A mutual-kNN pool-size curve (k=10; pools 1k … 31k, 5 repeats): shared kNN work against independent searches.

shared       ``alignkit.curves.curve("mutual_knn", X, Y, pool_sizes, repeats=5)``: each row's 64 nearest rows of the
             largest pool are found once; every pool reads its kNN from those lists, and only rows whose list
             holds fewer than k pool members are searched directly (``alignkit.curves``).
independent  the same call with ``share_knn=False``: each pool's two graphs are searched from scratch (the pool
             of all n items once, as it is the same set in every repeat).
plain        what a user writes without ``curve``: ``mutual_knn(X[pool], Y[pool])`` for every pool of every
             repeat (the full pool searched again in each repeat).
floor        the two kNN searches of the largest pool (``knn_graph`` on X and on Y): what one score at n costs.

Scores must agree in all three (asserted to 1e-4: float32 similarities computed in blocks of different shapes
can order two neighbours tied to within rounding differently, which moves a pool's score by 1/(m·k) per swap).
Data: two views of one latent mixture, d = 384 (the size of the MiniLM / e5 embeddings of
examples/pool_size_curve.py). Each row runs in a fresh subprocess (peak MB = peak
RSS − RSS before the call). Full run: ``python bench/pool_curve.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

NOISE = (0.5, 0.8)  # the two spaces: two noisy views of the same latent points
TOLERANCE = 1e-4  # float32 near-ties (see the module docstring)


def spaces(spec: dict) -> tuple[Any, Any]:
    mix = C.LatentMixture(seed=spec["seed"])
    X, Y = mix.views(spec["n"], [spec["d"], spec["d"]], list(NOISE))
    return X, Y


def run_shared(spec: dict) -> dict:
    from alignkit.curves import curve

    X, Y = spaces(spec)
    share = spec["impl"] == "shared"

    def call() -> Any:
        sizes, R, seed, k = spec["sizes"], spec["R"], spec["seed"], spec["k"]
        return curve("mutual_knn", X, Y, sizes, repeats=R, seed=seed, k=k, share_knn=share)

    out = C.measure(call, repeats=1)
    res = out.pop("value")
    return {**out, "scores": res.scores.tolist(), "cost": res.cost}


def run_plain(spec: dict) -> dict:
    from alignkit.metrics import mutual_knn
    from alignkit.stats import permutations

    X, Y = spaces(spec)
    orders = [o.numpy() for o in permutations(spec["n"], spec["R"], spec["seed"])]

    def call() -> list[list[float]]:
        return [[float(mutual_knn(X[o[:m]], Y[o[:m]], spec["k"])) for m in spec["sizes"]] for o in orders]

    out = C.measure(call, repeats=1)
    return {**out, "scores": out.pop("value")}


def run_floor(spec: dict) -> dict:
    from alignkit import knn_graph

    X, Y = spaces(spec)
    out = C.measure(lambda: [knn_graph(t, spec["k"]) for t in (X, Y)], repeats=1)
    out.pop("value")
    return out


RUNNERS = {"shared": run_shared, "independent": run_shared, "plain": run_plain, "floor": run_floor}


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=31077, help="items (the Bible's verse count)")
    p.add_argument("--d", type=int, default=384)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--R", type=int, default=5, help="repeats of the curve")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="pool sizes (default 1k, 2k, …, 16k, n)")
    args = p.parse_args()
    if args.one:
        C.child_main(args.one, args.threads, RUNNERS)
        return 0
    if args.quick:
        args.n, args.R, args.sizes = 2000, 2, [250, 500, 1000, 2000]
    sizes = args.sizes or [m for m in (1000, 2000, 4000, 8000, 16000) if m < args.n] + [args.n]
    notes = {
        "data": C.LatentMixture(seed=args.seed).describe() + f"; two views, noise std {NOISE}",
        "what": f"mutual_knn k={args.k} at pools {sizes}, {args.R} repeats",
    }
    res = C.Results("pool_curve", args, notes)
    base = {"n": args.n, "d": args.d, "k": args.k, "R": args.R, "sizes": sizes, "seed": args.seed}
    runs = {}
    for name in ("floor", "shared", "independent", "plain"):
        print(f"[pool_curve] {name} ...", file=sys.stderr, flush=True)
        runs[name] = res.add(
            C.run_isolated(__file__, {"impl": name, **base}, threads=args.threads, timeout=args.timeout)
        )
    diff = _max_diff(runs)
    equal = diff is not None and diff <= TOLERANCE
    cost = runs["shared"].get("cost", {}) if C.ok(runs["shared"]) else {}
    sec = {k: r.get("seconds") if C.ok(r) else None for k, r in runs.items()}
    summary = {
        **{f"{k}_s": v for k, v in sec.items()},
        "shared_over_floor": C.ratio(sec["shared"], sec["floor"]),
        "independent_over_shared": C.ratio(sec["independent"], sec["shared"]),
        "plain_over_shared": C.ratio(sec["plain"], sec["shared"]),
        "scores_equal": equal,
        "max_abs_diff": diff,
        "cost": cost,
    }
    res.add({"kind": "summary", **summary})
    print(_report(runs, summary, args, sizes))
    print(f"\nresults: {res.path}")
    failed = [name for name, r in runs.items() if not C.ok(r)]
    if failed:
        print(f"FAILED: {failed}: {[runs[f].get('error') for f in failed]}", file=sys.stderr)
        return 1
    if not equal:
        print(f"MISMATCH: the curves' scores differ by more than {TOLERANCE}", file=sys.stderr)
        return 1
    return 0


def _max_diff(runs: dict[str, dict]) -> float | None:
    """The largest |Δ score| of any pool and repeat between the three curves (None if one failed)."""
    import numpy as np

    if not all(C.ok(runs[k]) for k in ("shared", "independent", "plain")):
        return None
    s, i, p = (np.asarray(runs[k]["scores"]) for k in ("shared", "independent", "plain"))
    return float(max(np.abs(s - i).max(), np.abs(s - p).max(), np.abs(i - p).max()))


def _report(runs: dict[str, dict], s: dict, args: Any, sizes: list[int]) -> str:
    what = {
        "floor": "2 kNN searches of the largest pool (one score at n)",
        "shared": "curve: shared kNN lists",
        "independent": "curve, share_knn=False: each pool searched",
        "plain": "mutual_knn on every pool of every repeat",
    }
    table = C.markdown_table(
        [{**r, "what": what[k]} for k, r in runs.items()],
        [
            ("what", lambda r: r["what"]),
            ("seconds", C.field("seconds")),
            ("× shared", lambda r: C.ratio(r["seconds"], s["shared_s"]) if C.ok(r) else None),
            ("peak MB", C.field("peak_extra_mb")),
        ],
    )
    c = s["cost"]
    lines = [
        f"n={args.n}, d={args.d}, k={args.k}, pools {sizes}, {args.R} repeats, threads={args.threads}\n",
        table,
        "",
    ]
    if c:
        lines.append(
            f"similarity pairs per space: shared {c['base_pairs']:,} (base) + {c['searched_pairs']:,} (direct searches "
            f"of {c['searched_rows']:,} rows) vs {c['independent_pairs']:,} searched independently; "
            f"candidate lists of {c['candidates']}"
        )
    lines.append(f"scores agree in all three: {s['scores_equal']} (max |Δ| {s['max_abs_diff']}, tolerance {TOLERANCE})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
