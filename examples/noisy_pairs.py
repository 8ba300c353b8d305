"""Noisy pairs: do the lowest alignment levels (NoC) catch mismatched image ↔ caption pairs on Fashion-MNIST?

NoC (Kang, Mun, Lee, Kim, Kim & Kim, "Noise-aware Learning from Web-crawled Image-Text Data for Image
Captioning", ICCV 2023) buckets each training pair's image–text cosine into equal-width *alignment levels*
and conditions a captioner on them. Its premise, tested here: pairs whose caption does not describe the
image land in the lowest levels.

Data: the Fashion-MNIST pairs of ``zero_shot_fashion.py`` (``examples/_data.py:fashion_pairs``): ``--n-train``
images of ``train`` through ``offline:mobilenet-v2`` (``--input-size`` px, final pooled layer), each paired with
its class name in one of the 5 CLIP-style templates through ``offline:minilm-l6`` (final); ``--n-test`` images of
``t10k`` for zero-shot. Per seed, ``--noise`` of the training pairs are corrupted: the caption's class is
replaced by a different class drawn uniformly (same template), seeded by ``1000 + seed``.

Per seed (0, 1, 2 by default):

1. fit ``HeadAligner(head="linear", loss="infonce", d_out=256, epochs=5, batch_size=256, lr=1e-3)`` — the
   configuration of ``zero_shot_fashion.py`` (its only 3-seed head, 0.842 top-1 at the last block) — on the
   noisy training pairs;
2. score every training pair by its cosine in the aligned space and fit NoC levels on those scores:
   ``alignkit.diagnose("alignment_levels", Zx, Zy, n_bins=8)`` (equal-width bins between the minimum and the
   maximum score, :class:`alignkit.diagnostics.quality.AlignmentLevels`);
3. detection of the corrupted pairs: AUROC of −cosine (and of −level), precision / recall of "level ≤ 1",
   of "the bottom levels that first hold ≥ ``--noise`` of the pairs" and (not NoC, for comparison) of "the
   ``--noise`` share of lowest cosines"; the level histogram split into clean and corrupted pairs;
4. filtering: refit the same head (same seed) on the kept pairs and measure zero-shot top-1 on the test
   images (prototypes = mean of the 5 templates' aligned caption embeddings), for: no corruption (``clean``,
   the ceiling), the noisy pairs unfiltered (``noisy``; the model of step 1), NoC levels ≤ 1 removed, the
   bottom ≈ ``--noise`` levels removed (``noc-bottom``), the ``--noise`` lowest cosines removed
   (``cosine-bottom``), a random ``--noise`` removed, and exactly the corrupted removed (``oracle``).

Run (from the repository root; embeddings cached in ``$TMPDIR/alignkit-exp-cache``)::

    export ALIGNKIT_DATA=DIR    # holds fashion-mnist/ (or pass --data-dir DIR)
    .venv/bin/python examples/noisy_pairs.py                       # writes examples/results/noisy_pairs.jsonl
    .venv/bin/python examples/noisy_pairs.py --table examples/results/noisy_pairs.jsonl

Data: the Fashion-MNIST IDX files in ``DIR/fashion-mnist/`` with ``--data-dir DIR`` or ``ALIGNKIT_DATA=DIR`` (or
``--data FOLDER`` naming that folder).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

import alignkit
from _data import DEFAULT_CACHE, add_data_dir, data_path, fashion_pairs
from alignkit.align import HeadAligner
from alignkit.evaluate import summarize, zero_shot
from alignkit.io import atomic_write_text

HERE = Path(__file__).resolve().parent
FASHION = "fashion-mnist"  # below --data-dir / $ALIGNKIT_DATA
#: filtering conditions, in table order
CONDITIONS = ("clean", "noisy", "noc-level<=1", "noc-bottom", "cosine-bottom", "random", "oracle")


def corrupt(y: np.ndarray, fraction: float, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(caption class per pair, corrupted mask): ``round(fraction·n)`` pairs get a uniformly drawn *other* class."""
    rng = np.random.default_rng(1000 + seed)
    bad = np.zeros(y.size, dtype=bool)
    bad[rng.choice(y.size, size=round(fraction * y.size), replace=False)] = True
    y_cap = y.copy()
    y_cap[bad] = (y[bad] + rng.integers(1, n_classes, size=int(bad.sum()))) % n_classes
    return y_cap, bad


def make_head(args: argparse.Namespace, seed: int) -> HeadAligner:
    return HeadAligner(
        head="linear", loss="infonce", d_out=args.d_out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=seed,
    )  # fmt: skip


def precision_recall(flag: np.ndarray, bad: np.ndarray) -> tuple[float, float]:
    tp = int(np.sum(flag & bad))
    return (tp / int(flag.sum()) if flag.any() else float("nan")), tp / int(bad.sum())


def run_seed(d: dict[str, Any], args: argparse.Namespace, seed: int) -> list[dict[str, Any]]:
    T, C = d["T"], len(d["classes"])
    X, txt, y = d["img_tr"], d["txt"], d["y_tr"]
    y_cap, bad = corrupt(y, args.noise, C, seed)
    cap_noisy, cap_clean = txt[y_cap * T + d["tpl_tr"]], txt[y * T + d["tpl_tr"]]
    base = {"seed": seed, "n_train": int(y.size), "noise": args.noise, "n_bins": args.n_bins}
    rows: list[dict[str, Any]] = []

    def row(metric: str, value: float, **tags: Any) -> None:
        rows.append({"metric": metric, "value": float(value), **base, **tags})

    # 1-2: fit on the noisy pairs, score each training pair, NoC levels on those scores
    t0 = time.perf_counter()
    noisy_model = make_head(args, seed).fit(X, cap_noisy)
    fit_s = time.perf_counter() - t0
    zx, zy = noisy_model.transform_x(X), noisy_model.transform_y(cap_noisy)
    lv = alignkit.diagnose("alignment_levels", zx, zy, n_bins=args.n_bins)
    s, levels, counts = lv.scores, lv.levels, lv.counts
    # 3: detection
    row("auroc_neg_cosine", roc_auc_score(bad, -s))
    row("auroc_neg_level", roc_auc_score(bad, -levels))
    row("mean_cosine_clean", s[~bad].mean())
    row("mean_cosine_corrupted", s[bad].mean())
    row("edge_min", lv.edges[0])
    row("edge_max", lv.edges[-1])
    row("bin_width", lv.edges[1] - lv.edges[0])
    cut = int(np.searchsorted(np.cumsum(counts), args.noise * y.size))  # first level where the share reaches noise
    low = np.zeros(y.size, dtype=bool)  # not NoC: exactly the noise share of pairs with the lowest cosines
    low[np.argsort(s, kind="stable")[: round(args.noise * y.size)]] = True
    for rule, flag in (("level<=1", levels <= 1), ("bottom", levels <= cut), ("cosine-bottom", low)):
        p, r = precision_recall(flag, bad)
        if rule != "cosine-bottom":
            row("flag_max_level", 1 if rule == "level<=1" else cut, rule=rule)
        row("flag_fraction", flag.mean(), rule=rule)
        row("flag_precision", p, rule=rule)
        row("flag_recall", r, rule=rule)
    for lev in range(lv.n_bins):
        row("level_count", np.sum((levels == lev) & ~bad), level=lev, group="clean")
        row("level_count", np.sum((levels == lev) & bad), level=lev, group="corrupted")
    for c in range(C):  # how many of the corrupted pairs of true class c the bottom levels catch
        m = bad & (y == c)
        row("bottom_recall_by_true_class", np.mean(levels[m] <= cut), cls=d["classes"][c], n=int(m.sum()))
    auc = rows[0]["value"]
    print(
        f"seed {seed}: fit {fit_s:.0f}s; AUROC(-cos) {auc:.3f}; levels {counts.tolist()} (bottom ≤ {cut})", flush=True
    )

    # 4: filtering, refit, zero-shot
    rng = np.random.default_rng(2000 + seed)
    random_keep = np.ones(y.size, dtype=bool)
    random_keep[rng.choice(y.size, size=round(args.noise * y.size), replace=False)] = False
    keeps = {
        "clean": (np.ones(y.size, dtype=bool), cap_clean),
        "noisy": (np.ones(y.size, dtype=bool), cap_noisy),
        "noc-level<=1": (levels > 1, cap_noisy),
        "noc-bottom": (levels > cut, cap_noisy),
        "cosine-bottom": (~low, cap_noisy),
        "random": (random_keep, cap_noisy),
        "oracle": (~bad, cap_noisy),
    }
    for cond in args.conditions:
        keep, cap = keeps[cond]
        t0 = time.perf_counter()
        model = noisy_model if cond == "noisy" else make_head(args, seed).fit(X[keep], cap[keep])
        took = time.perf_counter() - t0
        tags = {
            "condition": cond, "n_kept": int(keep.sum()),
            "corrupted_kept": 0.0 if cond == "clean" else float(bad[keep].mean()),
            "fit_seconds": round(fit_s if cond == "noisy" else took, 2),
        }  # fmt: skip
        out = zero_shot(model.transform_x(d["img_te"]), model.transform_y(txt), d["y_te"], templates_per_class=T)
        for r in out:
            if r["metric"] in ("top1", "mean_class_top1"):
                row(f"zeroshot_{r['metric']}", r["value"], **tags)
        top1 = next(r["value"] for r in out if r["metric"] == "top1")
        print(f"  {cond:13s} kept {tags['n_kept']:5d} (corrupted {tags['corrupted_kept']:.3f}): top1 {top1:.3f}")
    return rows


# --------------------------------------------------------------------------------------------- tables


def _cell(s: dict[str, Any] | None, scale: float = 1.0, digits: int = 3) -> str:
    if s is None:
        return "–"
    ci = "" if s["n"] < 2 else f" ± {s['ci_halfwidth'] * scale:.{digits}f}"
    return f"{s['mean'] * scale:.{digits}f}{ci}"


def _levels(s: dict[str, Any] | None) -> str:
    """The highest flagged level: one number when every seed agrees, else its mean and range."""
    if s is None:
        return "–"
    if s["std"] == 0 or s["n"] < 2:
        return f"≤ {s['mean']:.0f}"
    return f"≤ {s['mean']:.1f} (seeds differ)"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: detection, the level histogram by clean/corrupted, zero-shot after filtering (mean ± 95 % CI)."""
    seeds = sorted({r["seed"] for r in rows})
    n_tr = rows[0]["n_train"]
    summ = summarize(rows, by=("rule", "level", "group", "condition", "cls"))
    get = {
        (s["metric"], s.get("rule"), s.get("level"), s.get("group"), s.get("condition"), s.get("cls")): s for s in summ
    }

    def g(metric: str, **k: Any) -> dict[str, Any] | None:
        return get.get((metric, k.get("rule"), k.get("level"), k.get("group"), k.get("condition"), k.get("cls")))

    out = [f"(a) detection of the corrupted pairs ({n_tr} training pairs, seeds {seeds}; mean ± 95 % CI)", ""]
    out += ["| score | AUROC |", "|---|---|"]
    out += [f"| −cosine | {_cell(g('auroc_neg_cosine'))} |", f"| −level (8 bins) | {_cell(g('auroc_neg_level'))} |"]
    out += ["", "| rule | levels flagged | flagged share | precision | recall |", "|---|---|---|---|---|"]
    rules = (
        ("level<=1", "NoC level ≤ 1"),
        ("bottom", "NoC: the bottom levels first holding ≥ noise share"),
        ("cosine-bottom", "not NoC: the noise share of lowest cosines"),
    )
    for rule, name in rules:
        top = g("flag_max_level", rule=rule)
        out.append(
            f"| {name} | {_levels(top)} | {_cell(g('flag_fraction', rule=rule))}"
            f" | {_cell(g('flag_precision', rule=rule))} | {_cell(g('flag_recall', rule=rule))} |"
        )
    out += [
        "",
        f"mean cosine: clean {_cell(g('mean_cosine_clean'))}, corrupted {_cell(g('mean_cosine_corrupted'))}; "
        f"edges from {_cell(g('edge_min'))} to {_cell(g('edge_max'))}, bin width {_cell(g('bin_width'))}",
    ]
    levels = sorted({r["level"] for r in rows if r["metric"] == "level_count"})
    out += ["", "(b) pairs per level (mean over seeds; level 0 = lowest cosine)", ""]
    out += ["| level | clean | corrupted | corrupted share of the level |", "|---|---|---|---|"]
    for lev in levels:
        c = g("level_count", level=lev, group="clean")
        b = g("level_count", level=lev, group="corrupted")
        cm, bm = (c["mean"] if c else 0.0), (b["mean"] if b else 0.0)
        share = f"{bm / (cm + bm):.3f}" if cm + bm > 0 else "–"
        out.append(f"| {lev} | {cm:.0f} | {bm:.0f} | {share} |")
    classes = list(dict.fromkeys(r["cls"] for r in rows if r["metric"] == "bottom_recall_by_true_class"))
    if classes:
        out += ["", "recall of the bottom levels by the image's true class: " + ", ".join(
            f"{c} {_cell(g('bottom_recall_by_true_class', cls=c), digits=2)}" for c in classes)]  # fmt: skip
    conds = [c for c in CONDITIONS if g("zeroshot_top1", condition=c)]
    top1 = {(r["condition"], r["seed"]): r for r in rows if r["metric"] == "zeroshot_top1"}
    out += ["", "(c) zero-shot top-1 on the test images after refitting on the kept pairs", ""]
    out += ["| training pairs | kept | corrupted among kept | top-1 | Δ top-1 vs noisy (paired by seed) |"]
    out += ["|---|---|---|---|---|"]
    for c in conds:
        ks = [top1[(c, s)] for s in seeds if (c, s) in top1]
        diffs = [
            {"metric": "delta", "value": top1[(c, s)]["value"] - top1[("noisy", s)]["value"]}
            for s in seeds
            if (c, s) in top1 and ("noisy", s) in top1
        ]
        delta = summarize(diffs, by=())[0] if diffs and c != "noisy" else None
        out.append(
            f"| {c} | {np.mean([k['n_kept'] for k in ks]):.0f} | {np.mean([k['corrupted_kept'] for k in ks]):.3f} "
            f"| {_cell(g('zeroshot_top1', condition=c))} | {'' if delta is None else _cell(delta, digits=4)} |"
        )
    return "\n".join(out)


def load_rows(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]


def save(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_dir(p, f"{FASHION}/*-idx?-ubyte.gz")
    p.add_argument("--data", type=Path, default=None, help=f"the folder of the IDX files (default: DATA_DIR/{FASHION})")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--out", type=Path, default=HERE / "results" / "noisy_pairs.jsonl")
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--input-size", type=int, default=112)
    p.add_argument("--noise", type=float, default=0.2, help="share of training pairs whose caption gets a wrong class")
    p.add_argument("--n-bins", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    p.add_argument("--d-out", type=int, default=256)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", type=Path, nargs="+", default=None, metavar="JSONL", help="print the tables and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.table:
        print(table(load_rows(args.table)))
        return
    args.data = data_path(args, FASHION, override=args.data, what="Fashion-MNIST (IDX files)")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    d = fashion_pairs(
        args.data, n_train=args.n_train, n_test=args.n_test, data_seed=args.data_seed, input_size=args.input_size,
        cache=args.cache,
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        rows += run_seed(d, args, seed)
        save(args.out, rows)
    print(f"\n{len(rows)} rows -> {args.out}; wall time {time.perf_counter() - t0:.0f}s\n")
    print(table(rows))


if __name__ == "__main__":
    main()
