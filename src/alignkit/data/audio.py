"""Audio datasets: folders of .wav files (labels from sub-folders), read with ``scipy.io.wavfile``.

Items are ``(waveform, sample_rate)`` with a float32 1-D waveform in [-1, 1]: integer PCM is scaled
by its full range (uint8 is offset-binary), float files are clipped to [-1, 1], and multi-channel
audio is averaged to mono. As for images, every file is read and checked once at construction, so
ids and fingerprint are stable; unreadable or empty files follow ``on_error``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from alignkit.data.image import _FileFolder

AUDIO_EXTENSIONS = (".wav",)


def wav_to_float(data: np.ndarray) -> np.ndarray:
    """PCM samples (any wavfile dtype, 1-D or samples × channels) as mono float32 in [-1, 1]."""
    if data.dtype == np.uint8:
        x = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype.kind == "i":
        x = data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    elif data.dtype.kind == "f":
        x = np.clip(data.astype(np.float32), -1.0, 1.0)
    else:
        raise ValueError(f"unsupported sample type {data.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    elif x.ndim != 1:
        raise ValueError(f"unexpected sample array shape {x.shape}")
    if x.size == 0:
        raise ValueError("the file holds no samples")
    if not np.isfinite(x).all():
        raise ValueError("the file holds NaN or Inf samples")
    return np.ascontiguousarray(x, dtype=np.float32)


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    from scipy.io import wavfile

    rate, samples = wavfile.read(io.BytesIO(data))
    if rate <= 0:
        raise ValueError(f"bad sample rate {rate}")
    return wav_to_float(samples), int(rate)


class AudioFolder(_FileFolder):
    """Wav files in ``root/<class>/...`` (labels = sorted sub-folder names) or directly in ``root``.

    ids are paths relative to ``root``; the fingerprint hashes each file's bytes in sorted order.
    """

    modality = "audio"
    extensions = AUDIO_EXTENSIONS
    kind = "audio"

    def _check(self, data: bytes) -> None:
        decode_wav(data)

    def _decode(self, data: bytes) -> Any:
        return decode_wav(data)
