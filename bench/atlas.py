"""A 13×13 layer atlas of mutual kNN (k=10) at n=5,000, d=384: its cost vs its 26 kNN searches.

searches    ``knn_graph`` on each of the 26 layers: the floor (one search per layer).
atlas       ``alignkit.atlas(A, B, "mutual_knn", k=10)``. Target: ≤ 1.3 × the 26 searches.
atlas+perm  the same with ``n_perm=100`` (max-statistic null); reported per permutation draw.
prh         the PRH-style cost: L1·L2 separate ``mutual_knn(A[i], B[j])`` calls on arrays (two
            searches per pair), timed on a few pairs and extrapolated to all of them.

Data: two models whose 13 layers are progressively noisier views (noise std rising linearly per layer)
of two correlated latents. Each row runs in a fresh subprocess (peak MB = peak RSS − RSS before the
call). Full run: ``python bench/atlas.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

TARGET_RATIO = 1.3


def layers(spec: dict) -> tuple[list[Any], list[Any]]:
    """Model A sees latent z_a, model B sees z_b = 0.8·z_a + 0.6·z' (z' independent); layer l of each
    is a view with its own projection and noise std ``noise0 + noise_step·l``."""
    mix_a = C.LatentMixture(seed=spec["seed"])
    mix_b = C.LatentMixture(seed=spec["seed"] + 1)
    z_a = mix_a.latent(spec["n"])
    z_b = 0.8 * z_a + 0.6 * mix_b.latent(spec["n"])
    noise = [spec["noise0"] + spec["noise_step"] * i for i in range(spec["layers"])]
    A = mix_a.views(z_a, [spec["d"]] * spec["layers"], noise, first_view=0)
    B = mix_a.views(z_b, [spec["d"]] * spec["layers"], noise, first_view=spec["layers"])
    return A, B


def prh_pairs(L1: int, L2: int, p: int) -> list[tuple[int, int]]:
    """p layer pairs spread along the diagonal (the cost of a pair does not depend on which)."""
    if p <= 1:
        return [(0, 0)]
    return [(round(i * (L1 - 1) / (p - 1)), round(i * (L2 - 1) / (p - 1))) for i in range(p)]


def run_searches(spec: dict) -> dict:
    from alignkit import knn_graph

    A, B = layers(spec)
    out = C.measure(
        lambda: [knn_graph(t, spec["k"]) for t in A + B], repeats=spec["repeats"], budget_s=spec["budget_s"]
    )
    return {**out, "value": None, "searches": len(A) + len(B)}


def run_atlas(spec: dict) -> dict:
    import alignkit

    A, B = layers(spec)

    def call() -> Any:
        return alignkit.atlas(A, B, "mutual_knn", k=spec["k"], n_perm=spec["n_perm"], seed=spec["seed"])

    repeats = spec["repeats"] if spec["n_perm"] == 0 else 1
    out = C.measure(call, repeats=repeats, budget_s=spec["budget_s"])
    result = out.pop("value")
    return {**out, "scores": result.scores.tolist(), "summary": result.summary()}


def run_prh(spec: dict) -> dict:
    from alignkit.metrics import mutual_knn

    A, B = layers(spec)
    pairs = prh_pairs(len(A), len(B), spec["pairs"])
    out = C.measure(
        lambda: [mutual_knn(A[i], B[j], spec["k"]) for i, j in pairs], repeats=spec["repeats"], budget_s=1.0
    )
    scores = out.pop("value")
    return {**out, "pairs": pairs, "pair_scores": scores}


RUNNERS = {"searches": run_searches, "atlas": run_atlas, "atlas_perm": run_atlas, "prh": run_prh}


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--d", type=int, default=384)
    p.add_argument("--layers", type=int, default=13, help="layers per model")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--n-perm", type=int, default=100)
    p.add_argument("--prh-pairs", type=int, default=3, help="pairs timed for the PRH-style cost (all: layers²)")
    p.add_argument("--noise0", type=float, default=0.2, help="noise std of the first layer")
    p.add_argument("--noise-step", type=float, default=0.1, help="noise std added per layer")
    p.add_argument("--budget", type=float, default=60.0, help="no further repeat once this many seconds are spent")
    args = p.parse_args()
    if args.one:
        C.child_main(args.one, args.threads, RUNNERS)
        return 0
    if args.quick:
        args.n, args.layers, args.n_perm, args.prh_pairs, args.repeats = 1000, 4, 10, 2, 2
    L = args.layers
    notes = {
        "data": C.LatentMixture(seed=args.seed).describe()
        + f"; {L} layers per model, noise std {args.noise0} + {args.noise_step}·layer; "
        "model B's latent = 0.8·A's + 0.6·independent",
        "target": f"atlas ≤ {TARGET_RATIO} × the {2 * L} searches",
    }
    res = C.Results("atlas", args, notes)
    base = {"n": args.n, "d": args.d, "layers": L, "k": args.k, "seed": args.seed, "repeats": args.repeats}
    base |= {"budget_s": args.budget, "noise0": args.noise0, "noise_step": args.noise_step}
    specs = {
        "searches": {"impl": "searches", **base},
        "atlas": {"impl": "atlas", **base, "n_perm": 0},
        "atlas_perm": {"impl": "atlas_perm", **base, "n_perm": args.n_perm},
        "prh": {"impl": "prh", **base, "pairs": min(args.prh_pairs, L * L)},
    }
    runs = {}
    for name, spec in specs.items():
        print(f"[atlas] {name} ...", file=sys.stderr, flush=True)
        runs[name] = res.add(C.run_isolated(__file__, spec, threads=args.threads, timeout=args.timeout))
    summary = _summary(runs, L, args)
    res.add({"kind": "summary", **summary})
    print(_report(runs, summary, L, args))
    print(f"\nresults: {res.path}")
    failed = [name for name, r in runs.items() if not C.ok(r)]
    if failed:
        print(f"FAILED: {failed}: {[runs[f].get('error') for f in failed]}", file=sys.stderr)
        return 1
    if not summary["prh_matches_atlas"]:
        print("MISMATCH: the PRH-style pair scores differ from the atlas cells", file=sys.stderr)
        return 1
    return 0


def _summary(runs: dict[str, dict], L: int, args: Any) -> dict:
    sec = {name: r.get("seconds") if C.ok(r) else None for name, r in runs.items()}
    out: dict[str, Any] = {
        "searches_s": sec["searches"],
        "atlas_s": sec["atlas"],
        "atlas_over_searches": C.ratio(sec["atlas"], sec["searches"]),
        "atlas_perm_s": sec["atlas_perm"],
        "n_perm": args.n_perm,
        "per_perm_s": None,
        "prh_pair_s": None,
        "prh_all_s": None,
        "prh_measured_pairs": None,
        "prh_matches_atlas": None,
    }
    out["target_met"] = None if out["atlas_over_searches"] is None else out["atlas_over_searches"] <= TARGET_RATIO
    if sec["atlas_perm"] is not None and sec["atlas"] is not None and args.n_perm:
        out["per_perm_s"] = (sec["atlas_perm"] - sec["atlas"]) / args.n_perm
    prh = runs["prh"]
    if C.ok(prh):
        out["prh_measured_pairs"] = len(prh["pairs"])
        out["prh_pair_s"] = prh["seconds"] / len(prh["pairs"])
        out["prh_all_s"] = out["prh_pair_s"] * L * L
        if C.ok(runs["atlas"]):
            scores = runs["atlas"]["scores"]
            out["prh_matches_atlas"] = all(
                abs(scores[i][j] - s) <= 1e-12 for (i, j), s in zip(prh["pairs"], prh["pair_scores"], strict=True)
            )
    return out


def _report(runs: dict[str, dict], s: dict, L: int, args: Any) -> str:
    extrapolated = s["prh_measured_pairs"] is not None and s["prh_measured_pairs"] < L * L
    rows = [
        {**runs["searches"], "what": f"{2 * L} kNN searches (knn_graph per layer)", "s": s["searches_s"]},
        {**runs["atlas"], "what": f"atlas {L}×{L}, mutual_knn k={args.k}", "s": s["atlas_s"]},
        {**runs["atlas_perm"], "what": f"atlas {L}×{L} + n_perm={args.n_perm}", "s": s["atlas_perm_s"]},
        {
            **runs["prh"],
            "what": f"PRH-style: {L * L} separate mutual_knn calls"
            + (f" (extrapolated from {s['prh_measured_pairs']} pairs)" if extrapolated else ""),
            "s": s["prh_all_s"],
        },
    ]
    table = C.markdown_table(
        rows,
        [
            ("what", lambda r: r["what"]),
            ("seconds", lambda r: r["s"] if C.ok(r) else r.get("status")),
            ("× searches", lambda r: C.ratio(r["s"], s["searches_s"]) if C.ok(r) else None),
            ("peak MB", C.field("peak_extra_mb")),
            ("repeats", C.field("repeats")),
        ],
    )
    lines = [f"n={args.n}, d={args.d}, {L} layers per model, k={args.k}, threads={args.threads}\n", table, ""]
    if s["atlas_over_searches"] is not None:
        met = "met" if s["target_met"] else "NOT met"
        lines.append(f"atlas / searches = {s['atlas_over_searches']:.3f} (target ≤ {TARGET_RATIO}: {met})")
    if s["per_perm_s"] is not None:
        lines.append(f"per permutation draw ({L * L} pairs rescored): {1e3 * s['per_perm_s']:.1f} ms")
    if s["prh_pair_s"] is not None:
        lines.append(
            f"PRH-style: {s['prh_pair_s']:.3f} s per pair → {s['prh_all_s']:.1f} s for {L * L} pairs "
            f"({C.ratio(s['prh_all_s'], s['atlas_s']) or float('nan'):.1f}× the atlas); "
            f"pair scores equal the atlas cells: {s['prh_matches_atlas']}"
        )
    if C.ok(runs["atlas"]):
        best = runs["atlas"]["summary"]
        lines.append(f"best pair: A[{best['best_a']}] × B[{best['best_b']}] = {best['best_score']:.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
