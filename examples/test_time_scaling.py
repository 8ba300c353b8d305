"""Test-time scaling of speech ↔ text alignment: Dynamic Reflections' law on spoken Bible verses.

Zhu et al., "Dynamic Reflections: Probing Video Representations with Text Alignment" (ICLR 2026, arXiv
2511.02767) find that a video model's alignment with a text model grows with the number of frames n_f and captions
n_c averaged per item, following ``score(n_f, n_c) = S_∞ − (C_f·n_f^−α + C_c·n_c^−β)`` (R² > 0.97). Here the
"frames" of an item are espeak-ng clips of the same verse in different voices and speeds through
``offline:whisper-tiny-en``, and its "captions" are English texts of the same verse through ``offline:minilm-l6``:

- frames (6 per verse, 6 different voices): frame 0 is the clip of the speech ↔ text example
  (``speech:bible?n=1000&voices=en-us,en-gb+f3&speeds=150,190``: en-us or en-gb+f3 at 150 or 190 wpm, so its
  cached embeddings are reused), frame 1 the other of those two voices at the other speed, frames 2–5 ``en-gb`` at
  160 wpm, ``en-us+m3`` at 180, ``en-gb-scotland`` at 170 and ``en-us+f2`` at 200;
- captions (3 per verse): the World English Bible text (the one spoken), the King James text of the same verse
  (``en_kjv`` of ``DIR/bible/verses.tsv.gz``), and the WEB text as a plain transcript (lower case, punctuation
  removed: what a speech recogniser would write, i.e. the words the audio actually carries).

An item's embedding at (n_f, n_c) is the mean of n_f of its frame embeddings and of n_c of its caption embeddings,
the subsets drawn at random per item and per draw (``--draws`` draws per cell; the spread over draws is recorded).
Each cell is scored with mutual kNN (k = 10) and linear CKA on two layer pairs: Whisper ``layer_4`` × MiniLM
``layer_0`` (the best pair of ``speech_text.py``) and ``final`` × ``final``. The law is fitted to the 18 cell means
of each (pair, measure) with :func:`alignkit.stats.fit_scaling_law` (1,000 residual-bootstrap refits).

    python examples/test_time_scaling.py --data-dir ../shared/data --embed-only   # clips + embeddings (cached)
    python examples/test_time_scaling.py --data-dir ../shared/data               # grid, fits, figure

Clips and embeddings are cached under ``$ALIGNKIT_CACHE`` (default the examples' shared cache
``/tmp/alignkit-exp-cache``): a first run makes and encodes 5·N clips (6·N when the speech ↔ text example's
embeddings are absent). Writes ``examples/results/test_time_scaling.jsonl`` (one row per cell × draw × pair ×
measure), ``test_time_scaling_cells.csv`` (cell means and spreads), ``test_time_scaling_fits.csv`` (every parameter
with its interval) and ``examples/results/figures/test_time_scaling.png``.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from _data import DEFAULT_CACHE, add_data_dir, data_path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FIGURES = RESULTS / "figures"

SOURCE_VOICES = ("en-us", "en-gb+f3")  # the speech ↔ text example's clips (frame 0)
SOURCE_SPEEDS = (150, 190)
EXTRA_FRAMES = (("en-gb", 160), ("en-us+m3", 180), ("en-gb-scotland", 170), ("en-us+f2", 200))  # frames 2–5
CAPTIONS = ("web", "kjv", "web-plain")
PAIRS = (("layer_4", "layer_0"), ("final", "final"))
MEASURES = {"mutual_knn": {"k": 10}, "cka": {}}
N_F = (1, 2, 3, 4, 5, 6)
N_C = (1, 2, 3)
DESIGNS = ("per-item", "shared")


def plain(text: str) -> str:
    """A transcript-like caption: lower case, letters/digits/apostrophes only, single spaces."""
    text = text.lower().replace("’", "'")
    return " ".join(re.sub(r"[^\w' ]+", " ", text).split())


def read_kjv(path: Path, refs: list[str]) -> list[str]:
    wanted = set(refs)
    kjv: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        i_ref, i_kjv = header.index("ref"), header.index("en_kjv")
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if cols[i_ref] in wanted:
                kjv[cols[i_ref]] = cols[i_kjv]
    missing = [r for r in refs if not kjv.get(r, "").strip()]
    if missing:
        raise SystemExit(f"{path}: no en_kjv text for {len(missing)} verse(s), e.g. {missing[:3]}")
    return [kjv[r] for r in refs]


def embed(n: int, seed: int, tsv: Path) -> dict[str, Any]:
    """Frame embeddings ``audio[layer]`` (6, N, d) and caption embeddings ``text[layer]`` (3, N, d), cached."""
    from alignkit.data import InMemory
    from alignkit.data.speech import SpokenTexts, spoken_bible
    from alignkit.encoders import load_encoder
    from alignkit.store import EmbeddingStore

    store = EmbeddingStore()
    source = spoken_bible(1000, voices=list(SOURCE_VOICES), speeds=list(SOURCE_SPEEDS))
    assert isinstance(source, SpokenTexts)
    rows = np.sort(np.random.default_rng(seed).choice(len(source), size=n, replace=False))
    refs = [str(source.ids[i]) for i in rows]
    web = [source.texts[i] for i in rows]
    v0 = [source.voices[i] for i in rows]
    s0 = [source.speeds[i] for i in rows]
    frames = [(v0, s0, "source")]
    frames.append(
        (
            [SOURCE_VOICES[1 - SOURCE_VOICES.index(v)] for v in v0],
            [SOURCE_SPEEDS[1 - SOURCE_SPEEDS.index(s)] for s in s0],
            "swapped",
        )
    )
    frames += [([v] * n, [s] * n, f"{v}@{s}") for v, s in EXTRA_FRAMES]

    whisper = load_encoder("offline:whisper-tiny-en")
    a_layers = sorted({a for a, _ in PAIRS})
    audio: dict[str, list[np.ndarray]] = {layer: [] for layer in a_layers}
    for j, (voices, speeds, tag) in enumerate(frames):
        t0 = time.perf_counter()
        if j == 0 and store.has(whisper, source):
            spaces = store.extract(whisper, source, progress=False)
            got = {layer: np.asarray(spaces[layer].array)[rows] for layer in a_layers}
        else:
            ds = SpokenTexts(web, voices, speeds, ids=refs, keys=refs, name=f"tts-scaling-{tag} ({n} verses, s{seed})")
            spaces = store.extract(whisper, ds, progress=True)
            got = {layer: np.asarray(spaces[layer].array) for layer in a_layers}
        for layer in a_layers:
            audio[layer].append(got[layer])
        print(f"frame {j} ({tag}): {time.perf_counter() - t0:.0f}s", flush=True)

    captions = {"web": web, "kjv": read_kjv(tsv, refs), "web-plain": [plain(t) for t in web]}
    minilm = load_encoder("offline:minilm-l6")
    t_layers = sorted({b for _, b in PAIRS})
    text: dict[str, list[np.ndarray]] = {layer: [] for layer in t_layers}
    for name in CAPTIONS:
        ds = InMemory(captions[name], "text", ids=refs, keys=refs, name=f"tts-scaling-{name} ({n} verses, s{seed})")
        spaces = store.extract(minilm, ds, progress=False)
        for layer in t_layers:
            text[layer].append(np.asarray(spaces[layer].array))
    return {
        "audio": {k: np.stack(v).astype(np.float64) for k, v in audio.items()},
        "text": {k: np.stack(v).astype(np.float64) for k, v in text.items()},
        "refs": refs,
        "frames": [tag for *_, tag in frames],
    }


def draw_views(n: int, n_views: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Per item, ``size`` of its ``n_views`` views drawn without replacement: (N, size) view indices."""
    return np.argsort(rng.random((n, n_views)), axis=1)[:, :size]


def view_means(emb: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """Per item, the mean of the views ``pick`` chose: (N, d)."""
    return emb[pick.T, np.arange(emb.shape[1])].mean(axis=0)


def score(name: str, X: np.ndarray, Y: np.ndarray) -> float:
    from alignkit.metrics import measure

    return float(measure(name, X, Y, **MEASURES[name]))


def grid(emb: dict[str, Any], draws: int, seed: int) -> list[dict[str, Any]]:
    """One row per design × (n_f, n_c) cell × draw × layer pair × measure (the pairs share a draw's subsets).

    Designs: ``per-item`` draws each verse's voices and captions independently (as a video's frames and captions
    are its own); ``shared`` draws one subset of voice slots and caption kinds per draw for every verse, so at
    n_f = 1 the audio space is a single voice and at n_c = 1 the text space a single kind of caption.
    """
    rng = np.random.default_rng(seed)
    n_views_f, n = next(iter(emb["audio"].values())).shape[:2]
    n_views_c = next(iter(emb["text"].values())).shape[0]
    rows = []
    for design in DESIGNS:
        for n_f, n_c in itertools.product(N_F, N_C):
            for d in range(draws):
                if design == "per-item":
                    pick_f, pick_c = draw_views(n, n_views_f, n_f, rng), draw_views(n, n_views_c, n_c, rng)
                else:
                    pick_f = np.tile(draw_views(1, n_views_f, n_f, rng), (n, 1))
                    pick_c = np.tile(draw_views(1, n_views_c, n_c, rng), (n, 1))
                for a, b in PAIRS:
                    X, Y = view_means(emb["audio"][a], pick_f), view_means(emb["text"][b], pick_c)
                    for m in MEASURES:
                        rows.append(
                            {
                                "design": design,
                                "n_f": n_f,
                                "n_c": n_c,
                                "draw": d,
                                "pair": f"{a}×{b}",
                                "measure": m,
                                "score": score(m, X, Y),
                            }
                        )
    return rows


def singles(emb: dict[str, Any]) -> list[dict[str, Any]]:
    """Each frame alone against each caption alone, and how alike an item's frames (captions) are: the mean
    cosine between two views of the same verse against two views of different verses."""
    rows = []
    for a, b in PAIRS:
        A, T = emb["audio"][a], emb["text"][b]
        for j, c in itertools.product(range(A.shape[0]), range(T.shape[0])):
            for m in MEASURES:
                rows.append(
                    {
                        "kind": "single",
                        "pair": f"{a}×{b}",
                        "frame": emb["frames"][j],
                        "caption": CAPTIONS[c],
                        "measure": m,
                        "score": score(m, A[j], T[c]),
                    }
                )
    for side, spaces in (("audio", emb["audio"]), ("text", emb["text"])):
        for layer, V in spaces.items():
            U = V - V.mean(axis=(0, 1))  # centred over all views and items, then cosine
            U /= np.linalg.norm(U, axis=-1, keepdims=True)
            same, other = [], []
            for i, j in itertools.combinations(range(U.shape[0]), 2):
                G = U[i] @ U[j].T
                same.append(float(np.mean(np.diag(G))))
                other.append(float((G.sum() - np.trace(G)) / (G.size - len(G))))
            rows.append(
                {
                    "kind": "view-similarity",
                    "side": side,
                    "layer": layer,
                    "cos_same_item": float(np.mean(same)),
                    "cos_other_items": float(np.mean(other)),
                }
            )
    return rows


def cells(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        out.setdefault((r["design"], r["pair"], r["measure"], r["n_f"], r["n_c"]), []).append(r["score"])
    return [
        {
            "design": de,
            "pair": p,
            "measure": m,
            "n_f": nf,
            "n_c": nc,
            "mean": float(np.mean(v)),
            "std": float(np.std(v, ddof=1)),
            "min": float(np.min(v)),
            "max": float(np.max(v)),
            "draws": len(v),
        }
        for (de, p, m, nf, nc), v in out.items()
    ]


def fits(rows: list[dict[str, Any]], cell_rows: list[dict[str, Any]], n_boot: int) -> list[dict[str, Any]]:
    """The two-variable law per (pair, measure): on the cell means with free S_∞ and with S_∞ in [0, 1]
    (residual bootstrap), and on every draw's score with free S_∞ (cell bootstrap: the draws' spread enters)."""
    from alignkit.stats.scaling import fit_scaling_law

    out = []
    for de, pair, m in dict.fromkeys((r["design"], r["pair"], r["measure"]) for r in cell_rows):
        g = [r for r in cell_rows if (r["design"], r["pair"], r["measure"]) == (de, pair, m)]
        y, nf, nc = (np.array([r[k] for r in g]) for k in ("mean", "n_f", "n_c"))
        first = float(y[(nf == 1) & (nc == 1)][0])
        d = [r for r in rows if (r["design"], r["pair"], r["measure"]) == (de, pair, m)]
        yd, nfd, ncd = (np.array([r[k] for r in d]) for k in ("score", "n_f", "n_c"))
        variants = (
            ("cell means", y, nf, nc, None, "residuals"),
            ("cell means", y, nf, nc, (0.0, 1.0), "residuals"),
            ("draws", yd, nfd, ncd, None, "cells"),
        )
        for points, yy, ff, cc, bounds, resample in variants:
            res = fit_scaling_law(yy, ff, cc, n_boot=n_boot, seed=0, s_inf_range=bounds, resample=resample)
            out.append(
                {
                    "design": de,
                    "pair": pair,
                    "measure": m,
                    "points": points,
                    **res.as_dict(),
                    "law": str(res),
                    "score_1_1": first,
                    "score_max_grid": float(y.max()),
                    "gain_grid": float(y.max()) - first,
                }
            )
    return out


def plot(cell_rows: list[dict[str, Any]], fit_rows: list[dict[str, Any]], path: Path) -> None:
    """Score against n_f, one line per n_c (bars: ± one std over draws), the free fit dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["pair"], r["measure"]) for r in cell_rows))
    fig, axes = plt.subplots(len(DESIGNS), len(panels), figsize=(4.2 * len(panels), 3.8 * len(DESIGNS)), squeeze=False)
    grid_nf = np.linspace(min(N_F), max(N_F), 100)
    for (row, de), (col, (pair, m)) in itertools.product(enumerate(DESIGNS), enumerate(panels)):
        ax = axes[row, col]
        key = (de, pair, m)
        p = next(
            f
            for f in fit_rows
            if (f["design"], f["pair"], f["measure"], f["points"]) == (*key, "cell means") and f["s_inf_range"] is None
        )
        for i, n_c in enumerate(N_C):
            g = sorted(
                (r for r in cell_rows if (r["design"], r["pair"], r["measure"]) == key and r["n_c"] == n_c),
                key=lambda r: r["n_f"],
            )
            color = f"C{i}"
            ax.errorbar(
                [r["n_f"] for r in g],
                [r["mean"] for r in g],
                yerr=[r["std"] for r in g],
                fmt="o",
                color=color,
                capsize=2,
                label=f"n_c = {n_c}",
            )
            law = p["S_inf"] - (p["C_f"] * grid_nf ** -p["alpha"] + p["C_c"] * n_c ** -p["beta"])
            ax.plot(grid_nf, law, "--", color=color, lw=1)
        ax.set_title(
            f"{de}: {m}, Whisper {pair.replace('×', ' × MiniLM ')}\nR² = {p['r2']:.3f}, "
            f"S∞ = {p['S_inf']:.3f} [{p['S_inf_low']:.3f}, {p['S_inf_high']:.3f}]",
            fontsize=9,
        )
        ax.set_xlabel("n_f (voices averaged per verse)")
        ax.set_ylabel(m)
        ax.set_xticks(N_F)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def tables(cell_rows: list[dict[str, Any]], fit_rows: list[dict[str, Any]]) -> str:
    """Markdown: the grid of cell means (± std over draws) per (pair, measure), and the fits."""
    out = []
    for de, pair, m in dict.fromkeys((r["design"], r["pair"], r["measure"]) for r in cell_rows):
        cell = {(r["n_f"], r["n_c"]): r for r in cell_rows if (r["design"], r["pair"], r["measure"]) == (de, pair, m)}
        out.append(f"\n**{m}** ({de} draws), Whisper `{pair.split('×')[0]}` × MiniLM `{pair.split('×')[1]}`\n")
        out.append("| n_c \\ n_f | " + " | ".join(map(str, N_F)) + " |")
        out.append("|---" * (len(N_F) + 1) + "|")
        for n_c in N_C:
            vals = [f"{cell[(nf, n_c)]['mean']:.3f} ± {cell[(nf, n_c)]['std']:.3f}" for nf in N_F]
            out.append(f"| {n_c} | " + " | ".join(vals) + " |")
    out.append("\n| design | pair | measure | points | S_∞ range | R² | S_∞ | C_f | α | C_c | β |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for f in fit_rows:

        def ci(k: str, f: dict[str, Any] = f) -> str:
            return f"{f[k]:.3g} [{f[k + '_low']:.3g}, {f[k + '_high']:.3g}]"

        rng = "free" if f["s_inf_range"] is None else str(f["s_inf_range"])
        out.append(
            f"| {f['design']} | {f['pair']} | {f['measure']} | {f['points']} | {rng} | {f['r2']:.4f} | "
            f"{ci('S_inf')} | {ci('C_f')} | {ci('alpha')} | {ci('C_c')} | {ci('beta')} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir(p, "bible/verses.tsv.gz, for the King James texts")
    p.add_argument("--data", type=Path, default=None, help="the verses TSV itself (overrides --data-dir)")
    p.add_argument("--n", type=int, default=200, help="verses (drawn among the speech ↔ text example's 1,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draws", type=int, default=10, help="random frame/caption subsets per cell")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--embed-only", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("ALIGNKIT_CACHE", str(DEFAULT_CACHE))
    tsv = data_path(args, "bible/verses.tsv.gz", override=args.data, what="King James texts")
    t0 = time.perf_counter()
    emb = embed(args.n, args.seed, tsv)
    print(f"embeddings: {time.perf_counter() - t0:.0f}s", flush=True)
    if args.embed_only:
        return
    t1 = time.perf_counter()
    rows = grid(emb, args.draws, args.seed)
    cell_rows = cells(rows)
    extra = singles(emb)
    print(f"grid: {len(rows)} scores, {time.perf_counter() - t1:.0f}s", flush=True)
    t1 = time.perf_counter()
    fit_rows = fits(rows, cell_rows, args.n_boot)
    print(f"fits: {time.perf_counter() - t1:.0f}s", flush=True)
    from class_separation import write_csv

    meta = {
        "kind": "meta",
        "n": args.n,
        "seed": args.seed,
        "draws": args.draws,
        "frames": emb["frames"],
        "captions": list(CAPTIONS),
        "pairs": [f"{a}×{b}" for a, b in PAIRS],
        "measures": MEASURES,
    }
    write_jsonl([meta] + [{"kind": "cell-draw", **r} for r in rows] + extra, RESULTS / "test_time_scaling.jsonl")
    write_csv(cell_rows, RESULTS / "test_time_scaling_cells.csv")
    write_csv([{k: v for k, v in f.items()} for f in fit_rows], RESULTS / "test_time_scaling_fits.csv")
    plot(cell_rows, fit_rows, FIGURES / "test_time_scaling.png")
    print(tables(cell_rows, fit_rows))
    for r in extra:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "kind"})
    print(f"total: {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
