"""Where do classes become separable? Layer profiles of class diagnostics, run as declarative runs.

Two runs, each a template under ``examples/configs/`` whose paths this script fills in (``${FASHION}``,
``${BOOKS}``, ``${CACHE}``, ``${OUTPUT}``); the filled copy is written next to the run's results
(``<output>/<name>.yaml``) and run with :func:`alignkit.pipeline.run`, so ``alignkit run`` on that copy
gives the same tables.

- ``fashion`` (``class_separation_fashion.yaml``): the 10,000 Fashion-MNIST test images through
  ``offline:mobilenet-v2`` (every block), 5,000 of them diagnosed: separability probe, Fisher J, Thornton
  and H0 persistence per block, with subsampling intervals.
- ``bible`` (``class_separation_bible.yaml``): English WEB verses through ``offline:minilm-l6`` and
  ``offline:e5-small`` (every layer), labelled by book (66 classes) and by testament (OT/NT). The verses file
  has no label column, so a labelled TSV is derived first (``ref → book, testament``): a book-stratified
  sample of at most ``--per-book`` verses per book (every verse of shorter books), seeded by
  ``--data-seed``, written into the cache folder.

Data: ``DIR/fashion-mnist/t10k-{images-idx3,labels-idx1}-ubyte.gz`` and ``DIR/bible/verses.tsv.gz`` with
``--data-dir DIR`` or ``ALIGNKIT_DATA=DIR``.

    python examples/class_separation.py --parts fashion bible          # both runs (embeds on first use)
    python examples/class_separation.py --parts bible --dry-run        # the plan only
    python examples/class_separation.py --parts fashion --summary-only # re-read a finished run's tables

Writes ``examples/results/class_separation_<part>.csv`` (one row per space × diagnostic × layer) and prints
the tables.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import string
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _data import DEFAULT_CACHE, add_data_dir, data_path

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
RESULTS = HERE / "results"
#: where the runs write their folders (tables, plots, report.html, job outputs)
DEFAULT_RUNS = Path(tempfile.gettempdir()) / "alignkit-exp-runs"
VERSES = "bible/verses.tsv.gz"  # below --data-dir / $ALIGNKIT_DATA
FASHION = "fashion-mnist"
#: the 39 books of the Old Testament, in the OSIS abbreviations of the verses file (the other 27 are the New)
OT_BOOKS = (
    "Gen Exod Lev Num Deut Josh Judg Ruth 1Sam 2Sam 1Kgs 2Kgs 1Chr 2Chr Ezra Neh Esth Job Ps Prov Eccl Song "
    "Isa Jer Lam Ezek Dan Hos Joel Amos Obad Jonah Mic Nah Hab Zeph Hag Zech Mal"
).split()
RUNS = {"fashion": "class_separation_fashion", "bible": "class_separation_bible"}


def fill_config(template: Path, values: dict[str, Any], target: Path) -> Path:
    """``template`` with ``${NAME}`` replaced by ``values`` (paths), written to ``target``."""
    text = string.Template(template.read_text(encoding="utf-8")).substitute({k: str(v) for k, v in values.items()})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def run_config(path: Path, *, dry_run: bool, threads: int) -> Path:
    """Plan (``dry_run``) or run the config at ``path``; returns the run folder."""
    import torch
    from threadpoolctl import threadpool_limits

    from alignkit.pipeline import load_config, plan_run, run

    cfg = load_config(path)
    if dry_run:
        plan = plan_run(cfg)
        for row in plan.rows():
            print(f"  {row['job']:<48} {row['status']:<8} {row['work']}")
        return plan.run_dir
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    with threadpool_limits(threads):
        result = run(cfg, progress=False)
    print(f"{cfg.name}: {time.perf_counter() - t0:.0f}s -> {result.run_dir} (report: {result.report})")
    for job, sec in sorted(result.outcome.seconds.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {job:<48} {sec:7.1f}s")
    return result.run_dir


# ------------------------------------------------------------------------------------------- Bible labels


def books_tsv(verses: Path, target: Path, per_book: int, seed: int) -> Path:
    """A labelled TSV (``ref``, ``book``, ``testament``, ``en_web``, ``es_rv1909``) of at most ``per_book``
    verses per book (all of a shorter book), drawn with ``default_rng(seed)``, in Bible order."""
    by_book: dict[str, list[dict[str, str]]] = {}
    with gzip.open(verses, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if (row["en_web"] or "").strip() and (row["es_rv1909"] or "").strip():
                by_book.setdefault(row["ref"].split(".")[0], []).append(row)
    if len(by_book) != 66 or not set(OT_BOOKS) <= set(by_book):
        raise SystemExit(f"{verses}: expected the 66 books in OSIS abbreviations; got {len(by_book)}")
    rng = np.random.default_rng(seed)
    out = []
    for book, rows in by_book.items():  # file order = Bible order
        keep = np.arange(len(rows)) if len(rows) <= per_book else np.sort(rng.choice(len(rows), per_book, False))
        out += [(rows[i], book) for i in keep]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, lineterminator="\n")
        w.writerow(["ref", "book", "testament", "en_web", "es_rv1909"])
        for row, book in out:
            testament = "OT" if book in OT_BOOKS else "NT"
            w.writerow([row["ref"], book, testament, row["en_web"].strip(), row["es_rv1909"].strip()])
    tmp.replace(target)
    n_ot = sum(b in OT_BOOKS for _, b in out)
    print(f"{target}: {len(out)} verses, {len(by_book)} books (OT {n_ot}, NT {len(out) - n_ot}), ≤{per_book}/book")
    return target


# ------------------------------------------------------------------------------------------- summaries


def summary_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The run's ``diagnostics.parquet`` as flat rows, with a few details (chance, AUROC, H0 summaries) spread."""
    import pandas as pd

    df = pd.read_parquet(run_dir / "diagnostics.parquet")
    keep = ("chance", "auroc", "f1", "regularised", "mean", "median", "std", "above", "quantile_values", "n_classes")
    rows = []
    for r in df.to_dict("records"):
        details = json.loads(r.pop("details") or "{}")
        r.update({k: details[k] for k in keep if k in details})
        rows.append(r)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in cols})


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple, np.ndarray)):
        return json.dumps([round(float(x), 6) for x in v])
    return v


def table(rows: list[dict[str, Any]], space: str) -> str:
    """Markdown: one row per layer, one column per diagnostic of ``space`` (value [CI])."""
    mine = [r for r in rows if r["space"] == space]
    diags = list(dict.fromkeys(r["diagnostic"] for r in mine))
    layers = list(dict.fromkeys(r["layer"] for r in sorted(mine, key=lambda r: r["index"])))
    cell = {(r["diagnostic"], r["layer"]): r for r in mine}
    lines = [f"| {space} layer | " + " | ".join(diags) + " |", "|---" * (1 + len(diags)) + "|"]
    for layer in layers:
        out = []
        for d in diags:
            r = cell.get((d, layer))
            if r is None:
                out.append("")
                continue
            ci = "" if r.get("ci_low") is None or np.isnan(r["ci_low"]) else f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
            out.append(f"{r['value']:.3g}{ci}")
        lines.append(f"| {layer} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def summarize(run_dir: Path, part: str) -> None:
    rows = summary_rows(run_dir)
    out = RESULTS / f"{RUNS[part]}.csv"
    write_csv(rows, out)
    print(f"{len(rows)} rows -> {out}")
    for space in dict.fromkeys(r["space"] for r in rows):
        print(f"\n{table(rows, space)}")


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir(p, f"{FASHION}/ and {VERSES}")
    p.add_argument("--parts", nargs="+", choices=sorted(RUNS), default=sorted(RUNS))
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding store (and the derived TSV)")
    p.add_argument("--output", type=Path, default=DEFAULT_RUNS, help="run folders go to OUTPUT/<name>/")
    p.add_argument("--per-book", type=int, default=80, help="verses per book at most (bible part)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the verse sample")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    p.add_argument("--dry-run", action="store_true", help="print the plans, run nothing")
    p.add_argument("--summary-only", action="store_true", help="only re-read finished runs' tables")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cache, output = args.cache.resolve(), args.output.resolve()
    for part in args.parts:
        values: dict[str, Any] = {"CACHE": cache, "OUTPUT": output}
        if part == "fashion":
            images = data_path(args, f"{FASHION}/t10k-images-idx3-ubyte.gz", what="Fashion-MNIST test images")
            data_path(args, f"{FASHION}/t10k-labels-idx1-ubyte.gz", what="Fashion-MNIST test labels")
            values["FASHION"] = images.parent.resolve()
        else:
            verses = data_path(args, VERSES, what="the parallel Bible verses")
            name = f"bible-books-{args.per_book}-s{args.data_seed}.tsv"
            target = cache / "derived" / name
            values["BOOKS"] = target if target.exists() else books_tsv(verses, target, args.per_book, args.data_seed)
        filled = fill_config(CONFIGS / f"{RUNS[part]}.yaml", values, output / f"{RUNS[part]}.yaml")
        print(f"config: {filled}")
        run_dir = output / RUNS[part].replace("_", "-")
        if not args.summary_only:
            run_dir = run_config(filled, dry_run=args.dry_run, threads=args.threads)
        if not args.dry_run:
            summarize(run_dir, part)


if __name__ == "__main__":
    main()
