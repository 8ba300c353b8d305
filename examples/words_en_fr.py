"""Word translation English → French, supervised and unsupervised, as one declarative run.

Runs ``examples/configs/words_en_fr.yaml``: FreeDict pairs (bli_freedict.py's filter: single lowercase words of
letters), English words through ``offline:minilm-l6`` and French words through ``offline:e5-small`` (final layers).
Supervised centred Procrustes on 5,000 pairs against unsupervised vecmap, MUSE, mini-vec2vec and vec2vec fitted on the
words with the correspondence thrown away (``pairs: none``, shuffled apart), all scored
by ``evaluate.bli`` (P@1/5/10, NN and CSLS, coverage) on the same 1,500 held-out English headwords.

Data: ``DIR/freedict/eng-fra.tsv.gz`` with ``--data-dir DIR`` or ``ALIGNKIT_DATA=DIR`` (GPL, read in place; the
derived TSV goes to the cache folder).

    python examples/words_en_fr.py                 # embed (first use), fit, evaluate, summarise
    python examples/words_en_fr.py --summary-only  # re-read the finished run's tables

Writes ``examples/results/words_en_fr.csv`` (every BLI row) and ``examples/results/words_en_fr_summary.md``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import time
from pathlib import Path
from typing import Any

from _data import DEFAULT_CACHE, add_data_dir, data_path
from alignkit.align.unsupervised import count_converged
from bli_freedict import DICTIONARY, read_dictionary
from class_separation import CONFIGS, DEFAULT_RUNS, RESULTS, fill_config, run_config, write_csv

NAME = "words_en_fr"


def pairs_tsv(dictionary: Path, target: Path) -> Path:
    """One row per (English, French) pair of the filtered dictionary, ids p0, p1, ... in sorted order."""
    gold = read_dictionary(dictionary)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["id", "en", "fr"])
        k = 0
        for en in sorted(gold):
            for fr in sorted(gold[en]):
                w.writerow([f"p{k}", en, fr])
                k += 1
    tmp.replace(target)
    return target


def converged(fits: Any) -> str:
    """ "k/n" restarts converged over these fits ("—" for paired fits, which have none)."""
    ok, n = count_converged(fits["restarts"]) if "restarts" in fits else (0, 0)
    return f"{ok}/{n}" if n else "—"


def summary(run_dir: Path) -> tuple[list[dict[str, Any]], str]:
    """(every BLI row, a markdown table of P@k means ± sd over seeds per experiment × method × scoring)."""
    import pandas as pd

    ev = pd.read_parquet(run_dir / "evaluations.parquet")
    ev = ev[(ev.task == "bli") & ((ev.subset == "strict") | ev.subset.isna())]
    fits = pd.read_parquet(run_dir / "fits.parquet")
    rows = ev.to_dict("records")
    lines = [
        "| experiment | method | scoring | P@1 | P@5 | P@10 | fit s | restarts converged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    p = ev[ev.metric.str.startswith("P@")]
    for (exp, method, scoring), g in p.groupby(["experiment", "method", "scoring"], sort=True):
        cells = []
        for k in (1, 5, 10):
            v = g[g.metric == f"P@{k}"]["value"]
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}")
        fit = fits[(fits.experiment == exp) & (fits.method == method)]
        f = fit["fit_seconds"]
        lines.append(
            f"| {exp} | {method} | {scoring} | "
            + " | ".join(cells)
            + f" | {f.min():.0f}–{f.max():.0f} | {converged(fit)} |"
        )
    return rows, "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir(p, DICTIONARY)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding store (and the derived TSV)")
    p.add_argument("--output", type=Path, default=DEFAULT_RUNS, help="the run folder goes to OUTPUT/<name>/")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--summary-only", action="store_true", help="only re-read the finished run's tables")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cache, output = args.cache.resolve(), args.output.resolve()
    dictionary = data_path(args, DICTIONARY, what="the FreeDict English-French dictionary")
    target = cache / "derived" / "freedict-en-fr-pairs.tsv.gz"
    if not target.exists():
        pairs_tsv(dictionary, target)
    values = {"PAIRS": target, "CACHE": cache, "OUTPUT": output}
    filled = fill_config(CONFIGS / f"{NAME}.yaml", values, output / f"{NAME}.yaml")
    print(f"config: {filled}")
    run_dir = output / NAME.replace("_", "-")
    if not args.summary_only:
        t0 = time.perf_counter()
        run_dir = run_config(filled, dry_run=args.dry_run, threads=args.threads)
        print(f"wall {time.perf_counter() - t0:.0f}s")
    if args.dry_run:
        return
    rows, md = summary(run_dir)
    write_csv(rows, RESULTS / f"{NAME}.csv")
    (RESULTS / f"{NAME}_summary.md").write_text(md + "\n", encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
