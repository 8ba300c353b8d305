"""Experiment 3 of issue 4: word-level bilingual lexicon induction (BLI) English → French on FreeDict.

English words go through ``offline:minilm-l6`` (English-only sentence encoder) and French words through
``offline:e5-small`` (multilingual E5), final layers. A map learned from a few thousand dictionary pairs
(orthogonal Procrustes, or trained heads under InfoNCE) is scored by BLI P@1/5/10 with nearest-neighbour
and CSLS retrieval (Conneau et al., "Word translation without parallel data", ICLR 2018) over every
French word of the dictionary.

Data: ``DIR/freedict/eng-fra.tsv.gz`` with ``--data-dir DIR`` or ``ALIGNKIT_DATA=DIR`` (or ``--dictionary FILE``;
GPL, read in place, never bundled), a TSV with columns ``en`` and ``fra``. Entries are kept when both
sides are one lowercase word of letters only. Headwords are split with a seed: ``--n-test`` test source words
(all their translations are gold), the rest give at most ``--max-train`` training pairs (one translation each,
drawn with the seed).

Run (from the repository root)::

    .venv/bin/python examples/bli_freedict.py --data-dir DIR --seeds 0 1 2 --out examples/results/bli_freedict.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from _data import DEFAULT_CACHE, add_data_dir, data_path
from alignkit.align import HeadAligner, Procrustes
from alignkit.data import InMemory
from alignkit.encoders import load_encoder
from alignkit.evaluate import bli, summarize
from alignkit.io import atomic_write_text
from alignkit.store import EmbeddingStore

WORD = re.compile(r"^[^\W\d_]+$")
DICTIONARY = "freedict/eng-fra.tsv.gz"  # below --data-dir / $ALIGNKIT_DATA


def read_dictionary(path: Path) -> dict[str, set[str]]:
    """en word → set of French words; single-word entries of letters only, lowercased."""
    gold: dict[str, set[str]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        i_en, i_fr = header.index("en"), header.index("fra")
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) <= max(i_en, i_fr):
                continue
            en, fr = cols[i_en].strip(), cols[i_fr].strip()
            # "00database..." rows are dictd metadata, not entries; keep only lowercase words as written
            if en.startswith("00") or en != en.lower() or fr != fr.lower():
                continue
            if WORD.match(en) and WORD.match(fr):
                gold.setdefault(en, set()).add(fr)
    return gold


def split(gold: dict[str, set[str]], n_test: int, max_train: int, seed: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Seeded split of headwords: test words, and training pairs (one random translation per train headword)."""
    rng = np.random.default_rng(seed)
    heads = sorted(gold)
    perm = rng.permutation(len(heads))
    test = [heads[i] for i in perm[:n_test]]
    train_heads = [heads[i] for i in perm[n_test:]][:max_train]
    train = [(en, sorted(gold[en])[rng.integers(len(gold[en]))]) for en in train_heads]
    return test, train


def embed(store: EmbeddingStore, encoder_id: str, words: list[str], name: str, **options: Any) -> np.ndarray:
    enc = load_encoder(encoder_id, **options)
    ds = InMemory(words, "text", name=name)
    return np.asarray(store.extract(enc, ds, ["final"], progress=False)["final"], dtype=np.float64)


def make_aligner(method: str, seed: int, epochs: int) -> Any:
    if method == "procrustes":
        return Procrustes(normalize=True)
    if method == "procrustes-center":
        return Procrustes(normalize=True, center=True)
    head, loss = method.split("-")
    return HeadAligner(
        head=head,
        loss=loss,
        d_out=384,
        epochs=epochs,
        batch_size=512,
        lr=1e-3,
        seed=seed,
        val_fraction=0.1,
        patience=10,
    )


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    gold_words = read_dictionary(args.dictionary)
    en_vocab = sorted(gold_words)
    fr_vocab = sorted(set().union(*gold_words.values()))
    en_index = {w: i for i, w in enumerate(en_vocab)}
    fr_index = {w: i for i, w in enumerate(fr_vocab)}
    print(f"dictionary: {len(en_vocab)} English headwords, {len(fr_vocab)} French words, "
          f"{sum(map(len, gold_words.values()))} pairs")  # fmt: skip
    store = EmbeddingStore(args.cache)
    t0 = time.perf_counter()
    E = embed(store, "offline:minilm-l6", en_vocab, "freedict-eng-fra-en")
    t_en = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    for prefix in args.e5_prefixes:
        t0 = time.perf_counter()
        F = embed(store, "offline:e5-small", fr_vocab, "freedict-eng-fra-fr", prefix=prefix)
        t_fr = time.perf_counter() - t0
        print(f"embedded: en {E.shape} ({t_en:.1f}s), fr {F.shape} prefix={prefix!r} ({t_fr:.1f}s)")
        for seed in args.seeds:
            test, train = split(gold_words, args.n_test, args.max_train, seed)
            X = E[[en_index[en] for en, _ in train]]
            Y = F[[fr_index[fr] for _, fr in train]]
            gold = {en_index[w]: {fr_index[f] for f in gold_words[w]} for w in test}
            for method in args.methods:
                t0 = time.perf_counter()
                al = make_aligner(method, seed, args.epochs).fit(X, Y)
                fit_s = time.perf_counter() - t0
                src = np.asarray(al.transform_x(E))
                tgt = np.asarray(al.transform_y(F))
                tags = {"method": method, "e5_prefix": prefix, "seed": seed, "n_train_pairs": len(train)}
                out = bli(src, tgt, gold, csls_k=10, **tags)
                for r in out:
                    r["fit_seconds"] = round(fit_s, 3)
                rows.extend(out)
                p1 = {r["scoring"]: r["value"] for r in out if r["metric"] == "P@1" and r["subset"] == "covered"}
                print(f"  seed {seed} {method:18s} P@1 nn={p1['nn']:.3f} csls={p1['csls']:.3f} (fit {fit_s:.1f}s)")
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    covered = [r for r in rows if r["metric"] == "coverage" or r.get("subset") == "covered"]
    summ = summarize(covered, by=["e5_prefix", "method", "scoring"])
    print(f"\n{'e5 prefix':10s} {'method':18s} {'scoring':7s} {'metric':9s} {'n':>2s} {'mean':>7s} {'±95% CI':>8s}")
    for s in summ:
        print(
            f"{s['e5_prefix']!r:10s} {s['method']:18s} {s['scoring']!s:7s} {s['metric']:9s} {s['n']:2d} "
            f"{s['mean']:7.3f} {s['ci_halfwidth']:8.3f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_dir(p, DICTIONARY)
    p.add_argument("--dictionary", type=Path, default=None, help=f"the dictionary (default: DATA_DIR/{DICTIONARY})")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-test", type=int, default=1500)
    p.add_argument("--max-train", type=int, default=5000)
    p.add_argument("--methods", nargs="+", default=["procrustes", "procrustes-center", "linear-infonce"])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--e5-prefixes", nargs="+", default=["passage: ", "query: "])
    p.add_argument("--out", type=Path, default=Path("examples/results/bli_freedict.jsonl"))
    args = p.parse_args()
    args.dictionary = data_path(args, DICTIONARY, override=args.dictionary, what="the FreeDict eng-fra dictionary")
    t0 = time.perf_counter()
    rows = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in rows))
    print_table(rows)
    print(f"\n{len(rows)} rows -> {args.out}; wall time {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
