"""Make the small real samples bundled in ``alignkit.data.samples`` (and record their provenance).

Writes, into ``src/alignkit/data/samples/``:

    bible_en_es.tsv.gz                           ref, en (World English Bible), es (Reina-Valera 1909):
                                                 the 2,000 verses of bible_demo.json, in its row order
    fashion-mnist-sample-images-idx3-ubyte.gz    1,000 Fashion-MNIST test images, 100 per class
    fashion-mnist-sample-labels-idx1-ubyte.gz    their labels (0 T-shirt/top ... 9 Ankle boot)
    SAMPLES.json                                 sources (with sha256), selection, seed, licences

Sources (see shared/data/README.md): ``bible/verses.tsv.gz`` (Debian sword-text-web /
sword-text-sparv; public domain) and ``fashion-mnist/t10k-*`` (Debian dataset-fashion-mnist; MIT).
The FreeDict dictionaries there are GPL and are never bundled. Outputs are byte-reproducible
(gzip with mtime 0). Usage: ``.venv/bin/python scripts/make_samples.py [--data-dir DIR] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

from alignkit.data.image import read_idx, write_idx
from alignkit.data.samples import (
    BIBLE_FILE,
    FASHION_IMAGES_FILE,
    FASHION_LABELS_FILE,
    FASHION_MNIST_CLASSES,
    INFO_FILE,
    SAMPLES_DIR,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gz_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def make_bible(src: Path, out: Path) -> dict:
    """The verses of bible_demo.json (same refs, same order) with their English and Spanish texts."""
    refs = json.loads((SAMPLES_DIR / "bible_demo.json").read_text(encoding="utf-8"))["refs"]
    csv.field_size_limit(1 << 24)
    with gzip.open(src, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        texts = {r["ref"]: ((r["en_web"] or "").strip(), (r["es_rv1909"] or "").strip()) for r in reader}
    lines = ["ref\ten\tes"]
    for ref in refs:
        en, es = texts[ref]
        if not en or not es:
            raise SystemExit(f"{src}: verse {ref} lacks a text")
        for t in (ref, en, es):
            if "\t" in t or "\n" in t or "\r" in t:
                raise SystemExit(f"{src}: verse {ref} holds a tab or line break")
        lines.append(f"{ref}\t{en}\t{es}")
    (out / BIBLE_FILE).write_bytes(gz_bytes(("\n".join(lines) + "\n").encode("utf-8")))
    return {
        "file": BIBLE_FILE,
        "sha256": sha256(out / BIBLE_FILE),
        "rows": len(refs),
        "columns": {"ref": "OSIS verse ref", "en": "World English Bible", "es": "Reina-Valera 1909"},
        "selection": "the refs of bible_demo.json (the bundled demo embeddings), in that order",
        "source": {
            "file": "shared/data/bible/verses.tsv.gz",
            "sha256": sha256(src),
            "columns": ["en_web", "es_rv1909"],
            "debian_packages": ["sword-text-web", "sword-text-sparv"],
        },
        "licence": "public domain (World English Bible; Reina-Valera 1909)",
    }


def make_fashion(src_dir: Path, out: Path, seed: int, per_class: int) -> dict:
    images_src = src_dir / "t10k-images-idx3-ubyte.gz"
    labels_src = src_dir / "t10k-labels-idx1-ubyte.gz"
    images, labels = read_idx(images_src), read_idx(labels_src)
    rng = np.random.default_rng(seed)
    picked = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)])
    )
    write_idx(out / FASHION_IMAGES_FILE, images[picked])
    write_idx(out / FASHION_LABELS_FILE, labels[picked].astype(np.uint8))
    return {
        "files": {
            FASHION_IMAGES_FILE: sha256(out / FASHION_IMAGES_FILE),
            FASHION_LABELS_FILE: sha256(out / FASHION_LABELS_FILE),
        },
        "rows": int(picked.size),
        "per_class": per_class,
        "class_names": FASHION_MNIST_CLASSES,
        "seed": seed,
        "selection": (
            "for each class c = 0..9: numpy.random.default_rng(seed).choice(indices of class c, per_class, "
            "replace=False) (one generator, classes in order); the union sorted by test-set index"
        ),
        "test_set_indices": picked.tolist(),
        "source": {
            "files": {p.name: sha256(p) for p in (images_src, labels_src)},
            "path": "shared/data/fashion-mnist/",
            "debian_package": "dataset-fashion-mnist",
            "citation": "Xiao, Rasul & Vollgraf (2017), Fashion-MNIST, arXiv:1708.07747",
        },
        "licence": "MIT (Expat), Zalando SE",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--out", type=Path, default=SAMPLES_DIR, help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="seed of the Fashion-MNIST selection")
    ap.add_argument("--per-class", type=int, default=100, help="Fashion-MNIST images per class")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    info = {
        "description": "Small real samples bundled with alignkit; made by scripts/make_samples.py",
        "command": " ".join(["python scripts/make_samples.py", *sys.argv[1:]]),
        "date": date.today().isoformat(),
        "bible": make_bible(args.data_dir / "bible" / "verses.tsv.gz", args.out),
        "fashion_mnist": make_fashion(args.data_dir / "fashion-mnist", args.out, args.seed, args.per_class),
        "not_bundled": "FreeDict dictionaries (GPL)",
    }
    (args.out / INFO_FILE).write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {BIBLE_FILE}, {FASHION_IMAGES_FILE}, {FASHION_LABELS_FILE}, {INFO_FILE} in {args.out}")


if __name__ == "__main__":
    main()
