"""VL-SAE concept overlap: do true pairs share more sparse concepts than shuffled pairs?

VL-SAE (Shen et al., "VL-SAE: Interpreting and Enhancing Vision-Language Alignment with a Unified Concept Set",
NeurIPS 2025) trains one TopK sparse autoencoder whose encoder is shared by both spaces, so each item gets a set
of k active "concepts" whatever its modality. The diagnostic (``alignkit.diagnostics.vlsae``): the mean Jaccard
overlap of the active sets of an item's two views, against the same mean over pairs whose Y rows are permuted.

The shared encoder needs X and Y in **one coordinate system of one width** (the paper uses CLIP's joint space).
Our spaces come from unrelated unimodal models, so each is first mapped into a common space by an aligner
fitted on pairs that the VL-SAE never sees:

- ``fashion``: Fashion-MNIST images (``offline:mobilenet-v2``, final pooled layer, 1,280-d) ↔ captions "a photo
  of a {class}." (5 templates, ``offline:minilm-l6``, 384-d), built as in ``zero_shot_fashion.py``
  (``_data.fashion_pairs``). ``--n-train`` training images are split in half (seeded by ``--data-seed``): the
  first half fits the aligner, the second the VL-SAE; the ``--n-test`` t10k images with their captions are the
  held-out pairs. Aligners: ``linear-infonce`` (``HeadAligner(head="linear", loss="infonce", d_out=256,
  epochs=5, batch_size=256, lr=1e-3)``, zero_shot_fashion's; both sides go to its 256-d unit sphere) and
  ``procrustes-c`` (``Procrustes(normalize=True, center=True)``: images mapped into the centred caption space,
  384-d).
- ``bible``: English WEB verses (``offline:minilm-l6``) ↔ Spanish RV1909 verses (``offline:e5-small``), both
  384-d but two models' coordinate systems, embedded as in ``crosslingual.py`` (its cache, ``--max-train
  8000``): the 1,000 test verses are the held-out pairs, pool[:4000] fits the aligner, pool[4000:8000] the
  VL-SAE. Aligner ``procrustes-c`` (the best closed form of ``crosslingual.py``; the English side is mapped into
  the centred Spanish space); control ``raw``: no aligner, the two models' own coordinates (same width, unrelated
  axes: the setting the library warns measures nothing).

VL-SAE: the paper's defaults (hidden ratio 8, Adam lr 1e-3, batch 512, 2 warm-up epochs then cosine, 20 %
validation split) and k = h/16 (``default_topk``), but 50 epochs instead of 10 (``--sae-epochs``): the paper
trains on millions of pairs, and 10 epochs of 4,000 pairs (80 steps) leave the decoders far from fitted
(held-out R² below 0 for the Procrustes-mapped Fashion pairs). It is fitted with
``alignkit.diagnose("vlsae_concept_overlap", ...)`` on the VL-SAE pairs (overlap, shuffled baseline, dead units
and R² on those training pairs), then the fitted model is read on the held-out pairs (``concept_overlap``,
``dead_units``, ``reconstruction_r2``). Seeds (0, 1, 2) set the head init, the VL-SAE init / split / batch
order and the shuffles; the data split is fixed. Controls read on the held-out pairs: the mean cosine of true and
shuffled pairs in the mapped space, and the overlap under the same VL-SAE at its initialisation (random concept
directions; one epoch at lr 1e-12), which says how much of the overlap mere closeness of the two views gives.

Run (from the repository root; embeddings cached in ``$TMPDIR/alignkit-exp-cache``)::

    export ALIGNKIT_DATA=DIR    # holds fashion-mnist/ and bible/verses.tsv.gz (or pass --data-dir DIR)
    .venv/bin/python examples/vlsae_overlap.py                 # writes examples/results/vlsae_overlap.jsonl
    .venv/bin/python examples/vlsae_overlap.py --table examples/results/vlsae_overlap.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import alignkit
from _data import DEFAULT_CACHE, add_data_dir, data_path, fashion_pairs
from alignkit.align import HeadAligner, Procrustes
from alignkit.diagnostics.vlsae import VLSAE, concept_overlap, dead_units, reconstruction_r2
from alignkit.evaluate import retrieval, summarize, zero_shot
from alignkit.io import atomic_write_text

HERE = Path(__file__).resolve().parent
FASHION = "fashion-mnist"  # below --data-dir / $ALIGNKIT_DATA
VERSES = "bible/verses.tsv.gz"
ALIGNERS = {"fashion": ("linear-infonce", "procrustes-c"), "bible": ("procrustes-c", "raw")}


def fashion_spaces(args: argparse.Namespace) -> dict[str, Any]:
    """Aligner pairs, VL-SAE pairs and held-out pairs of the Fashion-MNIST image ↔ caption data."""
    d = fashion_pairs(
        args.fashion, n_train=args.n_train, n_test=args.n_test, data_seed=args.data_seed, input_size=args.input_size,
        cache=args.cache,
    )  # fmt: skip
    T, txt = d["T"], d["txt"]
    perm = np.random.default_rng(args.data_seed).permutation(args.n_train)
    half = args.n_train // 2
    cap_tr, cap_te = txt[d["y_tr"] * T + d["tpl_tr"]], txt[d["y_te"] * T + d["tpl_te"]]
    a, s = np.sort(perm[:half]), np.sort(perm[half:])
    return {
        "align": (d["img_tr"][a], cap_tr[a]),
        "sae": (d["img_tr"][s], cap_tr[s]),
        "heldout": (d["img_te"], cap_te),
        "prototypes": txt,
        "T": T,
        "y_te": d["y_te"],
    }


def bible_spaces(args: argparse.Namespace) -> dict[str, Any]:
    """The verse pairs of ``crosslingual.py`` (same split and cache): held-out = its test verses."""
    import crosslingual

    ns = argparse.Namespace(
        data=args.verses, n_test=args.bible_test, max_train=2 * args.bible_pool, data_seed=args.data_seed,
        cache=args.cache, progress=False,
    )  # fmt: skip
    emb = crosslingual.embed(ns)
    en, es = emb["en_minilm"].astype(np.float64), emb["es_e5"].astype(np.float64)
    t, p = args.bible_test, args.bible_pool
    return {
        "align": (en[t : t + p], es[t : t + p]),
        "sae": (en[t + p : t + 2 * p], es[t + p : t + 2 * p]),
        "heldout": (en[:t], es[:t]),
    }


def map_spaces(
    dataset: str, aligner: str, sp: dict[str, Any], args: argparse.Namespace, seed: int
) -> tuple[Any, dict[str, tuple[np.ndarray, np.ndarray]], float]:
    """Fit ``aligner`` on the aligner pairs; (model, {split: (X', Y') in one coordinate system}, aligner top-1)."""
    X, Y = sp["align"]
    if aligner == "raw":
        model = None
        mapped = {k: sp[k] for k in ("sae", "heldout")}
    else:
        if aligner == "linear-infonce":
            model = HeadAligner(
                head="linear", loss="infonce", d_out=args.d_out, epochs=args.epochs, batch_size=args.batch_size,
                lr=args.lr, seed=seed,
            ).fit(X, Y)  # fmt: skip
        elif aligner == "procrustes-c":
            model = Procrustes(normalize=True, center=True).fit(X, Y)
        else:
            raise ValueError(aligner)
        mapped = {}
        for k in ("sae", "heldout"):
            mapped[k] = (np.asarray(model.transform_x(sp[k][0])), np.asarray(model.transform_y(sp[k][1])))
    hx, hy = mapped["heldout"]
    if dataset == "fashion":  # zero-shot top-1 of the held-out images against the 10 class prototypes
        protos = sp["prototypes"] if model is None else np.asarray(model.transform_y(sp["prototypes"]))
        out = zero_shot(hx, protos, sp["y_te"], templates_per_class=sp["T"])
    else:  # top-1 retrieval EN→ES among the held-out verses
        out = [r for r in retrieval(hx, hy, ks=(1,)) if r["direction"] == "q_to_g"]
    top1 = next(r["value"] for r in out if r["metric"] in ("top1", "R@1"))
    return model, mapped, float(top1)


def run_one(dataset: str, aligner: str, sp: dict[str, Any], args: argparse.Namespace, seed: int) -> list[dict]:
    t0 = time.perf_counter()
    _, mapped, top1 = map_spaces(dataset, aligner, sp, args, seed)
    t_align = time.perf_counter() - t0
    base = {"dataset": dataset, "aligner": aligner, "seed": seed}
    (sx, sy), (hx, hy) = mapped["sae"], mapped["heldout"]
    base |= {"d": int(sx.shape[1]), "n_sae": int(sx.shape[0]), "n_heldout": int(hx.shape[0])}
    rows = [{**base, "split": "heldout", "metric": "aligner_top1", "value": top1}]
    t1 = time.perf_counter()
    res = alignkit.diagnose(
        "vlsae_concept_overlap", sx, sy, hidden_ratio=args.sae_hidden_ratio, topk=args.sae_topk, epochs=args.sae_epochs,
        warmup_epochs=args.sae_warmup, batch_size=args.sae_batch, lr=args.sae_lr, n_shuffles=args.n_shuffles,
        seed=seed,
    )  # fmt: skip
    t_sae = time.perf_counter() - t1
    sae = res.model
    train = {k: v for k, v in res.as_dict().items() if k != "value"}
    ov = concept_overlap(sae, hx, hy, n_shuffles=args.n_shuffles, seed=seed)
    dead = dead_units(sae, hx, hy)
    r2 = reconstruction_r2(sae, hx, hy)
    held = {**{k: v for k, v in ov.as_dict().items() if k != "value"}, **dead.as_dict(), **r2.as_dict()}
    held.pop("value")
    # modality-specific concepts: the share of an item's active units that no held-out item of the other space uses
    ax, ay = np.asarray(sae.active_sets(hx)), np.asarray(sae.active_sets(hy))
    for name, a, b in (("x_units_unused_by_y", ax, ay), ("y_units_unused_by_x", ay, ax)):
        used = np.zeros(sae.n_units_, dtype=bool)
        used[b.ravel()] = True
        held[name] = float(np.mean(~used[a]))
    perm = np.random.default_rng(seed).permutation(hx.shape[0])
    held["pair_cosine"], held["shuffled_cosine"] = _cos(hx, hy).mean(), _cos(hx, hy[perm]).mean()
    # control: the same VL-SAE at its initialisation (same seed; one epoch at lr 1e-12 moves no weight visibly),
    # i.e. random "concept" directions: how much overlap does mere closeness of the pair give?
    init = VLSAE(
        hidden_ratio=args.sae_hidden_ratio, topk=args.sae_topk, epochs=1, warmup_epochs=0, lr=1e-12,
        batch_size=args.sae_batch, seed=seed,
    ).fit(sx, sy)  # fmt: skip
    ov0 = concept_overlap(init, hx, hy, n_shuffles=args.n_shuffles, seed=seed)
    at_init = {"jaccard": ov0.jaccard, "shuffled_jaccard": ov0.shuffled_jaccard, "p_value": ov0.p_value}
    fit = {"aligner_seconds": round(t_align, 2), "sae_seconds": round(t_sae, 2)}
    for split, vals in (("train", train), ("heldout", held), ("init", at_init), ("fit", fit)):
        for k, v in vals.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None:
                rows.append({**base, "split": split, "metric": k, "value": float(v)})
    print(
        f"{dataset:7s} {aligner:14s} seed {seed}: aligner top-1 {top1:.3f}; held-out J {ov.jaccard:.3f} vs "
        f"shuffled {ov.shuffled_jaccard:.3f} (p {ov.p_value:.3f}, chance {ov.chance_jaccard:.3f}); dead "
        f"{dead.dead_fraction:.3f}; R² x {r2.r2_x:.3f} y {r2.r2_y:.3f}; train J {res.jaccard:.3f}; "
        f"{len(sae.history_)} epochs (best {sae.best_epoch_}); {t_align:.0f}s + {t_sae:.0f}s; at init J "
        f"{ov0.jaccard:.3f} vs {ov0.shuffled_jaccard:.3f}; pair cosine {held['pair_cosine']:.3f} vs shuffled "
        f"{held['shuffled_cosine']:.3f}",
        flush=True,
    )
    return rows


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --------------------------------------------------------------------------------------------- tables

#: (split, metric, header) of the two tables: the overlap and its controls; the VL-SAE's own fit
OVERLAP = (
    ("heldout", "aligner_top1", "aligner top-1"),
    ("heldout", "pair_cosine", "cos true"),
    ("heldout", "shuffled_cosine", "cos shuffled"),
    ("heldout", "jaccard", "J true pairs"),
    ("heldout", "shuffled_jaccard", "J shuffled"),
    ("heldout", "p_value", "p"),
    ("heldout", "chance_jaccard", "J random sets"),
    ("init", "jaccard", "J true, SAE at init"),
    ("init", "shuffled_jaccard", "J shuffled, SAE at init"),
    ("train", "jaccard", "J true (train)"),
    ("train", "shuffled_jaccard", "J shuffled (train)"),
)
FIT = (
    ("heldout", "dead_fraction", "dead units"),
    ("heldout", "dead_fraction_x", "units unused by X"),
    ("heldout", "dead_fraction_y", "units unused by Y"),
    ("heldout", "both", "units used by both"),
    ("heldout", "x_units_unused_by_y", "X's active units no Y uses"),
    ("heldout", "y_units_unused_by_x", "Y's active units no X uses"),
    ("heldout", "r2_x", "R² X"),
    ("heldout", "r2_y", "R² Y"),
    ("train", "dead_fraction", "dead (train)"),
    ("train", "r2_x", "R² X (train)"),
    ("train", "r2_y", "R² Y (train)"),
    ("train", "best_epoch", "best epoch"),
    ("fit", "sae_seconds", "fit (s)"),
)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: the overlap table and the fit table, one line per (dataset, aligner), mean ± 95 % CI over seeds."""
    summ = summarize(rows, by=("dataset", "aligner", "split"))
    cell = {(s["dataset"], s["aligner"], s["split"], s["metric"]): s for s in summ}
    combos = list(dict.fromkeys((r["dataset"], r["aligner"]) for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    out = [f"(mean ± 95 % CI over seeds {seeds}; held-out pairs unless marked train or init)"]
    for title, cols in (("concept overlap", OVERLAP), ("VL-SAE fit", FIT)):
        out += ["", f"{title}:", "", "| data | aligner | " + " | ".join(c[2] for c in cols) + " |"]
        out.append("|---" * (2 + len(cols)) + "|")
        for ds, al in combos:
            vals = []
            for split, metric, _ in cols:
                s = cell.get((ds, al, split, metric))
                if metric == "both":  # 1 − unused by X − unused by Y + unused by both (means are linear)
                    dx, dy, dd = (cell.get((ds, al, split, f"dead_fraction{m}")) for m in ("_x", "_y", ""))
                    vals.append("–" if None in (dx, dy, dd) else f"{1 - dx['mean'] - dy['mean'] + dd['mean']:.3f}")
                elif s is None:
                    vals.append("–")
                elif metric in ("p_value", "best_epoch", "sae_seconds"):
                    vals.append(f"{s['mean']:.3f}" if metric == "p_value" else f"{s['mean']:.0f}")
                else:
                    ci = "" if s["n"] < 2 or s["ci_halfwidth"] < 5e-4 else f" ± {s['ci_halfwidth']:.3f}"
                    vals.append(f"{s['mean']:.3f}{ci}")
            out.append(f"| {ds} | {al} | " + " | ".join(vals) + " |")
    first = {(r["dataset"], r["aligner"]): r for r in rows}
    out.append("")
    for (ds, al), r in first.items():
        ep = cell.get((ds, al, "train", "epochs_run"))
        out.append(
            f"- {ds} / {al}: d = {r['d']}, {r['n_sae']} VL-SAE pairs (80 % trained, 20 % validation), "
            f"{r['n_heldout']} held-out pairs; h = {_mean(cell, ds, al, 'n_units'):.0f}, "
            f"k = {_mean(cell, ds, al, 'k'):.0f}; epochs run {ep['mean'] if ep else float('nan'):.0f}"
        )
    return "\n".join(out)


def _mean(cell: dict, ds: str, al: str, metric: str) -> float:
    s = cell.get((ds, al, "train", metric))
    return float("nan") if s is None else s["mean"]


def load_rows(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]


def save(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_dir(p, f"{FASHION}/*-idx?-ubyte.gz and {VERSES}")
    p.add_argument("--fashion", type=Path, default=None, help=f"the Fashion-MNIST folder (default DATA_DIR/{FASHION})")
    p.add_argument("--verses", type=Path, default=None, help=f"the verses file (default DATA_DIR/{VERSES})")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--out", type=Path, default=HERE / "results" / "vlsae_overlap.jsonl")
    p.add_argument("--datasets", nargs="+", default=["fashion", "bible"], choices=["fashion", "bible"])
    p.add_argument("--aligners", nargs="+", default=None, help="subset of each dataset's aligners (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=10000, help="Fashion training images: half aligner, half VL-SAE")
    p.add_argument("--n-test", type=int, default=10000, help="Fashion held-out (t10k) images")
    p.add_argument("--input-size", type=int, default=112)
    p.add_argument("--bible-test", type=int, default=1000, help="held-out verses (crosslingual.py's test set)")
    p.add_argument("--bible-pool", type=int, default=4000, help="verses for the aligner, and as many for the VL-SAE")
    p.add_argument("--d-out", type=int, default=256)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sae-hidden-ratio", type=int, default=8)
    p.add_argument("--sae-topk", type=int, default=None, help="k (default: h/16, default_topk)")
    p.add_argument("--sae-epochs", type=int, default=50, help="the paper's 10 is too few steps for 4k pairs")
    p.add_argument("--sae-warmup", type=int, default=2)
    p.add_argument("--sae-batch", type=int, default=512)
    p.add_argument("--sae-lr", type=float, default=1e-3)
    p.add_argument("--n-shuffles", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", type=Path, nargs="+", default=None, metavar="JSONL", help="print the table and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.table:
        print(table(load_rows(args.table)))
        return
    if "fashion" in args.datasets:
        args.fashion = data_path(args, FASHION, override=args.fashion, what="Fashion-MNIST (IDX files)")
    if "bible" in args.datasets:
        args.verses = data_path(args, VERSES, override=args.verses, what="the parallel Bible verses")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for dataset in args.datasets:
        sp = fashion_spaces(args) if dataset == "fashion" else bible_spaces(args)
        for aligner in ALIGNERS[dataset]:
            if args.aligners and aligner not in args.aligners:
                continue
            for seed in args.seeds:
                rows += run_one(dataset, aligner, sp, args, seed)
                save(args.out, rows)
    print(f"\n{len(rows)} rows -> {args.out}; wall time {time.perf_counter() - t0:.0f}s\n")
    print(table(rows))


if __name__ == "__main__":
    main()
