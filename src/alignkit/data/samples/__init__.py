"""Small real samples shipped with alignkit (made by ``scripts/make_samples.py``; provenance in ``SAMPLES.json``).

- :func:`bible_pairs`: the 2,000 Bible verses of the bundled demo embeddings (refs in
  ``bible_demo.json``), English (World English Bible) and Spanish (Reina-Valera 1909), both public
  domain, as two views of one parallel corpus (ids = verse refs such as ``"Gen.1.6"``).
- :func:`fashion_mnist_sample`: 1,000 Fashion-MNIST test images, 100 per class (Xiao et al. 2017,
  "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms"; MIT licence).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.data.image import IDXImages
from alignkit.data.text import ParallelCorpus, TextTable

SAMPLES_DIR = Path(__file__).resolve().parent
BIBLE_FILE = "bible_en_es.tsv.gz"
FASHION_IMAGES_FILE = "fashion-mnist-sample-images-idx3-ubyte.gz"
FASHION_LABELS_FILE = "fashion-mnist-sample-labels-idx1-ubyte.gz"
INFO_FILE = "SAMPLES.json"
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def sample_path(name: str) -> Path:
    """Path of a bundled sample file, with a clear error when the installation lacks it."""
    p = SAMPLES_DIR / name
    if not p.is_file():
        raise FileNotFoundError(
            f"bundled sample file alignkit/data/samples/{name} is missing; reinstall alignkit or rebuild it "
            "with scripts/make_samples.py"
        )
    return p


def samples_info() -> dict[str, Any]:
    """Sources, selection, seeds and licences of the bundled samples."""
    return json.loads(sample_path(INFO_FILE).read_text(encoding="utf-8"))


def bible_corpus() -> ParallelCorpus:
    """The bundled verse-aligned English/Spanish corpus (columns ``en``, ``es``; ids = verse refs)."""
    return ParallelCorpus(sample_path(BIBLE_FILE), columns=("en", "es"), id_column="ref", name="bible")


def bible_pairs() -> tuple[TextTable, TextTable]:
    """``(english, spanish)``: two text datasets of the same 2,000 verses, row-paired, ids = verse refs.

    The rows follow ``bible_demo.json``'s refs, so they line up with :func:`alignkit.demo_data.load_bible_demo`.
    """
    en, es = bible_corpus().views()
    return en, es


def fashion_mnist_sample() -> IDXImages:
    """1,000 Fashion-MNIST test images (28×28 uint8), 100 per class, labels 0–9 with their class names."""
    return IDXImages(
        sample_path(FASHION_IMAGES_FILE),
        sample_path(FASHION_LABELS_FILE),
        class_names=FASHION_MNIST_CLASSES,
        name="fashion-mnist-sample",
    )
