"""N-way trainer throughput: ``fit_heads`` on 3 row-paired views vs 2 views at equal batch and dims, and each against a
plain training loop written here (same heads, loss, optimiser and clipping; no checkpoints, history or validation).

Configuration: ``--views`` (default 2 and 3) views of width ``--d-in`` (384), StarMLP heads (expansion ``--expansion``,
default 2) to ``--d-out`` (512), batch ``--batch`` (2,048), ``--steps`` (4) optimiser steps of one epoch, AdamW,
float32 on CPU (or ``--device cuda``). Loss ``--loss`` (default ``pairwise_infonce``: symmetric InfoNCE summed over
the n(n−1)/2 view pairs, so 3 views cost 3 heads + 3 pair losses against 2 heads + 1). Throughput = items (rows
paired across all views) per second; a 2-view item is one pair.

Reported: pairs/s of each (implementation, views), the n-way ratio ``pairs/s(3 views) / pairs/s(2 views)`` for
``fit_heads`` and for the plain loop (the cost of the third head and the extra pair losses), and the overhead
``fit_heads / plain`` per view count (what the shared loop costs over the bare minimum). The runs are interleaved
(2-view, 3-view, 2-view, ...) ``--repeats`` times and the best time of each is kept, because the machine may be
shared. Writes ``bench/results/nway_trainer.jsonl`` (a header line with the machine and load, then one line per
(implementation, views)) and prints a table. ``--quick``: batch 256, d 64 → 64, expansion 1, 2 steps, 1 repeat
(a few seconds; written to a temporary folder, see ``_common.quick_dir``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, results_path
from alignkit.align.heads import StarMLP
from alignkit.align.loss_registry import build_loss
from alignkit.align.trainer import fit_heads
from alignkit.io import atomic_write_text


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _heads(args: argparse.Namespace, n_views: int) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [StarMLP(args.d_in, args.d_out, expansion=args.expansion) for _ in range(n_views)]


def run_fit_heads(args: argparse.Namespace, views: list[np.ndarray]) -> float:
    heads = _heads(args, len(views))
    t0 = time.perf_counter()
    fit_heads(
        views, heads, build_loss(args.loss, len(views)), batch_size=args.batch, epochs=1, lr=1e-3, progress=False,
        device=args.device,
    )  # fmt: skip
    _sync(args.device)
    return time.perf_counter() - t0


def run_plain(args: argparse.Namespace, views: list[np.ndarray]) -> float:
    """The bare loop: gather a batch, run the heads, the loss, backward, clip, AdamW step."""
    dev = torch.device(args.device)
    heads = [h.to(dev) for h in _heads(args, len(views))]
    loss = build_loss(args.loss, len(views)).to(dev)
    params = [p for m in (*heads, loss) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    data = [torch.from_numpy(v) for v in views]
    n = data[0].shape[0]
    t0 = time.perf_counter()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    for s in range(n // args.batch):
        idx = perm[s * args.batch : (s + 1) * args.batch]
        zs = [h(v[idx].to(dev)) for h, v in zip(heads, data, strict=True)]
        total = loss(*zs)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    _sync(args.device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=4, help="timed optimiser steps (one epoch of steps × batch items)")
    ap.add_argument("--d-in", type=int, default=384)
    ap.add_argument("--d-out", type=int, default=512)
    ap.add_argument("--expansion", type=int, default=2, help="StarMLP hidden width = expansion · d_in")
    ap.add_argument("--loss", default="pairwise_infonce", help="a registered loss taking 2 and 3 views")
    ap.add_argument("--views", default="2,3", help="comma-separated view counts; the first is the ratio's base")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved timings per configuration; the best is kept")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="tiny configuration for a smoke check (seconds)")
    ap.add_argument("--out", type=Path, help="JSONL file to write (default: bench/results/nway_trainer.jsonl)")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.steps, args.d_in, args.d_out, args.expansion, args.repeats = 256, 2, 64, 64, 1, 1
    torch.set_num_threads(args.threads)
    counts = [int(v) for v in args.views.split(",")]
    n = args.steps * args.batch
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((n, args.d_in), dtype=np.float32) for _ in range(max(counts))]

    impls = {"fit_heads": run_fit_heads, "plain": run_plain}
    for fn, k in itertools.product(impls.values(), counts):  # warm-up: one step each (allocator, kernels)
        fn(argparse.Namespace(**{**vars(args), "steps": 1}), [v[: args.batch] for v in data[:k]])
    load_before = os.getloadavg()
    best: dict[tuple[str, int], float] = {}
    for _ in range(args.repeats):
        for (name, fn), k in itertools.product(impls.items(), counts):
            wall = fn(args, data[:k])
            best[(name, k)] = min(best.get((name, k), float("inf")), wall)
    load_after = os.getloadavg()

    rows = []
    base = counts[0]
    for (name, k), wall in best.items():
        rows.append({
            "type": "result", "impl": name, "views": k, "items": n, "wall_s": wall, "step_s": wall / args.steps,
            "pairs_per_s": n / wall, "ratio_vs_base_views": best[(name, base)] / wall,
            "overhead_vs_plain": wall / best[("plain", k)],
        })  # fmt: skip
    header = {
        "type": "header", "script": "bench/nway_trainer.py", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(args.threads), "config": vars(args), "load_avg_before": load_before,
        "load_avg_after": load_after,
    }  # fmt: skip
    out = results_path("nway_trainer", args)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(json.dumps(r, default=str) + "\n" for r in [header, *rows]))

    print(
        f"StarMLP (expansion {args.expansion}) heads, {args.loss}, batch {args.batch}, d_in {args.d_in} → d_out "
        f"{args.d_out}, {args.steps} steps, {args.threads} threads, {args.device}; load average {load_before[0]:.2f} "
        f"before, {load_after[0]:.2f} after\n"
    )
    print(f"| impl | views | pairs/s | s/step | × vs {base} views | × vs plain |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['impl']} | {r['views']} | {r['pairs_per_s']:,.0f} | {r['step_s']:.3f} | "
            f"{r['ratio_vs_base_views']:.2f} | {r['overhead_vs_plain']:.2f} |"
        )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
