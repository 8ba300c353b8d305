"""Speech ↔ text: the tables of examples/README.md from the run ``examples/configs/speech_text.yaml``.

The run (1,000 bundled Bible verses spoken by espeak-ng through ``offline:whisper-tiny-en`` ↔ the same verses as
text through ``offline:minilm-l6``; atlas with permutation nulls, aligners, held-out retrieval) needs no data
folder, only the ``espeak-ng`` program. Run it with the CLI, then summarise:

    ALIGNKIT_CACHE=/tmp/alignkit-exp-cache alignkit run examples/configs/speech_text.yaml
    python examples/speech_text.py                     # reads results/speech-text/ (the config's output)
    python examples/speech_text.py --run               # the same run from Python, then the tables

Writes ``examples/results/speech_text_atlas.csv`` (one row per measure × layer pair) and
``examples/results/speech_text_retrieval.csv`` (seed means and ranges per experiment × aligner × size × direction
× scoring), and prints the Markdown tables.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from class_separation import RESULTS, write_csv

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "configs" / "speech_text.yaml"
RUN_DIR = HERE.parent / "results" / "speech-text"


def atlas_tables(run_dir: Path) -> tuple[list[dict[str, Any]], str]:
    """Every layer pair's score, null and p-values, and a Markdown grid per measure (``*``: FWER p < 0.05)."""
    import pandas as pd

    atlas = pd.read_parquet(run_dir / "atlas.parquet")
    keep = ["measure", "layer_a", "layer_b", "score", "null_mean", "null_std", "p_value", "p_value_fwer"]
    rows = atlas[[c for c in keep if c in atlas.columns] + ["n", "n_perm"]].to_dict("records")
    summary = pd.read_parquet(run_dir / "atlas_summary.parquet")
    out = []
    for measure, g in atlas.groupby("measure", sort=False):
        layers_a = list(dict.fromkeys(g.sort_values("index_a").layer_a))
        layers_b = list(dict.fromkeys(g.sort_values("index_b").layer_b))
        cell = {(r.layer_a, r.layer_b): r for r in g.itertuples()}
        s = summary[summary.measure == measure].iloc[0]
        out.append(
            f"**{measure}** (n = {int(s.n)}, {int(s.n_perm)} permutations): best pair Whisper `{s.best_a}` × MiniLM "
            f"`{s.best_b}`, score {s.best_score:.3f}, max-null mean {s.max_null_mean:.3f}, "
            f"max-statistic p = {s.best_p_calibrated:.3g}\n"
        )
        out.append("| Whisper \\ MiniLM | " + " | ".join(layers_b) + " |")
        out.append("|---" * (len(layers_b) + 1) + "|")
        for a in layers_a:
            vals = []
            for b in layers_b:
                r = cell[(a, b)]
                star = "*" if r.p_value_fwer < 0.05 else ""
                vals.append(f"{r.score:.3f}{star}")
            out.append(f"| {a} | " + " | ".join(vals) + " |")
        null = g.null_mean.to_numpy()
        out.append(f"\nnull means (shuffled pairs) {null.min():.3f}–{null.max():.3f}\n")
    return rows, "\n".join(out)


def retrieval_table(run_dir: Path) -> tuple[list[dict[str, Any]], str]:
    """R@1 / R@10 per experiment × aligner × size × direction × scoring: mean over seeds (min–max)."""
    import pandas as pd

    ev = pd.read_parquet(run_dir / "evaluations.parquet")
    ev = ev[(ev.task == "retrieval") & ev.metric.isin(["R@1", "R@10"])]
    keys = ["experiment", "method", "n_train", "direction", "scoring", "layer_a", "layer_b", "n_gallery", "metric"]
    g = ev.groupby(keys, sort=False)["value"].agg(["mean", "min", "max", "count"]).reset_index()
    rows = g.to_dict("records")
    wide = {}
    for r in rows:
        k = tuple(r[c] for c in keys[:-1])
        wide.setdefault(k, {})[r["metric"]] = r
    lines = [
        "| experiment | layers | aligner | n train | direction | scoring | R@1 % | R@10 % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    n_gallery = set()
    for k, m in wide.items():
        exp, method, n, direction, scoring, la, lb, ng = k
        n_gallery.add(int(ng))

        def fmt(r: dict[str, Any]) -> str:
            spread = "" if r["min"] == r["max"] else f" ({100 * r['min']:.1f}–{100 * r['max']:.1f})"
            return f"{100 * r['mean']:.1f}{spread}"

        lines.append(
            f"| {exp} | {la} × {lb} | {method} | {n} | {direction} | {scoring} | {fmt(m['R@1'])} | {fmt(m['R@10'])} |"
        )
    chance = ", ".join(f"R@1 {100 / n:.1f} %, R@10 {1000 / n:.1f} % among {n}" for n in sorted(n_gallery))
    return rows, "\n".join(lines) + f"\n\nchance: {chance}"


def selection_line(run_dir: Path) -> str:
    import pandas as pd

    path = run_dir / "layer_selection.parquet"
    if not path.exists():
        return ""
    sel = pd.read_parquet(path)
    chosen = sel[sel.chosen]
    return "layer selection (training pairs only): " + "; ".join(
        f"{r.experiment}: {r.layer_a} × {r.layer_b}" for r in chosen.itertuples()
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="store_true", help="run the config first (cached jobs are reused)")
    p.add_argument("--run-dir", type=Path, default=RUN_DIR, help="the finished run's folder")
    args = p.parse_args(argv)
    run_dir = args.run_dir
    if args.run:
        from alignkit.pipeline import load_config, run

        t0 = time.perf_counter()
        result = run(load_config(CONFIG), progress=True)
        run_dir = result.run_dir
        print(f"run: {time.perf_counter() - t0:.0f}s -> {run_dir}")
    atlas_rows, atlas_md = atlas_tables(run_dir)
    ret_rows, ret_md = retrieval_table(run_dir)
    write_csv(atlas_rows, RESULTS / "speech_text_atlas.csv")
    write_csv(ret_rows, RESULTS / "speech_text_retrieval.csv")
    print(atlas_md)
    print(selection_line(run_dir) + "\n")
    print(ret_md)


if __name__ == "__main__":
    main()
