"""Experiment 2 of issue 4: image ↔ text alignment on Fashion-MNIST, zero-shot classification, best vs last layer.

Images (``offline:mobilenet-v2``, every block, ``--input-size`` pixels) are paired with captions built from
their class name and the CLIP-style templates of ``alignkit.data.captions.CAPTION_TEMPLATES`` (template chosen by a
seeded draw per image), embedded by ``offline:minilm-l6``. Layer selection follows STRUCTURE (Gröger, Wen,
Le & Brbić, "With Limited Data for Multimodal Alignment, Let the STRUCTURE Guide You", NeurIPS 2025): mutual
kNN (k by the rice rule) on ``--select-sample`` *training* pairs over every MobileNetV2 block × the MiniLM
final layer; the best block is compared with the last block (``block_18``, the pooled pre-logits).

For each (layer choice, head, seed) two trainable heads are fitted with InfoNCE on ``--n-train`` pairs, then
zero-shot top-1 on ``--n-test`` t10k images: class prototypes are the mean over templates of the aligned
caption embeddings (Radford et al., "Learning transferable visual models from natural language supervision",
ICML 2021). The held-out run drops ``--heldout`` classes from the training pairs (and from layer selection)
and reports accuracy on those classes' test images among all classes and among the held-out ones only.

Run (from the repository root)::

    export ALIGNKIT_DATA=DIR    # holds fashion-mnist/ (or pass --data-dir DIR)
    .venv/bin/python examples/zero_shot_fashion.py --seeds 0 1 2 --out examples/results/zero_shot_fashion.jsonl

Data: the Fashion-MNIST IDX files (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-…``) in
``DIR/fashion-mnist/`` with ``--data-dir DIR`` or ``ALIGNKIT_DATA=DIR`` (or ``--data FOLDER`` naming that folder).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from _data import DEFAULT_CACHE, add_data_dir, data_path
from alignkit.align import HeadAligner
from alignkit.atlas import atlas
from alignkit.data import IDXImages, InMemory
from alignkit.data.base import Subset
from alignkit.data.captions import CAPTION_TEMPLATES
from alignkit.encoders import load_encoder
from alignkit.evaluate import summarize, zero_shot
from alignkit.io import atomic_write_text
from alignkit.store import EmbeddingStore

FASHION = "fashion-mnist"  # below --data-dir / $ALIGNKIT_DATA: the IDX files of Fashion-MNIST
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_split(root: Path, part: str, n: int, seed: int) -> Subset:
    full = IDXImages(
        root / f"{part}-images-idx3-ubyte.gz", root / f"{part}-labels-idx1-ubyte.gz", class_names=CLASSES, name=part
    )
    rows = np.sort(np.random.default_rng(seed).choice(len(full), size=n, replace=False))
    return Subset(full, rows, name=f"fashion-mnist-{part}-{n}-s{seed}")


def select_block(img: dict[str, np.ndarray], txt: np.ndarray, rows: np.ndarray, n: int, seed: int) -> tuple[str, Any]:
    """Best MobileNetV2 block by mutual kNN (rice k) against the MiniLM final layer, on a sample of training rows."""
    pick = np.random.default_rng(seed).choice(rows, size=min(n, rows.size), replace=False)
    blocks = {b: img[b][pick] for b in img if b.startswith("block_")}
    res = atlas(blocks, {"final": txt[pick]}, "mutual_knn", k="rice")
    return res.best[0], res


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    store = EmbeddingStore(args.cache)
    t0 = time.perf_counter()
    train = load_split(args.data, "train", args.n_train, args.data_seed)
    test = load_split(args.data, "t10k", args.n_test, args.data_seed)
    venc = load_encoder("offline:mobilenet-v2", input_size=args.input_size)
    img_tr = {k: np.asarray(v, dtype=np.float64) for k, v in store.extract(venc, train, progress=False).items()}
    img_te = {k: np.asarray(v, dtype=np.float64) for k, v in store.extract(venc, test, progress=False).items()}
    t_img = time.perf_counter() - t0
    # captions are class × template strings: embed the 10·T distinct ones once (class-major for the prototypes)
    T = len(CAPTION_TEMPLATES)
    texts = [tpl.format(c.lower()) for c in CLASSES for tpl in CAPTION_TEMPLATES]
    tenc = load_encoder("offline:minilm-l6")
    txt_all = store.extract(tenc, InMemory(texts, "text", name="fashion-caption-templates"), ["final"], progress=False)
    txt = np.asarray(txt_all["final"], dtype=np.float64)
    took = time.perf_counter() - t0
    print(
        f"embedded {len(train)} train + {len(test)} test images, {len(texts)} captions: {took:.0f}s (img {t_img:.0f}s)"
    )
    y_tr, y_te = np.asarray(train.labels), np.asarray(test.labels)
    tpl_tr = np.random.default_rng(args.data_seed + 1).integers(T, size=len(train))
    cap_tr = txt[y_tr * T + tpl_tr]  # caption embedding of each training image
    held = [CLASSES.index(c) for c in args.heldout]
    rows: list[dict[str, Any]] = []
    atlas_rows: list[dict[str, Any]] = []
    for condition in ("all-classes", "heldout"):
        keep = np.flatnonzero(~np.isin(y_tr, held)) if condition == "heldout" else np.arange(len(train))
        best, res = select_block(img_tr, cap_tr, keep, args.select_sample, args.data_seed)
        for r in res.to_rows():
            atlas_rows.append({**r, "condition": condition})
        scores = dict(zip(res.names_a, res.scores[:, 0], strict=True))
        print(
            f"[{condition}] best block {best} (mutual kNN {scores[best]:.3f}); last block_18 {scores['block_18']:.3f}"
        )
        for choice, block in (("best", best), ("last", "block_18")):
            for head in args.heads:
                for seed in args.seeds:
                    t1 = time.perf_counter()
                    al = HeadAligner(
                        head=head, loss=args.loss, d_out=args.d_out, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, seed=seed,
                    ).fit(img_tr[block][keep], cap_tr[keep])  # fmt: skip
                    fit_s = time.perf_counter() - t1
                    tags = {
                        "condition": condition, "layer_choice": choice, "block": block, "head": head,
                        "loss": args.loss, "seed": seed, "n_train_pairs": int(keep.size),
                        "fit_seconds": round(fit_s, 2),
                    }  # fmt: skip
                    out = zero_shot(
                        al.transform_x(img_te[block]), al.transform_y(txt), y_te, templates_per_class=T,
                        heldout_classes=held if condition == "heldout" else None, **tags,
                    )  # fmt: skip
                    rows.extend(out)
                    top1 = {r["metric"]: r["value"] for r in out if r["metric"] != "class_top1"}
                    extra = (
                        f" held-out among all {top1['heldout_top1_among_all']:.3f}, "
                        f"among held-out {top1['heldout_top1_among_heldout']:.3f}"
                        if condition == "heldout"
                        else ""
                    )
                    print(
                        f"  {choice:4s} {block:8s} {head:6s} seed {seed}: top1 {top1['top1']:.3f}{extra} ({fit_s:.1f}s)"
                    )
    return rows, atlas_rows


def print_table(rows: list[dict[str, Any]]) -> None:
    keep = [r for r in rows if r["metric"] in ("top1", "heldout_top1_among_all", "heldout_top1_among_heldout")]
    summ = summarize(keep, by=["condition", "layer_choice", "block", "head"])
    print(f"\n{'condition':12s} {'layer':5s} {'block':8s} {'head':6s} {'metric':27s} {'n':>2s} {'mean':>6s} {'CI':>6s}")
    for s in summ:
        print(
            f"{s['condition']:12s} {s['layer_choice']:5s} {s['block']:8s} {s['head']:6s} {s['metric']:27s} {s['n']:2d} "
            f"{s['mean']:6.3f} {s['ci_halfwidth']:7.3f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_dir(p, f"{FASHION}/*-idx?-ubyte.gz")
    p.add_argument("--data", type=Path, default=None, help=f"the folder of the IDX files (default: DATA_DIR/{FASHION})")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--input-size", type=int, default=112)
    p.add_argument("--select-sample", type=int, default=1000)
    p.add_argument("--heads", nargs="+", default=["linear"])
    p.add_argument("--loss", default="infonce")
    p.add_argument("--d-out", type=int, default=256)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--heldout", nargs="+", default=["Sandal", "Bag", "Ankle boot"])
    p.add_argument("--out", type=Path, default=Path("examples/results/zero_shot_fashion.jsonl"))
    args = p.parse_args()
    args.data = data_path(args, FASHION, override=args.data, what="Fashion-MNIST (IDX files)")
    t0 = time.perf_counter()
    rows, atlas_rows = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in rows))
    atlas_out = args.out.with_name(args.out.stem + "_atlas.jsonl")
    atomic_write_text(atlas_out, "".join(json.dumps(r, default=str) + "\n" for r in atlas_rows))
    print_table(rows)
    print(f"\n{len(rows)} rows -> {args.out}; atlas -> {atlas_out}; wall time {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
