"""A cheap deterministic encoder family ``test:<variant>`` and configs for pipeline tests.

Each item is hashed to a base vector; layer i is a fixed random map of it (``tanh(base @ W_i)``), so two
variants on the same items are related but not identical spaces, and every call is counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignkit.encoders.base import Encoder, register_family


class HashEncoder(Encoder):
    modality = "text"
    pooling = "none"
    default_batch_size = 64
    calls = 0  # encode() calls across all instances (the cache-hit tests read it)

    def __init__(
        self, variant: str, dim: int = 24, n_layers: int = 3, constant_layer: str | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("device", "cpu")
        super().__init__(**kwargs)
        self.id = f"test:{variant}"
        self.variant = variant
        self.dim = dim
        self.constant_layer = constant_layer  # a dead layer (every item the same vector), as real encoders can emit
        # names whose alphabetical order is not the layer order, so tests catch any sorting
        self._layers = ["input", "hidden", "output", *[f"extra{i}" for i in range(n_layers - 3)]][:n_layers]
        rng = np.random.default_rng(int(hashlib.sha256(variant.encode()).hexdigest()[:8], 16))
        self._maps = [rng.standard_normal((32, dim)) / np.sqrt(32) for _ in self._layers]

    @property
    def layer_names(self) -> list[str]:
        return list(self._layers)

    @property
    def dims(self) -> dict[str, int]:
        return {name: self.dim for name in self._layers}

    def identity(self) -> dict[str, Any]:
        return {"id": self.id, "dim": self.dim, "layers": len(self._layers), "constant": self.constant_layer}

    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        type(self).calls += 1
        wanted = self.check_layers(layers)
        base = np.stack([_base_vector(x) for x in items])
        out = {}
        for i, name in enumerate(self._layers):
            if name in wanted:
                out[name] = torch.from_numpy(np.tanh(base @ self._maps[i]).astype(np.float32))
                if name == self.constant_layer:
                    out[name] = torch.ones_like(out[name])
        return out


def _base_vector(item: Any) -> np.ndarray:
    data = item.encode() if isinstance(item, str) else np.ascontiguousarray(np.asarray(item)).tobytes()
    seed = int(hashlib.sha256(data).hexdigest()[:16], 16)
    return np.random.default_rng(seed).standard_normal(32)


@register_family("test", "deterministic hashed-projection encoder for tests")
def _make(variant: str, **options: Any) -> HashEncoder:
    return HashEncoder(variant, **options)


def write_lines(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"item number {i} of the test corpus\n" for i in range(n)), encoding="utf-8")
    return path


def small_config(tmp: Path, *, n: int = 240, name: str = "t", **overrides: Any) -> dict[str, Any]:
    """Two hashed spaces of the same lines; atlas with a null, two aligners × two sizes × two seeds."""
    data = f"lines:{write_lines(tmp / 'items.txt', n)}"
    cfg: dict[str, Any] = {
        "name": name,
        "seed": 3,
        "output": str(tmp / "results"),
        "cache": str(tmp / "cache"),
        "device": "cpu",
        "spaces": {
            "x": {"data": data, "encoder": "test:alpha"},
            "y": {"data": data, "encoder": "test:beta", "layers": ["hidden", "output"]},
        },
        "experiments": {
            "e": {
                "a": "x",
                "b": "y",
                "atlas": {"measures": ["mutual_knn?k=5", "cka"], "n_perm": 9},
                "fit": {
                    "layers": "best",
                    "select_sample": None,
                    "test": 60,
                    "sizes": [40, 120],
                    "seeds": [0, 1],
                    "aligners": {
                        "procrustes": {"type": "procrustes", "center": True, "normalize": True},
                        "ridge": {"type": "ridge"},
                    },
                },
                "evaluate": {"retrieval": {"ks": [1, 5], "scoring": ["nn", "csls"], "csls_k": 5}},
            }
        },
        "report": False,
    }
    cfg.update(overrides)
    return cfg
