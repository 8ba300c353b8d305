"""What does alignment change? Geometry of held-out verses before and after each cross-lingual aligner.

Runs ``examples/configs/alignment_change.yaml`` (a declarative run): English WEB verses through
``offline:minilm-l6`` and Spanish RV1909 verses through ``offline:e5-small`` (final layers), the aligners of
``crosslingual.py`` fitted on 1k and 4k pairs × 3 seeds, evaluated on 1,000 held-out verses by retrieval and
by ``evaluate.diagnose: [modality_gap, paired_cosine, uniformity, anisotropy]``. The verses are the 5,000 that
``crosslingual.py --max-train 4000`` embeds (its test verses, then its pool), derived into a TSV in the cache
folder; the run draws its own 1,000 test verses from them.

Data: ``DIR/bible/verses.tsv.gz`` with ``--data-dir DIR`` or ``ALIGNKIT_DATA=DIR``.

    python examples/alignment_change.py                 # embed (first use), fit, evaluate, summarise
    python examples/alignment_change.py --summary-only  # re-read the finished run's tables

Writes ``examples/results/alignment_change.csv`` (one row per diagnostic × stage × side × method × size × seed)
and ``examples/results/alignment_change_summary.csv`` (means over seeds, with R@1), and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

from _data import DEFAULT_CACHE, add_data_dir, data_path
from class_separation import CONFIGS, DEFAULT_RUNS, RESULTS, fill_config, run_config, write_csv
from crosslingual import VERSES, load_verses, split

NAME = "alignment_change"
DIAGNOSTICS = ("modality_gap", "paired_cosine", "uniformity", "anisotropy")


def verses_tsv(verses: Path, target: Path, n_test: int, n_pool: int, data_seed: int) -> Path:
    """``ref``, ``en_web``, ``es_rv1909`` of crosslingual.py's test verses and pool (in that order)."""
    refs, en, es = load_verses(verses)
    test, pool = split(len(refs), n_test, n_pool, data_seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
        w.writerow(["ref", "en_web", "es_rv1909"])
        for i in [*test, *pool]:
            w.writerow([refs[i], en[i], es[i]])
    tmp.replace(target)
    print(f"{target}: {len(test) + len(pool)} verses (crosslingual.py's {len(test)} test + {len(pool)} pool)")
    return target


def summary(run_dir: Path) -> list[dict[str, Any]]:
    """Seed means (and min/max) of each diagnostic per method × size × stage × side, with R@1 (NN, both ways)."""
    import pandas as pd

    d = pd.read_parquet(run_dir / "aligned_diagnostics.parquet")
    ev = pd.read_parquet(run_dir / "evaluations.parquet")
    ev = ev[(ev.metric == "R@1") & (ev.scoring == "nn")]
    r1 = ev.groupby(["method", "n_train", "direction"])["value"].mean().unstack("direction")
    keys = ["method", "n_train", "diagnostic", "stage", "side"]
    g = d.groupby(keys)["value"].agg(["mean", "min", "max", "count"]).reset_index()
    rows = []
    for r in g.to_dict("records"):
        for direction in r1.columns:
            r[f"R@1 {direction}"] = float(r1.loc[(r["method"], r["n_train"]), direction])
        rows.append(r)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per method × size, before/after columns per diagnostic and side (seed means)."""
    cols = [("modality_gap", "pair"), ("paired_cosine", "pair")]
    cols += [(d, s) for d in ("uniformity", "anisotropy") for s in ("a", "b")]
    cell = {(r["method"], r["n_train"], r["diagnostic"], r["stage"], r["side"]): r for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sizes = sorted({r["n_train"] for r in rows})
    first = next(r for r in rows if r["stage"] == "before")
    head = "| method | n | " + " | ".join(f"{d} ({s})" for d, s in cols) + " | R@1 EN→ES | R@1 ES→EN |"
    lines = [head, "|---" * (4 + len(cols)) + "|"]
    before = []
    for d, s in cols:
        r = cell.get((first["method"], first["n_train"], d, "before", s))
        before.append("–" if r is None else f"{r['mean']:.3f}")
    lines.append("| before (raw spaces) | | " + " | ".join(before) + " | | |")
    for n in sizes:
        for m in methods:
            out = []
            for d, s in cols:
                r = cell.get((m, n, d, "after", s))
                lo, hi = ("", "") if r is None else (f"{r['min']:.3f}", f"{r['max']:.3f}")
                spread = "" if lo == hi else f" ({lo}–{hi})"
                out.append("–" if r is None else f"{r['mean']:.3f}{spread}")
            any_row = next(r for r in rows if r["method"] == m and r["n_train"] == n)
            r1 = [v for k, v in any_row.items() if k.startswith("R@1")]
            lines.append(f"| {m} | {n} | " + " | ".join(out) + " | " + " | ".join(f"{v * 100:.1f}" for v in r1) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir(p, VERSES)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding store (and the derived TSV)")
    p.add_argument("--output", type=Path, default=DEFAULT_RUNS, help="the run folder goes to OUTPUT/<name>/")
    p.add_argument("--n-test", type=int, default=1000, help="crosslingual.py's test verses (kept in the TSV)")
    p.add_argument("--n-pool", type=int, default=4000, help="crosslingual.py's pool (--max-train)")
    p.add_argument("--data-seed", type=int, default=0, help="crosslingual.py's --data-seed")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--summary-only", action="store_true", help="only re-read the finished run's tables")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cache, output = args.cache.resolve(), args.output.resolve()
    verses = data_path(args, VERSES, what="the parallel Bible verses")
    target = cache / "derived" / f"bible-xling-{args.n_test}+{args.n_pool}-s{args.data_seed}.tsv"
    if not target.exists():
        verses_tsv(verses, target, args.n_test, args.n_pool, args.data_seed)
    values = {"VERSES": target, "CACHE": cache, "OUTPUT": output}
    filled = fill_config(CONFIGS / f"{NAME}.yaml", values, output / f"{NAME}.yaml")
    print(f"config: {filled}")
    run_dir = output / NAME.replace("_", "-")
    if not args.summary_only:
        t0 = time.perf_counter()
        run_dir = run_config(filled, dry_run=args.dry_run, threads=args.threads)
        print(f"wall {time.perf_counter() - t0:.0f}s")
    if args.dry_run:
        return
    import pandas as pd

    raw = pd.read_parquet(run_dir / "aligned_diagnostics.parquet").drop(columns="details").to_dict("records")
    write_csv(raw, RESULTS / f"{NAME}.csv")
    rows = summary(run_dir)
    write_csv(rows, RESULTS / f"{NAME}_summary.csv")
    print(f"{len(raw)} rows -> {RESULTS / f'{NAME}.csv'}; seed means -> {RESULTS / f'{NAME}_summary.csv'}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
