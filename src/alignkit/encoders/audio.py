"""Whisper-style audio encoders: log-mel features, every encoder layer pooled over the frames that hold audio.

Whisper (Radford et al., 2022, "Robust Speech Recognition via Large-Scale Weak Supervision") reads 30 s of 16 kHz
audio as an 80- (or 128-) bin log-mel spectrogram (3000 frames, hop 10 ms), two convolutions halve it to 1500
frames of 20 ms, then a Transformer encoder. Clips shorter than 30 s are padded with silence; so that a clip's
embedding does not depend on how much silence follows it, every layer is averaged over the first
``ceil(n_samples / 16000 · 50)`` frames only (at least 1): the frames that hold audio.

Id ``whisper:<hf model id>`` (e.g. ``whisper:openai/whisper-tiny.en``): ``transformers.WhisperModel.from_pretrained``'s
encoder + ``WhisperFeatureExtractor`` (network for the weights on first use, then the Hugging Face cache). The
offline Whisper tiny.en is ``offline:whisper-tiny-en`` (:mod:`alignkit.encoders.offline_vision_audio`).

Layers: ``embeddings`` (conv stem + positions: the input of the first block), ``layer_1`` … ``layer_L`` (the raw
output of each block) and ``final`` (the last block's output after the encoder's final LayerNorm, i.e. the
``last_hidden_state`` that Whisper's decoder reads). Items are ``(waveform, sample_rate)`` tuples: a 1-D float array
in [-1, 1]; other sample rates are resampled to 16 kHz with ``scipy.signal.resample_poly``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Encoder, register_family

WHISPER_SAMPLE_RATE = 16_000


def prepare_waveform(item: Any, index: int | str = "?", target_rate: int = WHISPER_SAMPLE_RATE) -> np.ndarray:
    """Validate an audio item ``(waveform, sample_rate)`` and return the waveform as float32 at ``target_rate``."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(
            f"audio item {index}: expected a tuple (waveform: 1-D float array in [-1, 1], sample_rate: int); "
            f"got {type(item).__name__}"
        )
    wave, rate = item
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
        raise ValueError(f"audio item {index}: sample_rate must be a positive int; got {rate!r}")
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    wave = np.asarray(wave)
    if wave.dtype.kind in "iu":
        raise TypeError(
            f"audio item {index}: expected float samples in [-1, 1]; got integer dtype {wave.dtype} "
            "(scale int16 PCM with x.astype(np.float32) / 32768)"
        )
    if wave.dtype.kind != "f":
        raise TypeError(f"audio item {index}: expected a float array; got dtype {wave.dtype}")
    if wave.ndim == 2 and 1 in wave.shape:
        wave = wave.reshape(-1)
    if wave.ndim != 1:
        raise ValueError(
            f"audio item {index}: expected a 1-D (mono) waveform; got shape {wave.shape} (mix down with x.mean(axis))"
        )
    if wave.size == 0:
        raise ValueError(f"audio item {index}: empty waveform")
    if not np.isfinite(wave).all():
        raise ValueError(f"audio item {index}: waveform contains NaN or Inf")
    peak = float(np.abs(wave).max())
    if peak > 2.0:
        raise ValueError(
            f"audio item {index}: samples must lie in [-1, 1]; peak |x| = {peak:.4g} (integer PCM not scaled?)"
        )
    wave = wave.astype(np.float32, copy=False)
    if int(rate) != target_rate:
        from scipy.signal import resample_poly

        ratio = Fraction(target_rate, int(rate))
        wave = resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)
    return wave


def audio_frame_count(n_samples: int, n_frames: int = 1500, chunk_samples: int = 30 * WHISPER_SAMPLE_RATE) -> int:
    """Encoder frames that hold audio for a clip of ``n_samples`` (at the model's rate): ``ceil(n·frames/chunk)``,
    clipped to [1, n_frames]. For Whisper: 50 frames per second, 1500 for the full 30 s window."""
    return max(1, min(n_frames, math.ceil(n_samples * n_frames / chunk_samples)))


def masked_frame_mean(hidden: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden[b, :counts[b]]`` over frames → ``[B, d]`` (float32)."""
    steps = torch.arange(hidden.shape[1], device=hidden.device)
    mask = (steps[None, :] < counts.to(hidden.device)[:, None]).to(torch.float32)
    summed = torch.einsum("btd,bt->bd", hidden.float(), mask)
    return summed / mask.sum(dim=1, keepdim=True)


class WhisperStyleEncoder(Encoder):
    """Pooled layers of a Whisper encoder module (``transformers`` ``WhisperEncoder`` layout: ``conv1``, ``conv2``,
    ``embed_positions``, ``layers[i]``, ``layer_norm``) fed by a ``WhisperFeatureExtractor``."""

    modality = "audio"
    pooling = "mean-audio-frames"
    default_batch_size = 8

    def __init__(
        self,
        encoder: nn.Module,
        feature_extractor: Any,
        encoder_id: str,
        identity: dict[str, Any],
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        self.id = encoder_id
        self._identity = dict(identity)
        self.encoder = self._place(encoder)
        self.feature_extractor = feature_extractor
        self.sampling_rate = int(getattr(feature_extractor, "sampling_rate", WHISPER_SAMPLE_RATE))
        self.chunk_samples = int(getattr(feature_extractor, "n_samples", 30 * self.sampling_rate))
        self.n_frames = int(encoder.embed_positions.weight.shape[0])
        self.n_layers = len(encoder.layers)
        self.width = int(encoder.embed_positions.weight.shape[1])
        self._names = ["embeddings"] + [f"layer_{i}" for i in range(1, self.n_layers + 1)] + ["final"]

    @property
    def layer_names(self) -> list[str]:
        return list(self._names)

    @property
    def dims(self) -> dict[str, int]:
        return dict.fromkeys(self._names, self.width)

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def features(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        """Log-mel input features ``[B, n_mels, 3000]`` of 16 kHz waveforms (padded/truncated to 30 s)."""
        out = self.feature_extractor(
            list(waves), sampling_rate=self.sampling_rate, return_tensors="np", padding="max_length", truncation=True
        )
        return torch.from_numpy(np.asarray(out["input_features"], dtype=np.float32))

    def _modules_for(self, name: str) -> tuple[nn.Module, str]:
        if name == "embeddings":
            return self.encoder.layers[0], "pre"
        if name == "final":
            return self.encoder.layer_norm, "post"
        return self.encoder.layers[int(name.split("_")[1]) - 1], "post"

    @torch.no_grad()
    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = self.check_layers(layers)
        waves = [prepare_waveform(it, i, self.sampling_rate) for i, it in enumerate(items)]
        long = [i for i, w in enumerate(waves) if len(w) > self.chunk_samples]
        if long:
            warnings.warn(
                f"{self.id}: {len(long)} clip(s) longer than {self.chunk_samples / self.sampling_rate:g} s "
                f"(first: item {long[0]}) are truncated to the model's window",
                stacklevel=2,
            )

        def run(batch: Sequence[np.ndarray], start: int) -> dict[str, torch.Tensor]:
            counts = torch.tensor([audio_frame_count(len(w), self.n_frames, self.chunk_samples) for w in batch])
            feats = self.features(batch).to(device=self.device, dtype=self.dtype)
            return self._run(feats, counts, wanted, wanted[-1])

        return self._batched(waves, wanted, run)

    def _run(self, feats: torch.Tensor, counts: torch.Tensor, wanted: list[str], last: str) -> dict[str, torch.Tensor]:
        pooled: dict[str, torch.Tensor] = {}
        handles = []

        class _Stop(Exception):
            pass

        def make_hook(name: str, kind: str) -> Callable[..., None]:
            def take(hidden: Any) -> None:
                if isinstance(hidden, (tuple, list)):
                    hidden = hidden[0]
                pooled[name] = masked_frame_mean(hidden, counts)
                if name == last:
                    raise _Stop

            if kind == "pre":

                def pre(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                    take(args[0] if args else kwargs["hidden_states"])

                return pre
            return lambda _m, _inputs, output: take(output)

        for name in wanted:
            module, kind = self._modules_for(name)
            hook = make_hook(name, kind)
            if kind == "pre":
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(hook))
        try:
            self.encoder(feats)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return pooled


@register_family(
    "whisper",
    "Whisper encoder over transformers.WhisperModel.from_pretrained (network for weights)",
    constraints={"batch_size": {"low": 1}},
)
def _whisper_factory(
    name: str,
    revision: str | None = None,
    local_files_only: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> Encoder:
    from transformers import WhisperFeatureExtractor, WhisperModel

    model = WhisperModel.from_pretrained(name, revision=revision, local_files_only=local_files_only)
    fe = WhisperFeatureExtractor.from_pretrained(name, revision=revision, local_files_only=local_files_only)
    commit = getattr(model.config, "_commit_hash", None)
    identity = {"id": f"whisper:{name}", "model": name, "revision": revision or commit}
    return WhisperStyleEncoder(
        model.encoder,
        fe,
        f"whisper:{name}",
        identity,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        progress=progress,
    )
