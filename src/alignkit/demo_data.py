"""The small real-embedding sample shipped inside the package (used by ``alignkit demo``).

2,000 Bible verses, row-paired: English (World English Bible) encoded by all-MiniLM-L6-v2 and
Spanish (Reina-Valera 1909) encoded by multilingual-e5-small, both 384-d, stored as float16.
Both texts are public domain. Made by ``scripts/make_demo_embeddings.py``; provenance (models,
versions, seed, date, command) is in ``data/samples/bible_demo.json`` and returned by :func:`bible_demo_info`.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import numpy as np

EN_FILE = "bible_en_minilm.safetensors"
ES_FILE = "bible_es_e5.safetensors"
INFO_FILE = "bible_demo.json"
TENSOR_KEY = "embeddings"


def _data_bytes(name: str) -> bytes:
    resource = files("alignkit") / "data" / "samples" / name
    try:
        return resource.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"bundled demo file alignkit/data/samples/{name} is missing; reinstall alignkit or rebuild it with "
            "scripts/make_demo_embeddings.py"
        ) from None


def _embeddings(name: str, dtype: np.dtype | type) -> np.ndarray:
    from safetensors.numpy import load

    return load(_data_bytes(name))[TENSOR_KEY].astype(dtype)


def bible_demo_info() -> dict[str, Any]:
    """Provenance of the bundled sample: models and versions, seed, n, date, command, verse refs."""
    return json.loads(_data_bytes(INFO_FILE).decode("utf-8"))


def load_bible_demo(dtype: np.dtype | type = np.float32) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return ``(X_en, Y_es, refs)``: two (2000, 384) arrays paired by row, and the verse of each row.

    ``X_en``: English WEB verses through all-MiniLM-L6-v2 (L2-normalised); ``Y_es``: the same verses
    in Spanish RV1909 through multilingual-e5-small (L2-normalised). Stored as float16 and cast to
    ``dtype`` (float32 by default), so rows have norm 1 only up to float16 rounding.
    """
    X = _embeddings(EN_FILE, dtype)
    Y = _embeddings(ES_FILE, dtype)
    refs = list(bible_demo_info()["refs"])
    if not (X.shape[0] == Y.shape[0] == len(refs)):
        raise RuntimeError(
            f"bundled demo files disagree: {X.shape[0]} English rows, {Y.shape[0]} Spanish rows, {len(refs)} refs"
        )
    return X, Y, refs
