"""A trained zoo network as an encoder: ``zoo:PATH`` (PATH = a zoo checkpoint), so that the embedding store,
atlases, measures and diagnostics run on zoo networks unchanged.

Items are uint8 images ``H×W`` (what :class:`alignkit.data.IDXImages` yields; PIL images are made grey), normalised
by the mean/std the checkpoint records. Layers are the network's representation layers (``fc1``… / ``conv1``…,
``logits``); conv maps are averaged over space (``pooling="mean"``) or flattened (``"flatten"``). The identity is
the sha256 of the checkpoint file, so a retrained network never reuses the old one's cached embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from alignkit.encoders.base import Encoder, register_family, sha256_file
from alignkit.zoo.activations import POOLINGS, forward_layers, layer_dims
from alignkit.zoo.architectures import layer_names
from alignkit.zoo.checkpoint import load_model
from alignkit.zoo.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, normalise


class ZooEncoder(Encoder):
    """``zoo:PATH``: every representation layer of a trained zoo network."""

    modality = "image"
    default_batch_size = 512

    def __init__(
        self,
        path: str | Path,
        pooling: str = "mean",
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}; got {pooling!r}")
        self.pooling = pooling
        self.path = Path(path).expanduser()
        self.id = f"zoo:{path}"
        self.zoo = load_model(self.path)
        self._sha256 = sha256_file(self.path)
        norm = self.zoo.metadata.get("data", {}).get("normalisation", {})
        self.mean = float(norm.get("mean", FASHION_MNIST_MEAN))
        self.std = float(norm.get("std", FASHION_MNIST_STD))
        self.input_shape = tuple(self.zoo.spec["input_shape"])
        self._dims = layer_dims(self.zoo.model, self.input_shape, pooling)
        self._place(self.zoo.model)
        self.model = self.zoo.model

    @property
    def layer_names(self) -> list[str]:
        return layer_names(self.model)

    @property
    def dims(self) -> dict[str, int]:
        return dict(self._dims)

    def identity(self) -> dict[str, Any]:
        return {
            "id": "zoo",
            "checkpoint_sha256": self._sha256,
            "normalisation": {"mean": self.mean, "std": self.std},
        }

    def preprocess(self, items: Sequence[Any]) -> torch.Tensor:
        """Items → normalised float ``(B, C, H, W)``; ValueError for images of another size than the network's."""
        x = normalise(list(items), self.mean, self.std)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"encoder {self.id!r}: images of shape {tuple(x.shape[1:])} (C, H, W); the network was trained on "
                f"{self.input_shape}"
            )
        return x

    @torch.no_grad()
    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = self.check_layers(layers)

        def run(batch: Sequence[Any], start: int) -> dict[str, torch.Tensor]:
            x = self.preprocess(batch).to(device=self.device, dtype=self.dtype)
            return forward_layers(self.model, x, wanted, self.pooling)

        return self._batched(items, wanted, run)


@register_family(
    "zoo",
    "a trained alignkit.zoo network (zoo:PATH to its .safetensors checkpoint); every hidden layer + logits",
    options=ZooEncoder,
    constraints={"pooling": {"choices": POOLINGS}, "batch_size": {"low": 1}},
)
def _zoo_factory(name: str, **options: Any) -> Encoder:
    return ZooEncoder(name, **options)
