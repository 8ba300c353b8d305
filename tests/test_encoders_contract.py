"""The encoder output contract, checked in the encoder base for every encoder (no store involved)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

from alignkit.encoders import audio, offline_text, offline_vision_audio, text, vision
from alignkit.encoders.base import Encoder, EncoderOutputError, check_output


class Fake(Encoder):
    """Two layers, ``a`` (3-d) and ``b`` (5-d); ``mode`` breaks the output in one way."""

    id = "test:fake"
    modality = "text"
    pooling = "mean"

    def __init__(self, mode: str = "ok", **kwargs: Any) -> None:
        super().__init__(device="cpu", **kwargs)
        self.mode = mode
        self.raw_calls = 0

    @property
    def layer_names(self) -> list[str]:
        return ["a", "b"]

    @property
    def dims(self) -> dict[str, int]:
        return {"a": 3, "b": 5}

    def identity(self) -> dict[str, Any]:
        return {"id": self.id}

    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, Any]:
        self.raw_calls += 1
        wanted = self.check_layers(layers)
        n = len(items)
        out: dict[str, Any] = {name: torch.ones(n, self.dims[name]) for name in wanted}
        mode = self.mode
        if mode == "missing":
            out.pop("b", None)
        elif mode == "one_d":
            out["b"] = torch.ones(n * 5)
        elif mode == "short_batch":
            out["b"] = torch.ones(n - 1, 5)
        elif mode == "wrong_dims":
            out["b"] = torch.ones(n, 4)
        elif mode == "nan":
            out["b"][n - 1, 2] = float("nan")
        elif mode == "inf":
            out["a"][0, 0] = float("inf")
        elif mode == "numpy_ok":
            out = {k: v.numpy() for k, v in out.items()}
        elif mode == "numpy_nan":
            out = {k: v.numpy() for k, v in out.items()}
            out["a"][1, 1] = np.nan
        elif mode == "list":
            out["a"] = [[1.0, 2.0, 3.0]] * n
        elif mode == "not_a_mapping":
            return [out["a"]]  # type: ignore[return-value]
        return out


@pytest.mark.parametrize(
    ("mode", "layer", "words"),
    [
        ("missing", "b", "returned no layer 'b'"),
        ("one_d", "b", "came back with shape (15,) for a batch of 3 items; expected (3, d)"),
        ("short_batch", "b", "came back with shape (2, 5) for a batch of 3 items"),
        ("wrong_dims", "b", "is 4-d, but the encoder declares 5"),
        ("nan", "b", "NaN/Inf for items at batch positions [2]"),
        ("inf", "a", "NaN/Inf for items at batch positions [0]"),
        ("numpy_nan", "a", "NaN/Inf for items at batch positions [1]"),
        ("list", "a", "came back as list"),
    ],
)
def test_broken_output_names_the_encoder_and_the_layer(mode: str, layer: str, words: str) -> None:
    with pytest.raises(EncoderOutputError) as err:
        Fake(mode).encode(["x", "y", "z"])
    message = str(err.value)
    assert "'test:fake'" in message and f"{layer!r}" in message and words in message, message
    assert err.value.encoder_id == "test:fake" and err.value.layer == layer
    assert isinstance(err.value, ValueError)  # callers catching ValueError keep working


def test_non_finite_rows_are_reported() -> None:
    with pytest.raises(EncoderOutputError) as err:
        Fake("nan").encode(["x", "y", "z"], layers=["b"])
    assert err.value.rows == [2]


def test_not_a_mapping() -> None:
    with pytest.raises(EncoderOutputError, match=r"'test:fake' returned list; expected \{layer: Tensor\[B, d\]\}"):
        Fake("not_a_mapping").encode(["x"])


def test_good_output_passes_tensors_or_arrays_and_layer_subsets() -> None:
    assert Fake().encode(["x", "y"])["b"].shape == (2, 5)
    assert Fake("numpy_ok").encode(["x"])["a"].shape == (1, 3)
    assert list(Fake("missing").encode(["x"], layers=["a"])) == ["a"]  # b was not asked for
    assert list(Fake("missing").encode(["x"], ["a"])) == ["a"]  # layers given by position


def test_check_output_directly() -> None:
    enc = Fake()
    check_output(enc, {"a": torch.zeros(2, 3)}, 2, ["a"])
    with pytest.raises(EncoderOutputError, match="for a batch of 4 items"):
        check_output(enc, {"a": torch.zeros(2, 3)}, 4, ["a"])


class Repaired(Fake):
    """Its parent's output holds NaN; it repairs it after ``super().encode``: only the outermost call is checked."""

    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, Any]:
        out = super().encode(items, layers)
        return {k: torch.nan_to_num(v, nan=0.0) for k, v in out.items()}


class Spoiled(Fake):
    """Its parent's output is fine; it breaks it after ``super().encode``."""

    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, Any]:
        out = super().encode(items, layers)
        out["a"] = out["a"][:, :2]
        return out


def test_subclasses_are_checked_on_their_final_output() -> None:
    assert Repaired("nan").encode(["x", "y", "z"])["b"].isfinite().all()
    with pytest.raises(EncoderOutputError, match="'a' is 2-d, but the encoder declares 3"):
        Spoiled().encode(["x"])
    enc = Repaired("nan")
    enc.encode(["x"])
    assert enc.raw_calls == 1 and enc.__dict__["_encode_depth"] == 0


class Probed(Encoder):
    """Widths known only by running (as torchvision/timm/open_clip encoders): ``dims`` probes once."""

    id = "test:probed"
    modality = "text"

    def __init__(self, width: int = 6) -> None:
        super().__init__(device="cpu", batch_size=2)
        self.width = width
        self.raw_calls = 0

    @property
    def layer_names(self) -> list[str]:
        return ["h"]

    @property
    def dims(self) -> dict[str, int]:
        return self._probe_dims("probe")

    def identity(self) -> dict[str, Any]:
        return {"id": self.id}

    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        self.raw_calls += 1
        wanted = self.check_layers(layers)
        return self._batched(items, wanted, lambda batch, start: {"h": torch.full((len(batch), self.width), start)})


def test_probed_dims_and_batching() -> None:
    enc = Probed()
    out = enc.encode(["a", "b", "c", "d", "e"])
    assert enc.dims == {"h": 6} and enc.raw_calls == 2  # the call, then one probe (no recursion)
    assert out["h"][:, 0].tolist() == [0, 0, 2, 2, 4] and out["h"].dtype == torch.float32
    assert enc.encode([])["h"].shape == (0, 6)
    enc.width = 7  # the model changed under the encoder: its declared width no longer holds
    with pytest.raises(EncoderOutputError, match="'h' is 7-d, but the encoder declares 6"):
        enc.encode(["a"])


def test_batched_restores_the_order_of_the_items() -> None:
    enc = Probed()
    items = ["bb", "a", "dddd", "ccc"]
    order = sorted(range(len(items)), key=lambda i: -len(items[i]))
    seen: list[list[str]] = []

    def run(batch: Sequence[str], start: int) -> dict[str, torch.Tensor]:
        seen.append(list(batch))
        return {"h": torch.tensor([[float(len(t))] * 6 for t in batch])}

    out = enc._batched(items, ["h"], run, order)
    assert seen == [["dddd", "ccc"], ["bb", "a"]]
    assert out["h"][:, 0].tolist() == [2, 1, 4, 3]


@pytest.mark.parametrize(
    "cls",
    [
        text.HFTextEncoder,
        text.SentenceTransformerEncoder,
        offline_text.E5SmallEncoder,
        vision.TorchvisionEncoder,
        vision.TimmEncoder,
        vision.OpenClipImageEncoder,
        vision.OpenClipTextEncoder,
        audio.WhisperStyleEncoder,
        offline_vision_audio.OfflineMobileNetV2Encoder,
        offline_vision_audio.OfflineWhisperTinyEnEncoder,
    ],
)
def test_every_encoder_of_the_package_is_checked(cls: type[Encoder]) -> None:
    assert getattr(cls.encode, "_alignkit_checks_output", False), cls.__name__
