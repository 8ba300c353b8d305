"""The end-to-end demo on real models and real data, fully offline.

1. Text: 2,000 bundled Bible verses, English through MiniLM-L6 and Spanish through
   multilingual-e5-small, every layer of both, cached in the embedding store; layer × layer atlases
   of mutual kNN and debiased CKA with max-statistic permutation nulls.
2. Images: 1,000 bundled Fashion-MNIST images through every block of MobileNetV2, against captions
   of their classes ("a photo of a sandal.", five templates) through every MiniLM layer; the same
   two atlases.

Orchestration only: models come from :mod:`alignkit.encoders`, data from :mod:`alignkit.data`,
caching from :mod:`alignkit.store`, scores from :func:`alignkit.atlas`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.atlas import AtlasResult, atlas
from alignkit.data import InMemory
from alignkit.data.base import Dataset
from alignkit.encoders import load_encoder
from alignkit.io import atomic_write_text
from alignkit.store import EmbeddingStore

CAPTION_TEMPLATES = (
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a centered photo of a {}, a piece of clothing.",
    "a close-up photo of the {}.",
)
MEASURES = (("mutual_knn", {"k": 10}), ("cka", {"debiased": True}))


@dataclass
class DemoPart:
    """One pair of models on one dataset: the atlases of each measure and how long things took."""

    title: str
    a: str  # description of space A
    b: str
    n: int
    atlases: dict[str, AtlasResult] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def captions_for(dataset: Dataset) -> InMemory:
    """One caption per image, from its class name and a template chosen by the image's position."""
    names = dataset.class_names
    labels = dataset.labels
    if names is None or labels is None:
        raise ValueError(f"dataset {dataset.name!r} has no labels/class names to caption")
    texts = [
        CAPTION_TEMPLATES[i % len(CAPTION_TEMPLATES)].format(names[int(lab)].lower()) for i, lab in enumerate(labels)
    ]
    return InMemory(texts, "text", ids=dataset.ids, labels=labels, class_names=names, name=f"{dataset.name}-captions")


def _embed(store: EmbeddingStore, encoder_id: str, dataset: Dataset, progress: bool, **options: Any) -> dict[str, Any]:
    encoder = load_encoder(encoder_id, **options)
    return store.extract(encoder, dataset, progress=progress)


def _atlases(part: DemoPart, A: dict[str, Any], B: dict[str, Any], n_perm: int, seed: int, progress: bool) -> None:
    for name, params in MEASURES:
        t = time.perf_counter()
        part.atlases[name] = atlas(A, B, name, n_perm=n_perm, seed=seed, progress=progress, **params)
        part.seconds[f"atlas {name}"] = time.perf_counter() - t


def run_text(store: EmbeddingStore, n_perm: int, seed: int, progress: bool) -> DemoPart:
    from alignkit.data.samples import bible_pairs

    en, es = bible_pairs()
    part = DemoPart(
        "Bible verses: English (MiniLM-L6) vs Spanish (multilingual-e5-small)",
        "English WEB verses → all-MiniLM-L6-v2, every layer",
        "the same verses in Spanish RV1909 → multilingual-e5-small, every layer",
        len(en),
    )
    t = time.perf_counter()
    A = _embed(store, "offline:minilm-l6", en, progress)
    B = _embed(store, "offline:e5-small", es, progress)
    part.seconds["embed"] = time.perf_counter() - t
    _atlases(part, A, B, n_perm, seed, progress)
    return part


def run_images(store: EmbeddingStore, n_perm: int, seed: int, progress: bool, input_size: int = 112) -> DemoPart:
    from alignkit.data.samples import fashion_mnist_sample

    images = fashion_mnist_sample()
    captions = captions_for(images)
    part = DemoPart(
        "Fashion-MNIST: images (MobileNetV2 blocks) vs class captions (MiniLM-L6 layers)",
        f"1,000 Fashion-MNIST images → MobileNetV2 (ImageNet), every block, {input_size}px input",
        "a caption of each image's class (5 templates) → all-MiniLM-L6-v2, every layer",
        len(images),
    )
    t = time.perf_counter()
    A = _embed(store, "offline:mobilenet-v2", images, progress, input_size=input_size)
    B = _embed(store, "offline:minilm-l6", captions, progress)
    part.seconds["embed"] = time.perf_counter() - t
    _atlases(part, A, B, n_perm, seed, progress)
    return part


def save_results(parts: list[DemoPart], out_dir: Path, meta: dict[str, Any]) -> list[Path]:
    """Tidy CSV rows of every atlas cell and a JSON summary, written atomically."""
    import csv
    import io

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    summary: dict[str, Any] = {**meta, "parts": []}
    for part in parts:
        entry: dict[str, Any] = {"title": part.title, "a": part.a, "b": part.b, "n": part.n, "seconds": part.seconds}
        for name, res in part.atlases.items():
            entry[name] = res.summary()
            for row in res.to_rows():
                rows.append({"part": part.title, **row})
        summary["parts"].append(entry)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    csv_path, json_path = out_dir / "atlas.csv", out_dir / "summary.json"
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_text(json_path, json.dumps(summary, indent=2, default=float))
    return [csv_path, json_path]
