"""Speech made from text with eSpeak NG: Bible verses spoken by several voices at several speeds.

A real audio modality with a known transcript, for audio ↔ text alignment with no recordings to ship: the
audio is synthesised on demand by the ``espeak-ng`` program (Debian/Ubuntu: ``apt-get install espeak-ng``;
macOS: ``brew install espeak-ng``; ``$ALIGNKIT_ESPEAK`` may name the executable), read from its ``--stdout``
WAV with the stdlib :mod:`wave` module, and resampled from eSpeak's 22,050 Hz to 16 kHz mono float32 in
[-1, 1] (``scipy.signal.resample_poly``): what the Whisper encoders read.

eSpeak NG is a deterministic formant synthesiser: the same text, voice, speed and program version give the
same samples. Clips are cached as ``.npy`` files (no pickle) under ``$ALIGNKIT_CACHE/speech`` (default
``~/.cache/alignkit/speech``), keyed by the sha256 of (text, voice, speed, eSpeak version, sample rate), and
the dataset fingerprint hashes the same things, so a new eSpeak version re-makes clips and embeddings.

Data spec ``speech:bible?n=N&voices=V1,V2&speeds=S1,S2&lang=en&seed=0&max_words=60&view=audio``:
``n`` verses of the bundled Bible sample (:func:`alignkit.data.samples.bible_pairs`), drawn with ``seed``
among those with a distinct text and at most ``max_words`` words (so a clip stays inside Whisper's 30 s
window). Each verse is spoken once; item ``i`` gets voice ``voices[i % V]`` and speed
``speeds[(i // V) % S]``, so every voice × speed combination is used evenly. ``view=text`` gives the same
verses as text; ids and pairing keys are the verse refs in both views, so one space can be the speech and
the other the text. Voices are eSpeak voice names with an optional ``+variant`` (``en-us``, ``en-gb+f3``,
``en-gb-scotland+m3``; ``espeak-ng --voices`` and ``espeak-ng --voices=variant`` list them); MBROLA voices
are not accepted (they need a separate program). Speeds are words per minute (80–450; eSpeak's default 175).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import warnings
import wave
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.data.audio import wav_to_float
from alignkit.data.base import Dataset, update_str

SPEECH_RATE = 16_000
#: bumped when the way clips are made from (text, voice, speed, eSpeak version) changes
SPEECH_FORMAT = "alignkit-speech/1"
SPEED_RANGE = (80, 450)
LANGS = ("en", "es")
DEFAULT_VOICES = {"en": ("en-us", "en-gb+f3"), "es": ("es", "es-419+f3")}
DEFAULT_SPEEDS = (150, 190)
DEFAULT_N = 500
DEFAULT_MAX_WORDS = 60
_INSTALL = (
    "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS), "
    "or set $ALIGNKIT_ESPEAK to the espeak-ng executable"
)
_TIMEOUT_S = 120


class EspeakError(RuntimeError):
    """espeak-ng is missing, or it failed on a text."""


# ---------------------------------------------------------------------------------------------- the program


def find_espeak() -> str:
    """Path of the espeak-ng executable (``$ALIGNKIT_ESPEAK``, else ``espeak-ng`` on PATH) or a clear error."""
    env = os.environ.get("ALIGNKIT_ESPEAK")
    if env:
        exe = shutil.which(env)
        if exe is None:
            raise EspeakError(f"$ALIGNKIT_ESPEAK={env!r} is not an executable; {_INSTALL}")
        return exe
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakError(f"speech datasets need the espeak-ng program, which is not on PATH; {_INSTALL}")
    return exe


def _run(args: list[str], what: str, stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(args, input=stdin, capture_output=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EspeakError(f"{what}: running {args[0]} failed: {exc}") from None
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise EspeakError(f"{what}: espeak-ng exited with status {done.returncode}: {' / '.join(err[:3])}")
    return done.stdout


@functools.lru_cache(maxsize=8)
def _program_info(exe: str) -> tuple[str, frozenset[str], frozenset[str]]:
    """(version, voice names, variant names) of one espeak-ng executable."""
    first = _run([exe, "--version"], "espeak-ng --version").decode("utf-8", "replace").strip()
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/..." -> "1.51"
    version = first.partition(":")[2].split()[0] if ":" in first and first.partition(":")[2].split() else first
    voices: set[str] = set()
    for line in _run([exe, "--voices"], "espeak-ng --voices").decode("utf-8", "replace").splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and not cols[4].startswith("mb/"):  # MBROLA voices need the mbrola program
            voices.add(cols[1])
            # "Other Languages" lists aliases the voice answers to, e.g. "(en 2)" for en-gb
            voices.update(c[1:] for c in cols[5:] if c.startswith("(") and len(c) > 1)
    variants: set[str] = set()
    for line in _run([exe, "--voices=variant"], "espeak-ng --voices=variant").decode("utf-8", "replace").splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[4].startswith("!v/"):
            variants.add(cols[4][3:])
    if not voices:
        raise EspeakError(f"{exe} --voices lists no voice: is espeak-ng's data installed (espeak-ng-data)?")
    return version, frozenset(voices), frozenset(variants)


def espeak_version(exe: str | None = None) -> str:
    """The espeak-ng version string (``'1.51'``): part of every clip's cache key and of dataset fingerprints."""
    return _program_info(exe or find_espeak())[0]


def espeak_voices(exe: str | None = None) -> tuple[list[str], list[str]]:
    """``(voices, variants)`` that :func:`check_voice` accepts, sorted (``voice`` or ``voice+variant``)."""
    _, voices, variants = _program_info(exe or find_espeak())
    return sorted(voices), sorted(variants)


def check_voice(voice: str, exe: str | None = None) -> str:
    """``voice`` (``'en-us'`` or ``'en-gb+f3'``) if espeak-ng has it; else a ValueError listing similar ones.

    Checked here because espeak-ng silently ignores an unknown ``+variant``.
    """
    if not isinstance(voice, str) or not voice.strip():
        raise ValueError(f"voice must be a non-empty string like 'en-us' or 'en-gb+f3'; got {voice!r}")
    voice = voice.strip()
    _, voices, variants = _program_info(exe or find_espeak())
    base, plus, variant = voice.partition("+")
    if base not in voices:
        near = sorted(v for v in voices if v.split("-")[0] == base.split("-")[0])[:12] or sorted(voices)[:12]
        raise ValueError(f"voice {voice!r}: espeak-ng has no voice {base!r} (MBROLA voices excluded); e.g. {near}")
    if plus and variant not in variants:
        raise ValueError(
            f"voice {voice!r}: espeak-ng has no variant {variant!r}; e.g. "
            f"{sorted(v for v in variants if len(v) <= 3)} (espeak-ng --voices=variant lists all)"
        )
    return voice


def check_speed(speed: Any) -> int:
    """A speaking rate in words per minute, an int in :data:`SPEED_RANGE`."""
    try:
        s = int(speed)
    except (TypeError, ValueError):
        raise ValueError(f"speed must be an integer (words per minute); got {speed!r}") from None
    if isinstance(speed, bool) or float(speed) != s or not SPEED_RANGE[0] <= s <= SPEED_RANGE[1]:
        raise ValueError(
            f"speed must be an integer in {SPEED_RANGE[0]}..{SPEED_RANGE[1]} words per minute; got {speed!r}"
        )
    return s


# ------------------------------------------------------------------------------------------------- decoding


def read_wav(data: bytes, source: str = "audio") -> tuple[np.ndarray, int]:
    """Decode WAV bytes (PCM 8/16/32-bit, any channels) with the stdlib :mod:`wave` module.

    Returns ``(mono float32 in [-1, 1], sample_rate)``. Streamed WAV (eSpeak's ``--stdout``) carries a
    placeholder length in its header: the samples actually present are read. Raises ValueError naming
    ``source`` when the bytes are not a PCM WAV file or hold no samples.
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError, ValueError) as exc:
        raise ValueError(f"{source}: cannot decode the audio as a PCM WAV file ({exc or type(exc).__name__})") from None
    dtypes: dict[int, np.dtype[Any]] = {1: np.dtype(np.uint8), 2: np.dtype("<i2"), 4: np.dtype("<i4")}
    if width not in dtypes or channels < 1 or rate <= 0:
        raise ValueError(f"{source}: unsupported WAV ({width * 8}-bit, {channels} channel(s), {rate} Hz)")
    usable = len(raw) - len(raw) % (width * channels)
    samples = np.frombuffer(raw[:usable], dtype=dtypes[width]).reshape(-1, channels)
    try:
        x = wav_to_float(samples[:, 0] if channels == 1 else samples)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return x, int(rate)


def resample(x: np.ndarray, rate: int, target: int = SPEECH_RATE) -> np.ndarray:
    """``x`` at ``rate`` Hz resampled to ``target`` Hz (polyphase), float32 clipped to [-1, 1]."""
    if rate != target:
        from scipy.signal import resample_poly

        ratio = Fraction(target, rate)
        x = resample_poly(x, ratio.numerator, ratio.denominator)
    return np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)


# ---------------------------------------------------------------------------------------------- synthesis


def clip_key(text: str, voice: str, speed: int, version: str, rate: int = SPEECH_RATE) -> str:
    """sha256 (hex) of everything that determines a clip."""
    payload = {"format": SPEECH_FORMAT, "text": text, "voice": voice, "speed": speed, "espeak": version, "rate": rate}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def default_speech_cache() -> Path:
    """``$ALIGNKIT_CACHE/speech`` or ``~/.cache/alignkit/speech``."""
    env = os.environ.get("ALIGNKIT_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "alignkit") / "speech"


def _load_cached(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        x = np.load(path, allow_pickle=False)
        if x.dtype == np.float32 and x.ndim == 1 and x.size > 0 and np.isfinite(x).all():
            return np.asarray(x)
        reason = f"dtype {x.dtype}, shape {x.shape}"
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
    warnings.warn(f"speech cache file {path} is unreadable ({reason}); re-making it", stacklevel=4)
    return None


def _save_cached(path: Path, x: np.ndarray) -> None:
    """Atomic write (temporary file in the same folder, then rename); a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, x, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        warnings.warn(f"cannot write the speech cache {path.parent} ({exc}); clips are not cached", stacklevel=4)


def synthesize(
    text: str,
    voice: str = "en-us",
    speed: int = 175,
    *,
    rate: int = SPEECH_RATE,
    cache: str | os.PathLike[str] | bool | None = True,
    exe: str | None = None,
) -> np.ndarray:
    """``text`` spoken by espeak-ng: a mono float32 waveform in [-1, 1] at ``rate`` Hz.

    cache : True for :func:`default_speech_cache`, a folder, or False/None for no cache. The text goes to
    espeak-ng on stdin (so a text that starts with '-' is not read as an option); voice and speed are checked.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string; got {text!r}")
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise ValueError(f"rate must be a positive int (Hz); got {rate!r}")
    exe = exe or find_espeak()
    voice, speed = check_voice(voice, exe), check_speed(speed)
    key = clip_key(text, voice, speed, espeak_version(exe), rate)
    path = None
    if cache is not None and not isinstance(cache, bool):
        path = Path(cache).expanduser() / key[:2] / f"{key}.npy"
    elif cache is True:
        path = default_speech_cache() / key[:2] / f"{key}.npy"
    if path is not None:
        hit = _load_cached(path)
        if hit is not None:
            return hit
    what = f"espeak-ng voice {voice!r}, speed {speed}, text {text[:40]!r}"
    data = _run([exe, "--stdout", "-v", voice, "-s", str(speed)], what, stdin=text.encode("utf-8"))
    x, source_rate = read_wav(data, f"{what}: espeak-ng output")
    x = resample(x, source_rate, rate)
    if path is not None:
        _save_cached(path, x)
    return x


# ----------------------------------------------------------------------------------------------- datasets


class SpokenTexts(Dataset):
    """Texts spoken by espeak-ng, one clip per item: items are ``(waveform float32 at 16 kHz, 16000)``.

    ``texts``, ``voices`` and ``speeds`` are per item (a single voice or speed applies to all). Clips are made
    on first use (:func:`synthesize`, cached); construction only checks the program, voices and speeds. The
    fingerprint hashes the eSpeak version, the rate and each item's (text, voice, speed).
    """

    modality = "audio"

    def __init__(
        self,
        texts: Sequence[str],
        voices: str | Sequence[str] = "en-us",
        speeds: int | Sequence[int] = 175,
        *,
        ids: Sequence[Any] | None = None,
        keys: Sequence[Any] | None = None,
        cache: str | os.PathLike[str] | bool | None = True,
        name: str = "spoken-texts",
    ) -> None:
        super().__init__()
        self.name = name
        texts = list(texts)
        n = len(texts)
        if n == 0:
            raise ValueError(f"{name}: texts is empty")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ValueError(f"{name}: texts must be non-empty strings; rows {bad[:5]} are not")
        voice_list = [voices] * n if isinstance(voices, str) else list(voices)
        speed_list = [speeds] * n if isinstance(speeds, (int, np.integer)) else list(speeds)
        for arg, values in (("voices", voice_list), ("speeds", speed_list)):
            if len(values) != n:
                raise ValueError(f"{name}: {len(values)} {arg} for {n} texts; give one, or one per text")
        self.exe = find_espeak()
        checked = {v: check_voice(v, self.exe) for v in dict.fromkeys(voice_list)}
        self.texts = texts
        self.voices = [checked[v] for v in voice_list]
        self.speeds = [check_speed(s) for s in speed_list]
        self.espeak_version = espeak_version(self.exe)
        self.cache = cache
        self._set_ids(range(n) if ids is None else ids, name)
        if len(self._ids) != n:
            raise ValueError(f"{name}: {len(self._ids)} ids for {n} texts")
        if keys is not None:
            if len(keys) != n:
                raise ValueError(f"{name}: {len(keys)} keys for {n} texts")
            self._keys = [str(k) for k in keys]

    def items(self, start: int = 0, stop: int | None = None) -> list[tuple[np.ndarray, int]]:
        start, stop = self._range(start, stop)
        return [
            (synthesize(self.texts[i], self.voices[i], self.speeds[i], cache=self.cache, exe=self.exe), SPEECH_RATE)
            for i in range(start, stop)
        ]

    def _content_hash(self, h: Any) -> None:
        update_str(h, f"{SPEECH_FORMAT} espeak-ng {self.espeak_version} {SPEECH_RATE} Hz")
        for text, voice, speed in zip(self.texts, self.voices, self.speeds, strict=True):
            update_str(h, text)
            update_str(h, voice)
            update_str(h, str(speed))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "espeak": self.espeak_version,
            "voices": sorted(set(self.voices)),
            "speeds": sorted(set(self.speeds)),
        }


def bible_verse_rows(n: int, lang: str = "en", seed: int = 0, max_words: int = DEFAULT_MAX_WORDS) -> np.ndarray:
    """Rows of the bundled Bible sample to speak: ``n`` drawn with ``seed`` (in corpus order) among the verses
    whose text (in ``lang``) occurs once in the sample and has at most ``max_words`` words."""
    from alignkit.data.samples import bible_pairs

    if lang not in LANGS:
        raise ValueError(f"lang must be one of {list(LANGS)}; got {lang!r}")
    if not isinstance(max_words, int) or max_words < 1:
        raise ValueError(f"max_words must be a positive int; got {max_words!r}")
    texts = bible_pairs()[LANGS.index(lang)].items()
    counts: dict[str, int] = {}
    for t in texts:
        counts[t] = counts.get(t, 0) + 1
    eligible = np.asarray(
        [i for i, t in enumerate(texts) if counts[t] == 1 and len(t.split()) <= max_words], dtype=np.int64
    )
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= eligible.size:
        raise ValueError(
            f"n must be an int in 1..{eligible.size} (bundled verses with a distinct text of at most "
            f"{max_words} words); got {n!r}"
        )
    rng = np.random.default_rng(seed)
    return np.sort(eligible[rng.choice(eligible.size, size=n, replace=False)])


def spoken_bible(
    n: int = DEFAULT_N,
    lang: str = "en",
    voices: Sequence[str] | None = None,
    speeds: Sequence[int] | None = None,
    *,
    seed: int = 0,
    max_words: int = DEFAULT_MAX_WORDS,
    view: str = "audio",
    cache: str | os.PathLike[str] | bool | None = True,
) -> Dataset:
    """``n`` bundled Bible verses as speech (``view='audio'``, a :class:`SpokenTexts`) or as their text
    (``view='text'``); ids and pairing keys are the verse refs in both, so the two views pair row for row.

    Item ``i`` is spoken by ``voices[i % V]`` at ``speeds[(i // V) % S]`` (defaults: :data:`DEFAULT_VOICES`,
    :data:`DEFAULT_SPEEDS`). The text view needs no espeak-ng.
    """
    from alignkit.data.samples import bible_pairs

    if view not in ("audio", "text"):
        raise ValueError(f"view must be 'audio' or 'text'; got {view!r}")
    rows = bible_verse_rows(n, lang, seed, max_words)
    voice_list = list(DEFAULT_VOICES[lang] if voices is None else voices)
    speed_list = [check_speed(s) for s in (DEFAULT_SPEEDS if speeds is None else speeds)]
    if not voice_list or not speed_list:
        raise ValueError("voices and speeds must each name at least one value")
    for arg, values in (("voices", voice_list), ("speeds", speed_list)):
        if len(set(values)) != len(values):
            raise ValueError(f"{arg} must not repeat a value; got {values}")
    text = bible_pairs()[LANGS.index(lang)]
    if view == "text":
        return text.subset(rows, name=f"speech:bible-{lang} (text, {n} verses)")
    nv, ns = len(voice_list), len(speed_list)
    refs = [text.ids[r] for r in rows]
    all_texts = text.items()
    return SpokenTexts(
        [all_texts[r] for r in rows],
        [voice_list[i % nv] for i in range(n)],
        [speed_list[(i // nv) % ns] for i in range(n)],
        ids=refs,
        keys=refs,
        cache=cache,
        name=f"speech:bible-{lang} ({n} verses)",
    )


def _int_option(params: dict[str, str], key: str, default: int, spec: str) -> int:
    if key not in params:
        return default
    try:
        return int(params[key])
    except ValueError:
        raise ValueError(f"data spec {spec!r}: {key} must be an integer; got {params[key]!r}") from None


def speech_from_spec(rest: str, spec: str, on_error: str = "raise") -> Dataset:
    """Builder of ``speech:bible?n=N&voices=V1,V2&speeds=S1,S2&lang=en&seed=0&max_words=60&view=audio``."""
    from alignkit.registry import parse_id

    source, params = parse_id(rest, what=f"data spec {spec!r}")
    if source != "bible":
        raise ValueError(f"data spec {spec!r}: unknown speech source {source!r}; available: 'speech:bible?...'")
    allowed = ("n", "lang", "voices", "speeds", "seed", "max_words", "view")
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"data spec {spec!r}: unknown option(s) {unknown}; allowed: {list(allowed)}")
    lang = params.get("lang", "en")
    if lang not in LANGS:
        raise ValueError(f"data spec {spec!r}: lang must be one of {list(LANGS)}; got {lang!r}")
    voices = [v.strip() for v in params["voices"].split(",")] if "voices" in params else None
    speeds = None
    if "speeds" in params:
        try:
            speeds = [check_speed(s.strip()) for s in params["speeds"].split(",")]
        except ValueError as exc:
            raise ValueError(f"data spec {spec!r}: speeds: {exc}") from None
    try:
        return spoken_bible(
            _int_option(params, "n", DEFAULT_N, spec),
            lang,
            voices,
            speeds,
            seed=_int_option(params, "seed", 0, spec),
            max_words=_int_option(params, "max_words", DEFAULT_MAX_WORDS, spec),
            view=params.get("view", "audio"),
        )
    except ValueError as exc:
        raise ValueError(f"data spec {spec!r}: {exc}") from None
