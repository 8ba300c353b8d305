"""Does mutual kNN fall as the pool of items grows? MiniLM (English) ↔ e5 (Spanish) on every Bible verse, and a
synthetic curve up to 10⁶ items with faiss.

Bible: World English Bible verses through ``offline:minilm-l6`` and Reina-Valera 1909 verses through
``offline:e5-small`` (final layers, cached in the embedding store, in the same blocks as ``crosslingual.py`` so its
cache is reused). ``alignkit.curve`` scores mutual kNN (k = 10, cosine) on nested random pools of 1k, 2k, 4k, 8k,
16k and all verses (5 repeats: each repeat draws one permutation of the verses and pool m is its first m), with a
permutation null per pool and repeat. The falling form of the Dynamic Reflections law, ``score(n) = S_∞ + C·n^−α``
(``fit_scaling_law(..., direction="decreasing")``), is fitted to the per-repeat scores, with S_∞ free and kept in
[0, 1]. A stratified check says which verses gain or lose overlap as the pool grows (by how close each verse's
nearest other verse is).

Synthetic: two noisy views of one Gaussian latent (:func:`synthetic`: z ∈ R⁸, views in R⁶⁴), pools 1k … 10⁶,
mutual kNN k = 10 with exact search up to ``--exact-max`` items and ``backend='faiss'`` (IVF-Flat; its recall@k
against exact search on 1,000 sampled rows is reported per pool) above.

Data: ``DIR/bible/verses.tsv.gz`` with ``--data-dir DIR`` or ``ALIGNKIT_DATA=DIR`` (or ``--data FILE``), as
``crosslingual.py``.

    python examples/pool_size_curve.py --embed-only            # embed (and cache) all verses twice, nothing else
    python examples/pool_size_curve.py --bible                 # the Bible curve (embeddings cached)
    python examples/pool_size_curve.py --synthetic             # the synthetic 10⁶-item curve
    python examples/pool_size_curve.py --table                 # print the recorded tables

Writes tidy rows to ``examples/results/pool_size_curve.jsonl`` (Bible) and ``pool_size_curve_synthetic.jsonl``,
and the figures next to them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _data import DEFAULT_CACHE, add_data_dir, data_path
from crosslingual import VERSES, load_verses

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: row blocks embedded (and cached) as datasets of their own; the first two are the blocks ``crosslingual.py``
#: caches with ``--max-train 8000`` (its test + pool prefix of the same seeded permutation), so they are reused
BLOCKS = (5000, 9000)
BIBLE_POOLS = (1000, 2000, 4000, 8000, 16000)  # + all verses
SYNTH_POOLS = (1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 512000, 1_000_000)


def embed(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(English MiniLM, Spanish e5, refs) for every verse, rows in the order of the ``--data-seed`` permutation."""
    from alignkit.data import InMemory
    from alignkit.encoders import load_encoder
    from alignkit.store import EmbeddingStore

    refs, en, es = load_verses(args.data)
    order = np.random.default_rng(args.data_seed).permutation(len(refs))  # = crosslingual.split's test + pool
    store = EmbeddingStore(args.cache)
    ends = [b for b in BLOCKS if b < len(order)] + [len(order)]
    out = []
    for key, enc_id, texts, name in (
        ("en_minilm", "offline:minilm-l6", en, "bible-en_web"),
        ("es_e5", "offline:e5-small", es, "bible-es_rv1909"),
    ):
        enc = load_encoder(enc_id)
        t0 = time.perf_counter()
        parts = []
        for a, b in zip([0, *ends[:-1]], ends, strict=True):
            rows = order[a:b]
            ds = InMemory([texts[i] for i in rows], "text", ids=[refs[i] for i in rows], name=f"{name}-{a}-{b}")
            parts.append(np.asarray(store.extract(enc, ds, layers=["final"], progress=args.progress)["final"]))
        out.append(np.concatenate(parts).astype(np.float32, copy=False))
        print(f"embedded {key}: {out[-1].shape} in {time.perf_counter() - t0:.1f}s", flush=True)
    return out[0], out[1], [refs[i] for i in order]


# ------------------------------------------------------------------------------------------ curves


def synthetic(n: int, *, latent: int = 8, d: int = 64, noise: float = 0.6, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Two noisy views of one Gaussian latent: ``X = zA + τε₁``, ``Y = zB + τε₂`` with z ~ N(0, I_latent),
    A, B ∈ R^{latent×d} with N(0, 1/latent) entries (unit signal variance per coordinate), ε ~ N(0, I_d) and
    τ = noise/√latent; float32, generated in chunks (seeded per chunk)."""
    rng = np.random.default_rng([seed, 0])
    A, B = (rng.standard_normal((latent, d), dtype=np.float32) / np.float32(np.sqrt(latent)) for _ in range(2))
    tau = np.float32(noise / np.sqrt(latent))
    X, Y = np.empty((n, d), np.float32), np.empty((n, d), np.float32)
    for i, s in enumerate(range(0, n, 1 << 17)):
        e = min(n, s + (1 << 17))
        g = np.random.default_rng([seed, 1, i])
        z = g.standard_normal((e - s, latent), dtype=np.float32)
        X[s:e] = z @ A + tau * g.standard_normal((e - s, d), dtype=np.float32)
        Y[s:e] = z @ B + tau * g.standard_normal((e - s, d), dtype=np.float32)
    return X, Y


def _tagged(res: Any, **tags: Any) -> list[dict[str, Any]]:
    """Summary rows plus per-repeat rows of a curve, tagged; the analytic mutual-kNN chance k/(m − 1) added."""
    k = int(res.measure.split("k=")[1].split("&")[0]) if "k=" in res.measure else 10
    rows = [{**tags, "kind": "summary", **r, "chance": k / (r["pool_size"] - 1)} for r in res.to_rows()]
    rows += [{**tags, "kind": "repeat", **r} for r in res.to_rows(per_repeat=True)]
    return [{**r, "cost": res.cost} if r["kind"] == "summary" else r for r in rows]


def fit_rows(rows: list[dict[str, Any]], label: str, n_boot: int) -> list[dict[str, Any]]:
    """The falling law ``S_∞ + C·n^−α`` fitted to the per-repeat scores (item-level variation: resample cells),
    free and with S_∞ kept in mutual kNN's range [0, 1], with predictions at the follow-up paper's pool sizes."""
    from alignkit.stats.scaling import fit_scaling_law

    per = [r for r in rows if r["kind"] == "repeat"]
    n = np.array([r["pool_size"] for r in per], dtype=float)
    y = np.array([r["score"] for r in per])
    out = []
    for bounds in (None, (0.0, 1.0)):
        law = fit_scaling_law(y, n, direction="decreasing", n_boot=n_boot, resample="cells", s_inf_range=bounds)
        print(f"{label}, S_∞ in {bounds or 'R'}: {law}")
        row = {"experiment": rows[0]["experiment"], "kind": "law", "label": label, **law.as_dict()}
        out.append({**row, **{f"predict_{m}": float(law.predict(m)) for m in (1024, 1_000_000, 15_000_000)}})
    return out


def strata(en: np.ndarray, es: np.ndarray, k: int, sizes: list[int], seed: int) -> list[dict[str, Any]]:
    """Why the curve moves: per verse, its overlap in the pool of repeat 0 at each size in ``sizes`` against the
    same verse's overlap among all verses, by how close its nearest other verse is (top-1 cosine in the English
    MiniLM space, over all verses). A verse with a near relative (a parallel passage, a formula) gains neighbours
    both encoders agree on once the pool holds that relative; a verse without one only loses."""
    from alignkit import knn_graph
    from alignkit.neighbors import overlap_counts
    from alignkit.stats import permutations

    gx, gy = knn_graph(en, k), knn_graph(es, k)
    full = (overlap_counts(gx.indices, gy.indices).double() / k).numpy()
    unit = en / np.linalg.norm(en, axis=1, keepdims=True)
    top1 = (unit * unit[gx.indices[:, 0].numpy()]).sum(axis=1)
    order = permutations(en.shape[0], 1, seed)[0].numpy()
    rows = []
    for m in sizes:
        pool = order[:m]
        px, py = knn_graph(en[pool], k), knn_graph(es[pool], k)
        at_pool = (overlap_counts(px.indices, py.indices).double() / k).numpy()
        for lo, hi in ((0.0, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)):
            sel = (top1[pool] >= lo) & (top1[pool] < hi)
            rows.append(
                {
                    "experiment": "bible",
                    "kind": "stratum",
                    "pool_size": m,
                    "top1_cos_low": lo,
                    "top1_cos_high": min(hi, 1.0),
                    "share": float(sel.mean()),
                    "mknn_at_pool": float(at_pool[sel].mean()),
                    "mknn_all_verses": float(full[pool][sel].mean()),
                }
            )
    return rows


def run_bible(args: argparse.Namespace) -> list[dict[str, Any]]:
    from alignkit.curves import curve

    en, es, _ = embed(args)
    n = en.shape[0]
    sizes = [m for m in BIBLE_POOLS if m < n] + [n]
    t0 = time.perf_counter()
    res = curve("mutual_knn", en, es, sizes, repeats=args.repeats, n_perm=args.n_perm, seed=args.seed, k=args.k)
    seconds = time.perf_counter() - t0
    print(f"Bible curve ({len(sizes)} sizes × {args.repeats} repeats, n_perm={args.n_perm}): {seconds:.0f}s")
    rows = _tagged(
        res, experiment="bible", model_x="offline:minilm-l6 (en_web)", model_y="offline:e5-small (es_rv1909)"
    )
    rows[0]["seconds"] = seconds
    rows += fit_rows(rows, "Bible MiniLM-EN ↔ e5-ES", args.n_boot)
    rows += strata(en, es, args.k, [1000, 4000], args.seed)
    _figure([res], ["MiniLM-EN ↔ e5-ES, Bible verses"], RESULTS / "figures" / "pool_size_curve_bible.png")
    return rows


def run_synthetic(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Exact search up to ``--exact-max`` items, faiss IVF-Flat above (its recall@k reported per pool). The two
    calls share seed and repeats, so repeat r's permutation, and hence its nested pools, is the same in both."""
    from alignkit.curves import curve

    X, Y = synthetic(args.synthetic_n, seed=args.seed)
    sizes = [m for m in SYNTH_POOLS if m < args.synthetic_n] + [args.synthetic_n]
    exact = [m for m in sizes if m <= args.exact_max]
    approx = [m for m in sizes if m > args.exact_max]
    rows, results, labels = [], [], []
    for part, pools, backend, reps in (
        ("exact", exact, "exact", args.repeats),
        ("faiss", approx, "faiss", args.faiss_repeats),
    ):
        if len(pools) < 2:
            continue
        t0 = time.perf_counter()
        res = curve(
            "mutual_knn", X, Y, pools, repeats=reps, n_perm=args.n_perm, seed=args.seed, k=args.k, backend=backend
        )
        seconds = time.perf_counter() - t0
        print(f"synthetic {part} curve {pools} × {reps} repeats: {seconds:.0f}s", flush=True)
        part_rows = _tagged(res, experiment="synthetic", part=part, n_items=args.synthetic_n)
        part_rows[0]["seconds"] = seconds
        rows += part_rows
        results.append(res)
        labels.append(f"synthetic, {backend} kNN")
    rows += fit_rows(rows, "synthetic (8-d latent, d = 64)", args.n_boot)
    _figure(results, labels, RESULTS / "figures" / "pool_size_curve_synthetic.png")
    return rows


def _figure(results: list[Any], labels: list[str], path: Path) -> None:
    from alignkit.curves import plot_curve

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_curve(*results, labels=labels, title="mutual kNN (k = 10) against pool size")
    fig.savefig(path, dpi=110, metadata={"Software": None}, facecolor="white")
    print(f"figure -> {path}")


# ------------------------------------------------------------------------------------------ output


def save(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, default=float) + "\n" for r in rows))
    print(f"{len(rows)} rows -> {path}")


def table(paths: list[Path]) -> str:
    rows = [json.loads(line) for p in paths if p.exists() for line in p.read_text().splitlines()]
    out = []
    out += [
        "| experiment | pool size | mutual kNN, mean [95 % t-CI] | null mean | k/(m−1) | adjusted | p (max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["kind"] != "summary":
            continue
        name = r["experiment"] + (f" ({r['part']})" if "part" in r else "")
        ci = f"{r['score']:.4f} [{r['score_low']:.4f}, {r['score_high']:.4f}]"
        if "knn_recall_X" in r:
            ci += f" (recall {r['knn_recall_X']:.3f}/{r['knn_recall_Y']:.3f})"
        null = f"{r['null_mean']:.5f}" if "null_mean" in r else "–"
        adj = f"{r['adjusted']:.4f}" if "adjusted" in r else "–"
        p = f"{r['p_value_max']:.3g}" if "p_value_max" in r else "–"
        out.append(f"| {name} | {r['pool_size']:,} | {ci} | {null} | {r['chance']:.5f} | {adj} | {p} |")
    strata_rows = [r for r in rows if r["kind"] == "stratum"]
    if strata_rows:
        out += [
            "",
            "| pool | top-1 cosine of the verse (all verses) | share | mutual kNN in the pool | among all verses |",
        ]
        out.append("|---|---|---|---|---|")
        for r in strata_rows:
            band = f"[{r['top1_cos_low']:.1f}, {r['top1_cos_high']:.1f})"
            at, allv = r["mknn_at_pool"], r["mknn_all_verses"]
            out.append(f"| {r['pool_size']:,} | {band} | {r['share']:.3f} | {at:.4f} | {allv:.4f} |")
    for r in rows:
        if r["kind"] == "law":
            bounds = "S_∞ free" if r.get("s_inf_range") is None else f"S_∞ in {r['s_inf_range']}"
            out.append(
                f"\n{r['label']} ({bounds}): S_∞ = {r['S_inf']:.4f} [{r['S_inf_low']:.4f}, {r['S_inf_high']:.4f}], "
                f"C = {r['C']:.3f} [{r['C_low']:.3f}, {r['C_high']:.3f}], α = {r['alpha']:.3f} "
                f"[{r['alpha_low']:.3f}, {r['alpha_high']:.3f}], R² = {r['r2']:.4f}; predicted at 1,024: "
                f"{r['predict_1024']:.4f}, at 10⁶: {r['predict_1000000']:.4f}, at 15M: {r['predict_15000000']:.4f}"
            )
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(p, VERSES)
    p.add_argument("--data", type=Path, default=None, help="the verses file itself (overrides --data-dir)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--data-seed", type=int, default=0, help="the verse order (and so the embedding blocks)")
    p.add_argument("--embed-only", action="store_true")
    p.add_argument("--bible", action="store_true", help="run the Bible curve")
    p.add_argument("--synthetic", action="store_true", help="run the synthetic curve")
    p.add_argument("--table", action="store_true", help="print the tables of the recorded results and exit")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--faiss-repeats", type=int, default=2, help="repeats of the synthetic pools above --exact-max")
    p.add_argument("--n-perm", type=int, default=100)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap refits of the scaling law")
    p.add_argument("--seed", type=int, default=0, help="pool draws and permutation nulls")
    p.add_argument("--synthetic-n", type=int, default=1_000_000)
    p.add_argument("--exact-max", type=int, default=64000, help="synthetic pools up to this size use exact search")
    p.add_argument("--out", type=Path, default=RESULTS / "pool_size_curve.jsonl")
    p.add_argument("--synthetic-out", type=Path, default=RESULTS / "pool_size_curve_synthetic.jsonl")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.table:
        print(table([args.out, args.synthetic_out]))
        return
    torch.set_num_threads(args.threads)
    if args.embed_only or args.bible:
        args.data = data_path(args, VERSES, override=args.data, what="the parallel Bible verses")
    if args.embed_only:
        embed(args)
        return
    t0 = time.perf_counter()
    if args.bible:
        save(args.out, run_bible(args))
    if args.synthetic:
        save(args.synthetic_out, run_synthetic(args))
    if not (args.bible or args.synthetic):
        raise SystemExit("pool_size_curve.py: say what to run: --bible, --synthetic, --embed-only or --table")
    print(f"wall time {time.perf_counter() - t0:.0f}s")
    print(table([args.out] if not args.synthetic else [args.out, args.synthetic_out]))


if __name__ == "__main__":
    main()
