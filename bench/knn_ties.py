"""Cost of tie-aware mutual kNN (``ties="fractional"``) against the ordinary one (``ties="arbitrary"``).

Two costs, both with the prepared measure that ``permutation_test`` and ``atlas`` use:

graph   ``prepare`` of one space: the exact blocked search; the tie-aware one also keeps every row tied at each
        row's k-th similarity (``knn_graph(..., ties=True)``). Best of ``--repeats``.
draw    one permutation-null step: permute the prepared Y, score against the prepared X. The two modes alternate
        in blocks of 25 steps (step by step, each would evict the other's working set from the caches) for
        ``--draws`` steps each, and the table reports the median step, so load hits them alike.

Data (d = 384, float32, Y = X + noise): ``distinct`` (no ties: the fractional score equals the ordinary one
exactly), and ``captions`` (X's rows drawn from n/6 distinct rows, as the demo's captions: ~6 identical copies
each, so most rows have ties at their k-th distance). ``python bench/knn_ties.py`` (~1 minute); single-threaded.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def data(kind: str, n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "captions":
        X = rng.standard_normal((n // 6, d)).astype(np.float32)[rng.integers(0, n // 6, n)]
    else:
        X = rng.standard_normal((n, d)).astype(np.float32)
    return X, X + rng.standard_normal(X.shape).astype(np.float32)


def main() -> None:
    from alignkit.metrics.prepared import prepared_measure

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="n = 500, 25 draws, one repeat; nothing written")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "knn_ties.jsonl")
    args = ap.parse_args()
    if args.quick:
        args.n, args.draws, args.repeats = [500], 25, 1
    records = []
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print("| data | n | graph: arbitrary | graph: fractional | ratio | draw: arbitrary | draw: fractional | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("distinct", "captions"):
        for n in args.n:
            X, Y = data(kind, n, 384, 0)
            pms = {m: prepared_measure(f"mutual_knn?k=10&ties={m}") for m in ("arbitrary", "fractional")}
            graph, prep = {}, {}
            for mode, pm in pms.items():
                best = float("inf")
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    px = pm.prepare(torch.from_numpy(X))
                    best = min(best, time.perf_counter() - t0)
                graph[mode], prep[mode] = best, (px, pm.prepare(torch.from_numpy(Y)))
            steps: dict[str, list[float]] = {m: [] for m in pms}
            gen = torch.Generator().manual_seed(0)
            for block in range(0, args.draws, 25):
                perms = [torch.randperm(n, generator=gen) for _ in range(min(25, args.draws - block))]
                for mode in list(pms)[:: 1 if block % 50 else -1]:
                    pm, (px, py) = pms[mode], prep[mode]
                    for perm in perms:
                        t0 = time.perf_counter()
                        pm.score(px, pm.permute(py, perm))
                        steps[mode].append(time.perf_counter() - t0)
            draw = {m: float(np.median(v)) for m, v in steps.items()}
            records.append({"data": kind, "n": n, "graph_s": graph, "draw_s": draw})
            print(
                f"| {kind} | {n:,} | {graph['arbitrary'] * 1e3:.0f} ms | {graph['fractional'] * 1e3:.0f} ms | "
                f"{graph['fractional'] / graph['arbitrary']:.2f} | {draw['arbitrary'] * 1e3:.2f} ms | "
                f"{draw['fractional'] * 1e3:.2f} ms | {draw['fractional'] / draw['arbitrary']:.2f} |"
            )
    if not args.quick:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


if __name__ == "__main__":
    main()
