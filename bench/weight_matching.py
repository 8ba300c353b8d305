"""Git Re-Basin weight matching of two wide CNNs: ``alignkit.weights.match`` vs a plain per-layer loop.

ours    ``alignkit.weights.match(a, b)``: spec derived from the module graph, input checks, float64 reshaped copies
        of every weight made once, each cost term kept until a permutation it depends on changes (groups whose
        neighbours did not change are skipped), the objective recorded after every sweep, the permuted copy built.
naive   the coordinate descent as usually written (samuela/git-re-basin ``weight_matching``): a hand-written spec
        (``axes_to_perm``); at every visit of a group, scan all tensors, convert to float64, permute every other
        axis of W_b from scratch, reshape, multiply, sum; same random group order, same 1e-12 rule, same stop.

Both must return the same permutations (asserted); the derived spec must equal the hand-written one (asserted).
Networks: the zoo CNN shape, (Conv 3×3 no bias, BatchNorm, ReLU)×6 with MaxPool after every 2nd block, global
average pool, Linear(width, 10), ``width`` channels in every conv layer, two independent random initialisations
(seeds 1 and 2; BatchNorm scales drawn around 1 so they are not all equal). Target: ≤ 10 s at width 256 on 2 cores
(width 512 is for the trend; there the assignments dominate: scipy's ``linear_sum_assignment`` on 512 × 512).
ours and naive alternate run by run; best of ``--repeats``. Full run: ``python bench/weight_matching.py`` (widths
256 and 512, ~2–4 minutes).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

import _common as C

TARGET_S = 10.0
TARGET_WIDTH = 256


def cnn(width: int, seed: int) -> tuple[Any, dict[str, tuple[str | None, ...]], list[str]]:
    """The network, its hand-written spec (key → group per axis) and the group names in order."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    axes: dict[str, tuple[str | None, ...]] = {}
    groups: list[str] = []
    c, prev = 1, None
    for i in range(6):
        conv, bn = len(layers), len(layers) + 1
        layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        g = str(conv)
        groups.append(g)
        axes[f"{conv}.weight"] = (g, prev, None, None)
        for t in ("weight", "bias", "running_mean", "running_var"):
            axes[f"{bn}.{t}"] = (g,)
        axes[f"{bn}.num_batches_tracked"] = ()
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
        c, prev = width, g
    head = len(layers) + 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)]
    axes[f"{head}.weight"] = (None, prev)
    axes[f"{head}.bias"] = (None,)
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model.eval(), axes, groups


def naive_weight_matching(
    axes: dict[str, tuple[str | None, ...]],
    groups: list[str],
    params_a: dict[str, Any],
    params_b: dict[str, Any],
    *,
    max_iter: int = 100,
    seed: int = 0,
) -> tuple[dict[str, Any], int]:
    """The plain loop: every visit of a group recomputes its cost matrix from the raw tensors."""
    import torch
    from scipy.optimize import linear_sum_assignment

    sizes = {
        g: next(params_a[k].shape[ax] for k, gs in axes.items() if k in params_a for ax, h in enumerate(gs) if h == g)
        for g in groups
    }
    perm = {g: torch.arange(n) for g, n in sizes.items()}
    rng = np.random.default_rng(seed)
    sweeps = 0
    for _ in range(max_iter):
        sweeps += 1
        progress = False
        for gi in rng.permutation(len(groups)):
            p = groups[gi]
            n = sizes[p]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for key, key_axes in axes.items():
                if key not in params_a:
                    continue
                for axis, g in enumerate(key_axes):
                    if g != p:
                        continue
                    wa = params_a[key].double()
                    wb = params_b[key].double()
                    for other, h in enumerate(key_axes):
                        if other != axis and h is not None:
                            wb = wb.index_select(other, perm[h])
                    cost += wa.movedim(axis, 0).reshape(n, -1) @ wb.movedim(axis, 0).reshape(n, -1).T
            _, ci = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(ci, dtype=torch.long)
            rows = torch.arange(n)
            if float(cost[rows, new].sum()) > float(cost[rows, perm[p]].sum()) + 1e-12:
                perm[p] = new
                progress = True
        if not progress:
            break
    return perm, sweeps


def run_width(width: int, args: Any) -> dict[str, Any]:
    import torch

    from alignkit.weights import match, permutation_spec

    C.set_threads(args.threads)
    a, axes, groups = cnn(width, 1)
    b, _, _ = cnn(width, 2)
    derived = permutation_spec(a)
    assert list(derived.groups) == groups, (list(derived.groups), groups)
    for key, entries in derived.axes.items():  # the derived spec is the hand-written one
        assert tuple(e[0] if e else None for e in entries) == axes[key][: len(entries)], key
    params_a = {k: v.detach() for k, v in a.named_parameters()}
    params_b = {k: v.detach() for k, v in b.named_parameters()}
    ours_t, naive_t = [], []
    res = None
    naive_perm, naive_sweeps = None, 0
    for r in range(args.repeats):  # alternate, so load on the machine hits both alike
        for impl in ("ours", "naive") if r % 2 == 0 else ("naive", "ours"):
            t0 = time.perf_counter()
            if impl == "ours":
                res = match(a, b, seed=args.seed)
                ours_t.append(time.perf_counter() - t0)
            else:
                naive_perm, naive_sweeps = naive_weight_matching(axes, groups, params_a, params_b, seed=args.seed)
                naive_t.append(time.perf_counter() - t0)
    assert res is not None and naive_perm is not None
    same = all(torch.equal(res.perms[g], naive_perm[g]) for g in groups)
    assert same, "ours and the naive loop returned different permutations"
    ours, naive = min(ours_t), min(naive_t)
    return {
        "width": width,
        "params": sum(p.numel() for p in a.parameters()),
        "groups": len(groups),
        "sweeps": res.iterations,
        "naive_sweeps": naive_sweeps,
        "converged": res.converged,
        "objective_before": res.objective[0],
        "objective_after": res.objective[-1],
        "ours_s": ours,
        "naive_s": naive,
        "ours_times": ours_t,
        "naive_times": naive_t,
        "speedup": C.ratio(naive, ours),
        "same_perms": same,
        "meets_target": ours <= TARGET_S if width == TARGET_WIDTH else None,  # other widths: for the trend
    }


def main() -> int:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--widths", default="256,512", help="comma-separated channel counts of every conv layer")
    args = p.parse_args()
    args.repeats = max(1, args.repeats)
    if args.quick:
        args.widths, args.repeats = "64", 1
    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    load = _load()
    notes = {
        "data": "two independently initialised zoo-shaped CNNs (6 conv-BN-ReLU blocks, global pool, Linear), "
        "random weights",
        "target": f"ours ≤ {TARGET_S} s at width {TARGET_WIDTH} on 2 cores",
        "load_1min": load,
    }
    res = C.Results("weight_matching", args, notes)
    rows = [res.add(run_width(w, args)) for w in widths]
    print(f"threads = {args.threads}, best of {args.repeats} (alternating), 1-min load before the run = {load}\n")
    cols = [
        ("width", lambda r: r["width"]),
        ("params", lambda r: r["params"]),
        ("sweeps", lambda r: r["sweeps"]),
        ("objective 0 → end", lambda r: f"{r['objective_before']:.4g} → {r['objective_after']:.4g}"),
        ("ours s", lambda r: f"{r['ours_s']:.2f}"),
        ("naive s", lambda r: f"{r['naive_s']:.2f}"),
        ("naive / ours", lambda r: f"{r['speedup']:.2f}"),
        ("same perms", lambda r: r["same_perms"]),
    ]
    print(C.markdown_table(rows, cols))
    print(f"\nresults: {res.path}")
    for r in rows:
        if r["meets_target"] is not None:
            verdict = "meets" if r["meets_target"] else "MISSES"
            print(f"width {r['width']}: ours {r['ours_s']:.2f} s ({verdict} the ≤ {TARGET_S:.0f} s target)")
    return 0


def _load() -> float | None:
    try:
        return round(float(Path("/proc/loadavg").read_text().split()[0]), 2)
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
