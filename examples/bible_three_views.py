"""Three views of one verse aligned jointly: does an n-view loss beat the pairwise InfoNCE sum?

Runs ``examples/configs/bible_three_views.yaml`` (a declarative run with ``views: [en, es, kjv]``): English WEB
through ``offline:minilm-l6`` (final layer), Spanish RV1909 through ``offline:e5-small`` (final layer) and English
KJV through ``offline:minilm-l6`` at ``layer_3``. ``MultiHeadAligner`` (linear heads, 512-d) is trained under
the pairwise InfoNCE sum, MV-InfoNCE, MV-DHEL (Koromilas et al., arXiv 2507.06979), GRAM (Cicchetti et al.,
ICLR 2025) and GRAM + 0.1 InfoNCE, on 250 / 1k / 4k training items × 3 seeds, and scored on 1,000 held-out
verses: retrieval on every ordered pair of views (NN, CSLS) and each view against the other two (GRAM's
protocol: volume and mean-cosine scoring). Controls at 1k (the config's header says why): other temperatures, GRAM
anchored on Spanish, a shorter and a longer schedule, and EN ↔ ES alone with two-view heads. The closed-form n-way
baselines (generalised Procrustes, MAXVAR) are not in it: they were not registered aligner types when it was made
(add them to the config's aligners).

The verses are the 5,000 that ``crosslingual.py --max-train 4000`` embeds (its 1,000 test verses, then its pool;
verses with an empty column dropped), with their KJV text, derived into a TSV in the cache folder, so the EN and
ES embeddings are the ones the other Bible examples cached. The run draws its own 1,000 test verses from them.

Before the run, ``layer_check`` measures how far apart the raw spaces are (no training: cosine R@1 between two
views on the TSV's first 1,000 verses, and debiased linear CKA), for every MiniLM layer of KJV and for KJV through
e5 (why KJV goes through a MiniLM mid layer, not e5).

Data: ``DIR/bible/verses.tsv.gz`` (columns ``ref``, ``en_web``, ``es_rv1909``, ``en_kjv``) with ``--data-dir DIR``
or ``ALIGNKIT_DATA=DIR``.

    python examples/bible_three_views.py                 # embed (first use), fit, evaluate, summarise
    python examples/bible_three_views.py --summary-only  # re-read the finished run's tables

Writes ``examples/results/bible_three_views/``: ``evaluations.csv`` (R@1, R@10 and MRR of every fit, direction and
scoring), ``fits.csv``,
``summary.csv`` (mean ± 95 % t-interval over seeds per method × size × direction × scoring × metric),
``vs_baseline.csv`` (paired differences to the pairwise sum over seeds: same seed = same training items and head
init), ``gram_protocol.csv`` (anchor → rest, GRAM heads by volume against the pairwise sum's by mean cosine),
``layer_check.csv`` and ``table.md`` (the R@1 tables), and prints the tables.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from _data import DEFAULT_CACHE, add_data_dir, data_path
from class_separation import CONFIGS, DEFAULT_RUNS, RESULTS, fill_config, run_config, write_csv
from crosslingual import VERSES, split

NAME = "bible_three_views"
OUT = RESULTS / NAME
COLUMNS = ("en_web", "es_rv1909", "en_kjv")
VIEWS = ("en", "es", "kjv")
BASELINE = "pairwise-infonce"
TWO_VIEW_BASELINE = "2view-infonce"
#: the metrics kept in the results folder (the run's evaluations.parquet also has median and mean ranks)
METRICS = ("R@1", "R@10", "mrr")


# ------------------------------------------------------------------------------------------- data


def load_three(path: Path) -> tuple[list[str], list[list[str]]]:
    """(refs, [WEB, RV1909, KJV]) for verses where all three texts are non-empty (stripped)."""
    refs: list[str] = []
    texts: list[list[str]] = [[], [], []]
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            t = [(row.get(c) or "").strip() for c in COLUMNS]
            if all(t):
                refs.append(row["ref"])
                for col, s in zip(texts, t, strict=True):
                    col.append(s)
    return refs, texts


def verses_tsv(verses: Path, target: Path, n_test: int, n_pool: int, data_seed: int) -> Path:
    """``ref`` and the three texts of crosslingual.py's test verses and pool (in that order).

    The split is crosslingual.py's permutation over the verses that have all three texts; where every verse has
    all three (as in the bundled file) these are exactly crosslingual.py's verses."""
    refs, texts = load_three(verses)
    test, pool = split(len(refs), n_test, n_pool, data_seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
        w.writerow(["ref", *COLUMNS])
        for i in [*test, *pool]:
            w.writerow([refs[i], *(col[i] for col in texts)])
    tmp.replace(target)
    print(f"{target}: {len(test) + len(pool)} verses ({len(refs)} of the file have all three texts)")
    return target


# ------------------------------------------------------------------------------------------- layer check


def layer_check(tsv: Path, cache: Path, n: int = 1000) -> list[dict[str, Any]]:
    """How far apart the raw views are: R@1 (cosine, both directions, ``n`` candidates) and debiased linear CKA
    between WEB/RV1909 and KJV through every MiniLM layer, and KJV through e5 (final), on the TSV's first ``n``
    verses (crosslingual.py's test verses). No training: a high raw R@1 means a pair is already aligned."""
    from alignkit.data import InMemory
    from alignkit.data.spec import dataset_from_spec
    from alignkit.encoders import load_encoder
    from alignkit.evaluate import retrieval
    from alignkit.metrics import cka
    from alignkit.store import EmbeddingStore

    store = EmbeddingStore(cache)
    minilm, e5 = load_encoder("offline:minilm-l6"), load_encoder("offline:e5-small")

    def emb(column: str, encoder: Any, layers: list[str]) -> dict[str, np.ndarray]:
        out = store.extract(encoder, dataset_from_spec(f"{tsv}#{column},id=ref"), layers, progress=False)
        return {k: np.asarray(v, dtype=np.float64)[:n] for k, v in out.items()}

    en = emb("en_web", minilm, ["final"])["final"]
    es = emb("es_rv1909", e5, ["final"])["final"]
    kjv = emb("en_kjv", minilm, list(minilm.layer_names))
    texts = dataset_from_spec(f"{tsv}#en_kjv,id=ref").items(0, n)  # only the n checked verses through e5
    kjv_e5 = store.extract(e5, InMemory(texts, "text", name=f"kjv-first-{n}"), ["final"], progress=False)
    candidates = {f"minilm:{k}": v for k, v in kjv.items()} | {"e5:final": np.asarray(kjv_e5["final"])[:n]}
    rows = []
    for kname, k in candidates.items():
        for other, x in (("en (minilm:final)", en), ("es (e5:final)", es)):
            r = {row["direction"]: row["value"] for row in retrieval(x, k, ks=[1]) if row["metric"] == "R@1"}
            rows.append({
                "pair": f"{other} ~ kjv ({kname})", "raw_r1_a_to_b": r["q_to_g"], "raw_r1_b_to_a": r["g_to_q"],
                "cka_linear_debiased": cka(x, k), "n": n,
            })  # fmt: skip
    r = {row["direction"]: row["value"] for row in retrieval(en, es, ks=[1]) if row["metric"] == "R@1"}
    rows.append({
        "pair": "en (minilm:final) ~ es (e5:final)", "raw_r1_a_to_b": r["q_to_g"], "raw_r1_b_to_a": r["g_to_q"],
        "cka_linear_debiased": cka(en, es), "n": n,
    })  # fmt: skip
    return rows


def layer_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| pair a ~ b (raw, no training) | R@1 a→b | R@1 b→a | linear CKA (debiased) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['pair']} | {100 * r['raw_r1_a_to_b']:.1f} | {100 * r['raw_r1_b_to_a']:.1f} | "
            f"{r['cka_linear_debiased']:.3f} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- summaries


def t_interval(values: np.ndarray) -> tuple[float, float, int]:
    """(mean, half-width of the two-sided 95 % Student-t interval, n); half-width NaN for one value."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n < 2:
        return float(v.mean()), math.nan, n
    return float(v.mean()), float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n)), n


def summary(ev: Any) -> list[dict[str, Any]]:
    """Mean ± t-interval over seeds per method × size × direction × scoring × metric."""
    keys = ["method", "n_train", "direction", "scoring", "metric"]
    rows = []
    for key, g in ev.groupby(keys, sort=False):
        mean, hw, n = t_interval(g["value"].to_numpy())
        rows.append({**dict(zip(keys, key, strict=True)), "mean": mean, "ci95": hw, "n_seeds": n})
    return rows


def baseline_of(method: str) -> str:
    """What a method is compared with: the pairwise sum trained as long (3 views) or two-view InfoNCE (two-*)."""
    if method.startswith("2view-"):
        return TWO_VIEW_BASELINE
    return BASELINE + (f"-{method.rsplit('-', 1)[1]}" if method.endswith("ep") else "")


#: direction groups averaged per seed before the seed interval (R@1 averaged over the group's directions)
GROUPS: dict[str, Any] = {
    "all pairs": lambda d: not d.endswith("rest"),
    "pairs with es": lambda d: not d.endswith("rest") and "es" in d.split("->"),
    "en<->kjv": lambda d: d in ("en->kjv", "kjv->en"),
    "en<->es": lambda d: d in ("en->es", "es->en"),
    "all ->rest": lambda d: d.endswith("rest"),
}


def vs_baseline(ev: Any, metric: str = "R@1") -> list[dict[str, Any]]:
    """Per-seed differences (method − its baseline, :func:`baseline_of`) of ``metric``, per direction and averaged
    over each of ``GROUPS``; mean ± 95 % t-interval over seeds and the seeds won. The same seed means the same
    training items and the same head initialisation, so the differences are paired."""
    import pandas as pd

    ev = ev[ev.metric == metric]
    wide = ev.pivot_table(index=["n_train", "seed", "scoring", "direction"], columns="method", values="value")
    rows = []
    for method in wide.columns:
        base = baseline_of(method)
        if method == base or base not in wide.columns:
            continue
        d = (wide[method] - wide[base]).dropna().rename("diff").reset_index()
        parts = [d]
        for group, member in GROUPS.items():
            g = d[d.direction.map(member)]
            if len(g):
                parts.append(
                    g.groupby(["n_train", "seed", "scoring"])["diff"].mean().reset_index().assign(direction=group)
                )
        for (n, scoring, direction), g in pd.concat(parts).groupby(["n_train", "scoring", "direction"]):
            mean, hw, k = t_interval(g["diff"].to_numpy())
            rows.append({
                "method": method, "baseline": base, "n_train": n, "scoring": scoring, "direction": direction,
                "metric": metric, "diff_mean": mean, "diff_ci95": hw, "n_seeds": k, "wins": int((g["diff"] > 0).sum()),
            })  # fmt: skip
    return rows


#: GRAM-trained methods and their anchor view (the view GRAM's loss queries with)
GRAM_ANCHORS = {"gram": "en", "gram-infonce": "en", "gram-es": "es", "gram-infonce-120ep": "en"}


def gram_protocol(ev: Any, metric: str = "R@1") -> list[dict[str, Any]]:
    """GRAM's own protocol, each side with its best scorer: the anchor view → the other two, GRAM-trained heads
    scored by volume against the pairwise sum's heads scored by mean cosine (and by volume), paired by seed."""
    ev = ev[ev.metric == metric]
    val = ev.set_index(["method", "n_train", "seed", "direction", "scoring"])["value"]
    rows = []
    for method, anchor in GRAM_ANCHORS.items():
        base = baseline_of(method)
        if method not in set(ev.method):
            continue
        for n in sorted(set(ev[ev.method == method].n_train)):
            seeds = sorted(set(ev[(ev.method == method) & (ev.n_train == n)].seed))
            d = f"{anchor}->rest"
            g = np.array([val[(method, n, s, d, "gram")] for s in seeds])
            b_nn = np.array([val[(base, n, s, d, "nn")] for s in seeds])
            b_vol = np.array([val[(base, n, s, d, "gram")] for s in seeds])
            row: dict[str, Any] = {"method": method, "baseline": base, "n_train": n, "direction": d, "metric": metric}
            for name, v in (("gram_volume", g), ("baseline_mean_cos", b_nn), ("baseline_volume", b_vol)):
                row[name], row[f"{name}_ci95"], _ = t_interval(v)
            row["diff_mean"], row["diff_ci95"], row["n_seeds"] = t_interval(g - b_nn)
            row["wins"] = int((g > b_nn).sum())
            rows.append(row)
    return rows


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "–"
    hw = "" if math.isnan(r["ci95"]) else f" ± {100 * r['ci95']:.1f}"
    return f"{100 * r['mean']:.1f}{hw}"


def _dcell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "–"
    return f"{100 * r['diff_mean']:+.1f} ± {100 * r['diff_ci95']:.1f} ({r['wins']}/{r['n_seeds']})"


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _head(*cols: str) -> list[str]:
    return [_row(*cols), "|---" * len(cols) + "|"]


def tables(rows: list[dict[str, Any]], diffs: list[dict[str, Any]], protocol: list[dict[str, Any]]) -> str:
    """Markdown, R@1 (%): every ordered pair (NN); each view → the other two (GRAM volume | mean cosine); paired
    differences to the pairwise sum by direction group; GRAM's anchor → rest protocol; the two-view control."""
    cell = {(r["method"], r["n_train"], r["direction"], r["scoring"], r["metric"]): r for r in rows}
    dcell = {(r["method"], r["n_train"], r["scoring"], r["direction"]): r for r in diffs}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    three = [m for m in methods if not m.startswith("2view-")]
    two = [m for m in methods if m.startswith("2view-")]
    sizes = sorted({r["n_train"] for r in rows})
    fitted = {(r["method"], r["n_train"]) for r in rows}
    three = [m for m in three if any((m, n) in fitted for n in sizes)]
    pair_dirs = [f"{a}->{b}" for a in VIEWS for b in VIEWS if a != b]
    rest_dirs = [f"{a}->rest" for a in VIEWS]
    arrow = [d.replace("->", "→") for d in pair_dirs + rest_dirs]

    out = ["R@1 (%) on 1,000 held-out verses, every ordered pair of views, cosine (NN); mean ± 95 % t-interval over 3"]
    out += ["seeds", "", *_head("n", "method", *arrow[:6])]
    for n in sizes:
        for m in (m for m in three if (m, n) in fitted):
            out.append(_row(n, m, *(_cell(cell.get((m, n, d, "nn", "R@1"))) for d in pair_dirs)))

    out += ["", "R@1 (%), each view → the item's other two views: GRAM volume \\| mean cosine (NN)", ""]
    out += _head("n", "method", *arrow[6:])
    for n in sizes:
        for m in (m for m in three if (m, n) in fitted):
            cells = [
                f"{_cell(cell.get((m, n, d, 'gram', 'R@1')))} \\| {_cell(cell.get((m, n, d, 'nn', 'R@1')))}"
                for d in rest_dirs
            ]
            out.append(_row(n, m, *cells))

    cols = [
        ("nn", "all pairs", "6 pairs"),
        ("nn", "pairs with es", "4 pairs with ES"),
        ("nn", "en<->kjv", "EN↔KJV"),
        ("gram", "all ->rest", "→rest, volume"),
        ("nn", "all ->rest", "→rest, mean cos"),
    ]
    out += ["", f"Difference to {BASELINE} trained as long (R@1 points, NN unless said; paired by seed: mean ± 95 %"]
    out += ["t-interval (seeds won))", "", *_head("n", "method", *(c[2] for c in cols))]
    for n in sizes:
        for m in (m for m in three if m != baseline_of(m) and (m, n) in fitted):
            out.append(_row(n, m, *(_dcell(dcell.get((m, n, sc, g))) for sc, g, _ in cols)))

    if protocol:
        out += ["", "GRAM's protocol: the anchor view → the other two, R@1 (%). GRAM-trained heads scored by volume,"]
        out += ["the pairwise sum's heads by mean cosine (its best scorer) and by volume; Δ = GRAM (volume) − pairwise"]
        out += ["(mean cosine), paired by seed", ""]
        out += _head("n", "method", "direction", "GRAM heads, volume", "pairwise, mean cos", "pairwise, volume", "Δ")
        for r in sorted(protocol, key=lambda r: (r["n_train"], r["method"])):
            keys = ("gram_volume", "baseline_mean_cos", "baseline_volume")
            c = [_cell({"mean": r[k], "ci95": r[f"{k}_ci95"]}) for k in keys]
            out.append(_row(r["n_train"], r["method"], r["direction"].replace("->", "→"), *c, _dcell(r)))

    if two:
        out += ["", "EN ↔ ES alone (two-view HeadAligner, same settings) against the same pair inside the 3-view runs:"]
        out += ["R@1 (%), NN; Δ = paired difference to that run's InfoNCE", ""]
        out += _head("n", "method", "en→es", "es→en", "Δ EN↔ES")
        for n in sizes:
            for m in [*two, *(m for m in three if m in (BASELINE, "mv-infonce", "mv-dhel"))]:
                c = [_cell(cell.get((m, n, d, "nn", "R@1"))) for d in ("en->es", "es->en")]
                out.append(_row(n, m, *c, _dcell(dcell.get((m, n, "nn", "en<->es")))))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir(p, VERSES)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding store (and the derived TSV)")
    p.add_argument("--output", type=Path, default=DEFAULT_RUNS, help="the run folder goes to OUTPUT/<name>/")
    p.add_argument("--n-test", type=int, default=1000, help="crosslingual.py's test verses (kept in the TSV)")
    p.add_argument("--n-pool", type=int, default=4000, help="crosslingual.py's pool (--max-train)")
    p.add_argument("--data-seed", type=int, default=0, help="crosslingual.py's --data-seed")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    p.add_argument("--no-layer-check", action="store_true", help="skip the raw-space check of the KJV view")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--summary-only", action="store_true", help="only re-read the finished run's tables")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    cache, output = args.cache.resolve(), args.output.resolve()
    verses = data_path(args, VERSES, what="the parallel Bible verses")
    target = cache / "derived" / f"bible-3views-{args.n_test}+{args.n_pool}-s{args.data_seed}.tsv"
    if not target.exists():
        verses_tsv(verses, target, args.n_test, args.n_pool, args.data_seed)
    values = {"VERSES": target, "CACHE": cache, "OUTPUT": output}
    filled = fill_config(CONFIGS / f"{NAME}.yaml", values, output / f"{NAME}.yaml")
    print(f"config: {filled}")
    run_dir = output / NAME.replace("_", "-")
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        t0 = time.perf_counter()
        run_dir = run_config(filled, dry_run=args.dry_run, threads=args.threads)
        print(f"wall {time.perf_counter() - t0:.0f}s")
    if args.dry_run:
        return
    if not args.summary_only and not args.no_layer_check:
        checks = layer_check(target, cache, args.n_test)
        write_csv(checks, OUT / "layer_check.csv")
        print(f"\n{layer_table(checks)}\n")
    import pandas as pd

    ev = pd.read_parquet(run_dir / "evaluations.parquet")
    ev = ev[ev.metric.isin(METRICS)][
        ["experiment", "method", "n_train", "seed", "direction", "scoring", "metric", "value"]
    ]
    fits = pd.read_parquet(run_dir / "fits.parquet").dropna(axis=1, how="all")
    write_csv(ev.to_dict("records"), OUT / "evaluations.csv")
    write_csv(fits.to_dict("records"), OUT / "fits.csv")
    rows = summary(ev)
    write_csv(rows, OUT / "summary.csv")
    diffs = vs_baseline(ev)
    write_csv(diffs, OUT / "vs_baseline.csv")
    protocol = gram_protocol(ev)
    write_csv(protocol, OUT / "gram_protocol.csv")
    md = tables(rows, diffs, protocol)
    if (OUT / "layer_check.csv").exists():
        with open(OUT / "layer_check.csv", encoding="utf-8") as f:
            checks = [{k: (v if k == "pair" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]
        md += "\n\nRaw views before any training (first 1,000 verses of the TSV)\n\n" + layer_table(checks)
    (OUT / "table.md").write_text(md + "\n", encoding="utf-8")
    secs = fits.groupby(["method", "n_train"])["fit_seconds"].mean().unstack("n_train").round(1)
    print(f"{len(ev)} evaluation rows -> {OUT}\nmean fit seconds:\n{secs}\n\n{md}")


if __name__ == "__main__":
    main()
