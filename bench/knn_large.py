"""Large kNN graphs: exact ``knn_graph`` at n=100k and the faiss IVF backend at n=1M (d=384, k=10).

Targets: exact n=100k ≤ 3 min; faiss n=1M ≤ 10 min with recall@k ≥ 0.95, the recall being the one
``knn_graph`` measures itself (exact search on ``recall_sample`` rows) and stores in the graph.

Data are structured, not isotropic: random Gaussians in 384-d are a worst case for any ANN index and
unlike real embeddings. Each run is a fresh subprocess (peak MB = peak RSS − RSS before the call, the
data excluded). Full run: ``python bench/knn_large.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

# Judged only at the target size (n, d=384).
TARGETS = {"exact": {"n": 100_000, "seconds": 180.0}, "faiss": {"n": 1_000_000, "seconds": 600.0, "recall": 0.95}}


def _data(spec: dict) -> Any:
    import torch

    mix = C.LatentMixture(spec["latent_dim"], spec["clusters"], spec["within"], spec["seed"])
    (X,) = mix.views(spec["n"], spec["d"], spec["noise"])
    return torch.from_numpy(X)


def run_exact(spec: dict) -> dict:
    from alignkit import knn_graph

    X = _data(spec)
    out = C.measure(lambda: knn_graph(X, spec["k"]), repeats=spec["repeats"], budget_s=spec["budget_s"])
    out["value"] = None
    return out


def run_faiss(spec: dict) -> dict:
    from alignkit import knn_graph

    X = _data(spec)

    # Options left at None take knn_graph's defaults.
    opts = {name: spec[name] for name in ("nlist", "nprobe", "niter") if spec[name] is not None}

    def call() -> Any:
        return knn_graph(X, spec["k"], backend="faiss", recall_sample=spec["recall_sample"], seed=spec["seed"], **opts)

    out = C.measure(call, repeats=spec["repeats"], budget_s=spec["budget_s"])
    g = out.pop("value")
    meta = dict(g.meta)
    split = meta.pop("seconds")
    split["recall_check+other"] = out["times"][-1] - sum(split.values())
    return {**out, "recall": g.recall, "index": meta, "split_s": split}


RUNNERS = {"exact": run_exact, "faiss": run_faiss}


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.set_defaults(repeats=1)
    p.add_argument("--n-exact", type=int, default=100_000)
    p.add_argument("--n-faiss", type=int, default=1_000_000)
    p.add_argument("--only", choices=["exact", "faiss"], help="run one backend only")
    p.add_argument("--d", type=int, default=384)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--nlist", type=int, default=None, help="faiss lists (default: knn_graph's, ≈ 4√n)")
    p.add_argument("--nprobe", type=int, default=None, help="faiss lists scanned (default: knn_graph's)")
    p.add_argument("--niter", type=int, default=None, help="k-means iterations (default: knn_graph's)")
    p.add_argument("--recall-sample", type=int, default=1000)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--latent-dim", type=int, default=32)
    p.add_argument("--within", type=float, default=0.5, help="within-cluster std of the latent (centres ~ N(0, I))")
    p.add_argument("--noise", type=float, default=0.1, help="isotropic noise std in the d-dim space")
    p.add_argument("--budget", type=float, default=60.0, help="no further repeat once this many seconds are spent")
    args = p.parse_args()
    if args.one:
        C.child_main(args.one, args.threads, RUNNERS)
        return 0
    if args.quick:
        args.n_exact, args.n_faiss = 5000, 20000
    mix = C.LatentMixture(args.latent_dim, args.clusters, args.within, args.seed)
    res = C.Results("knn_large", args, {"data": mix.describe() + f"; noise std {args.noise}", "targets": TARGETS})
    common = {
        "d": args.d,
        "k": args.k,
        "seed": args.seed,
        "repeats": args.repeats,
        "budget_s": args.budget,
        "clusters": args.clusters,
        "latent_dim": args.latent_dim,
        "within": args.within,
        "noise": args.noise,
    }
    rows = []
    if args.only in (None, "exact"):
        rows.append(_run({"impl": "exact", "n": args.n_exact, **common}, args, res))
    if args.only in (None, "faiss"):
        spec = {
            "impl": "faiss",
            "n": args.n_faiss,
            **common,
            "nlist": args.nlist,
            "nprobe": args.nprobe,
            "niter": args.niter,
            "recall_sample": args.recall_sample,
        }
        rows.append(_run(spec, args, res))
    print(f"data: {mix.describe()}; noise std {args.noise}\n")
    print(_table(rows))
    for r in rows:
        if r["impl"] == "faiss" and C.ok(r):
            split = ", ".join(f"{k} {v:.1f} s" for k, v in r["split_s"].items())
            ix = r["index"]
            print(
                f"\nfaiss IVF-Flat: nlist {ix['nlist']}, nprobe {ix['nprobe']}, k-means on {ix['train_size']} rows "
                f"× {ix['niter']} iterations; recall@{args.k} on {ix['recall_sample']} rows = {r['recall']:.4f}"
                f"\ntime split: {split}"
            )
    exact = next((r for r in rows if r["impl"] == "exact" and C.ok(r)), None)
    faiss = next((r for r in rows if r["impl"] == "faiss" and C.ok(r)), None)
    if exact and faiss:
        est = exact["seconds"] * (faiss["n"] / exact["n"]) ** 2
        print(f"\nexact search at n={faiss['n']} would take ≈ {est:.0f} s (n² from the exact run)")
        res.add({"kind": "extrapolation", "impl": "exact", "n": faiss["n"], "seconds_estimated": est})
    print(f"\nthreads = {args.threads}; MB = peak RSS − RSS before the call (fresh process); results: {res.path}")
    return 0


def _run(spec: dict, args: Any, res: C.Results) -> dict:
    print(f"[knn_large] {spec['impl']} n={spec['n']} d={spec['d']} ...", file=sys.stderr, flush=True)
    row = C.run_isolated(__file__, spec, threads=args.threads, timeout=args.timeout)
    if C.ok(row):
        target = TARGETS[spec["impl"]]
        at_size = spec["n"] == target["n"] and spec["d"] == 384
        met = row["seconds"] <= target["seconds"] and row.get("recall", 1.0) >= target.get("recall", 0.0)
        row["target_met"] = met if at_size else None
    return res.add(row)


def _table(rows: list[dict]) -> str:
    return C.markdown_table(
        rows,
        [
            ("backend", lambda r: r["impl"]),
            ("n", lambda r: r["n"]),
            ("d", lambda r: r["d"]),
            ("k", lambda r: r["k"]),
            ("seconds", C.field("seconds")),
            ("peak MB", C.field("peak_extra_mb")),
            ("recall@k", lambda r: r.get("recall") if r["impl"] == "faiss" else "exact"),
            ("target", lambda r: _target_text(r["impl"])),
            ("met", lambda r: r.get("target_met")),
        ],
    )


def _target_text(impl: str) -> str:
    t = TARGETS[impl]
    return f"n={t['n']:,}: ≤ {t['seconds']:g} s" + (f", recall ≥ {t['recall']}" if "recall" in t else "")


if __name__ == "__main__":
    sys.exit(main())
