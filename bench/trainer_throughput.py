"""Trainer throughput: ``fit_heads`` with two StarMLP heads and the SigLIP loss, against the fp32 matmul roofline.

Configuration (issue 4): batch 4,096 pairs (or ``--batch 32768``), d_in = 384 on both sides, d_out = 512,
StarMLP expansion 8 (hidden 3,072), AdamW, float32 on CPU. One step's useful FLOPs are counted from the matrix
products only:

    forward  = Σ_heads 2·B·(2·d_in·h + h·d_out)   (f1, f2, g of each head)
             + 2·B·B·d_out                        (the B×B SigLIP logits)
    step     ≈ 3 × forward                        (backward ≈ twice the forward products)

The SigLIP loss runs with ``--impl`` (default ``auto``: the blocked kernel of ``alignkit.align.losses.siglip``,
which keeps σ(ℓ) for backward up to 2²⁵ logits and recomputes row blocks above, i.e. at B = 32,768 one more
B×B×d_out product per step that is *not* counted as useful work). ``--impl dense`` is the autograd reference
(it needs several B×B fp32 copies: about 4.3 GB each at B = 32,768).

The roofline is the best measured rate of one large ``torch.mm`` (4,096³, fp32) on the same threads;
``% of roofline = step FLOPs / step time / matmul rate``. Element-wise work (LayerNorm, ReLU6, clamps,
softplus, AdamW on ~5.5 M parameters) is not counted, so 100 % is not reachable.

Usage: ``python bench/trainer_throughput.py [--threads T] [--steps S] [--batch B] [--impl I] [--no-warmup]``.
Run one batch size per process so that the peak RSS (``ru_maxrss``) belongs to it. Prints a summary and
appends to ``bench/results/trainer_throughput.jsonl`` (or ``--out FILE``; a header line with the machine and load
average, then one result line with pairs/s, s/step, GFLOP/s, % of the torch.mm roofline and peak RSS).
``--quick``: batch 512, 2 steps, d_in 128, d_out 128, expansion 2, a 1,024³ roofline; a smoke check of a few
seconds that appends to a temporary file instead (see ``_common.quick_dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, peak_kib, quick_dir
from alignkit.align.heads import StarMLP
from alignkit.align.losses import SigLIP
from alignkit.align.trainer import fit_heads
from alignkit.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "trainer_throughput.jsonl"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_rate(n: int = 4096, repeats: int = 3, device: str = "cpu") -> float:
    """Best fp32 GFLOP/s of ``torch.mm`` on n×n matrices (2n³ FLOPs)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def step_flops(batch: int, d_in: int, d_out: int, expansion: int) -> dict[str, float]:
    h = expansion * d_in
    heads = 2 * (2.0 * batch * (2 * d_in * h + h * d_out))
    logits = 2.0 * batch * batch * d_out
    return {"forward_heads": heads, "forward_logits": logits, "step": 3.0 * (heads + logits)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=3, help="timed optimizer steps (one epoch of steps × batch pairs)")
    ap.add_argument("--d-in", type=int, default=384)
    ap.add_argument("--d-out", type=int, default=512)
    ap.add_argument("--expansion", type=int, default=8)
    ap.add_argument("--impl", choices=("auto", "dense", "blocked"), default="auto", help="SigLIP implementation")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed one-step warm-up run (large batches)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (fp32 matmuls; the roofline is measured there)")
    ap.add_argument("--quick", action="store_true", help="tiny configuration for a smoke check (seconds)")
    ap.add_argument("--out", type=Path, help=f"JSONL file to append to (default: {RESULTS.relative_to(ROOT)})")
    args = ap.parse_args()
    mm_size = 4096
    if args.quick:
        args.batch, args.steps, args.d_in, args.d_out, args.expansion, mm_size = 512, 2, 128, 128, 2, 1024
    results = args.out or (quick_dir() / RESULTS.name if args.quick else RESULTS)
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    n = args.steps * args.batch
    X = rng.standard_normal((n, args.d_in), dtype=np.float32)
    Y = rng.standard_normal((n, args.d_in), dtype=np.float32)

    def run(rows: int) -> float:
        torch.manual_seed(0)
        hx = StarMLP(args.d_in, args.d_out, expansion=args.expansion)
        hy = StarMLP(args.d_in, args.d_out, expansion=args.expansion)
        t0 = time.perf_counter()
        loss = SigLIP(impl=args.impl)
        fit_heads(
            X[:rows], Y[:rows], hx, hy, loss, batch_size=args.batch, epochs=1, lr=1e-3, progress=False,
            device=args.device,
        )  # fmt: skip
        _sync(args.device)
        return time.perf_counter() - t0

    load_before = os.getloadavg()
    if not args.no_warmup:
        run(args.batch)  # warm-up: one step (allocator, kernels)
    gflops_mm = matmul_rate(mm_size, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    wall = run(n)
    gflops_mm = max(
        gflops_mm, matmul_rate(mm_size, device=args.device)
    )  # bracket the run: contention on a shared machine varies
    load_after = os.getloadavg()
    flops = step_flops(args.batch, args.d_in, args.d_out, args.expansion)
    step_s = wall / args.steps
    achieved = flops["step"] / step_s / 1e9
    row = {
        "type": "result",
        "config": {k: v for k, v in vars(args).items()},
        "pairs": n,
        "wall_s": wall,
        "step_s": step_s,
        "pairs_per_s": n / wall,
        "step_gflop": flops["step"] / 1e9,
        "forward_gflop_heads": flops["forward_heads"] / 1e9,
        "forward_gflop_logits": flops["forward_logits"] / 1e9,
        "achieved_gflops": achieved,
        "matmul_gflops_fp32": gflops_mm,
        "pct_of_roofline": 100.0 * achieved / gflops_mm,
        "peak_rss_gib": peak_kib() / 2**20,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
    }
    header = {
        "type": "header",
        "script": "bench/trainer_throughput.py",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(args.threads),
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    previous = results.read_text(encoding="utf-8") if results.exists() else ""
    atomic_write_text(results, previous + json.dumps(header, default=str) + "\n" + json.dumps(row, default=str) + "\n")
    gpu_mem = "" if row["peak_gpu_gib"] is None else f", peak GPU memory {row['peak_gpu_gib']:.2f} GiB"
    print(
        f"StarMLP×2 + SigLIP ({args.impl}), batch {args.batch}, d_in {args.d_in} → d_out {args.d_out}, "
        f"{args.threads} threads:\n"
        f"  {n / wall:,.0f} pairs/s ({step_s:.2f} s/step, {flops['step'] / 1e9:.0f} GFLOP/step)\n"
        f"  achieved {achieved:.1f} GFLOP/s vs fp32 torch.mm {gflops_mm:.1f} GFLOP/s → "
        f"{row['pct_of_roofline']:.0f}% of roofline\n  peak RSS {row['peak_rss_gib']:.2f} GiB{gpu_mem}; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after\n  appended to {results}"
    )


if __name__ == "__main__":
    main()
