"""Dataset adapters, fingerprints, pairing keys and the bundled samples."""

from __future__ import annotations

import gzip
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alignkit.data import (
    AudioFolder,
    HFDataset,
    IDXImages,
    ImageFolder,
    InMemory,
    ParallelCorpus,
    TextLines,
    TextTable,
    align_keys,
    read_idx,
    write_idx,
)

# ------------------------------------------------------------------------------------ text


def test_text_lines(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("first\n\n  \nsecond line\r\nthird\n", encoding="utf-8")
    ds = TextLines(p)
    assert len(ds) == 3 and ds.ids == ["1", "4", "5"] and ds.keys == ds.ids and ds.labels is None
    assert ds.items() == ["first", "second line", "third"] and ds[1] == "second line" and list(ds)[-1] == "third"
    assert ds.modality == "text" and len(ds.fingerprint()) == 16
    gz = tmp_path / "t.txt.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert TextLines(gz).items() == ds.items() and TextLines(gz).fingerprint() == ds.fingerprint()
    p.write_text("first\n\n  \nsecond line\r\nthird!\n", encoding="utf-8")
    assert TextLines(p).fingerprint() != ds.fingerprint()
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        TextLines(tmp_path / "nope.txt")
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no items found in .*blank\.txt"):
        TextLines(tmp_path / "blank.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\xfa\x00abc")
    with pytest.raises(ValueError, match=r"bin\.txt: cannot read it as UTF-8"):
        TextLines(tmp_path / "bin.txt")


def test_text_table_formats(tmp_path: Path) -> None:
    rows = [("a1", "Hello, world", "pos", "k1"), ("a2", '"quoted" start', "neg", "k2"), ("a3", "third", "pos", "k3")]
    tsv = tmp_path / "t.tsv"
    tsv.write_text("id\ttext\tlabel\tkey\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(
        "id,text,label,key\n" + "".join(f'{r[0]},"{r[1].replace(chr(34), 2 * chr(34))}",{r[2]},{r[3]}\n' for r in rows),
        encoding="utf-8",
    )
    jsonl = tmp_path / "t.jsonl.gz"
    lines = [json.dumps({"id": r[0], "text": r[1], "label": r[2], "key": r[3]}) for r in rows]
    jsonl.write_bytes(gzip.compress(("\n".join(lines) + "\n\n").encode()))
    fps = set()
    for path in (tsv, csv_path, jsonl):
        ds = TextTable(path, "text", id_column="id", label_column="label", key_column="key")
        assert ds.items() == [r[1] for r in rows], path
        assert ds.ids == ["a1", "a2", "a3"] and ds.keys == ["k1", "k2", "k3"]
        assert ds.class_names == ["neg", "pos"] and ds.labels.tolist() == [1, 0, 1]
        fps.add(ds.fingerprint())
    assert len(fps) == 1, "same items and ids -> same fingerprint, whatever the file format"
    plain = TextTable(tsv, "text")
    assert plain.ids == ["1", "2", "3"] and plain.fingerprint() not in fps
    ints = tmp_path / "i.csv"
    ints.write_text("text,y\na,3\nb,1\n", encoding="utf-8")
    assert TextTable(ints, "text", label_column="y").labels.tolist() == [3, 1]


def test_text_table_errors(tmp_path: Path) -> None:
    tsv = tmp_path / "t.tsv"
    tsv.write_text("id\ttext\nx\tone\nx\ttwo\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no text column 'body'; columns: 'id', 'text'"):
        TextTable(tsv, "body")
    with pytest.raises(ValueError, match=r"ids must be unique.*\['x'\]"):
        TextTable(tsv, "text", id_column="id")
    (tmp_path / "r.tsv").write_text("a\tb\n1\t2\n3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r\.tsv: line 3 has 1 field\(s\); the header has 2"):
        TextTable(tmp_path / "r.tsv", "a")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 2 is not valid JSON"):
        TextTable(tmp_path / "bad.jsonl", "text")
    (tmp_path / "num.jsonl").write_text('{"text": "ok"}\n{"text": 5}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: text column 'text' holds int; expected text"):
        TextTable(tmp_path / "num.jsonl", "text")
    (tmp_path / "head.csv").write_text("text\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no items found in .*head\.csv"):
        TextTable(tmp_path / "head.csv", "text")
    (tmp_path / "x.dat").write_text("text\nA\n", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot tell the table format"):
        TextTable(tmp_path / "x.dat", "text")
    assert TextTable(tmp_path / "x.dat", "text", format="csv").items() == ["A"]


def test_parallel_corpus_and_pairing_keys(tmp_path: Path) -> None:
    p = tmp_path / "par.tsv"
    p.write_text("ref\ten\tes\nr1\tone\tuno\nr2\ttwo\tdos\nr3\tthree\ttres\n", encoding="utf-8")
    corpus = ParallelCorpus(p, columns=("en", "es"), id_column="ref")
    en, es = corpus.views()
    assert en.items() == ["one", "two", "three"] and es.items() == ["uno", "dos", "tres"]
    assert en.ids == es.ids == ["r1", "r2", "r3"] and en.keys == es.keys
    assert en.fingerprint() != es.fingerprint() and corpus.view("es") is es and len(corpus) == 3
    ra, rb = align_keys(en, es)
    assert ra.tolist() == rb.tolist() == [0, 1, 2]
    # a second table in another order with one key missing and one extra
    q = tmp_path / "other.csv"
    q.write_text("ref,fr\nr3,trois\nr1,un\nr9,neuf\n", encoding="utf-8")
    fr = TextTable(q, "fr", id_column="ref")
    with pytest.raises(
        ValueError, match=r"1 only in the first, e\.g\. \['r2'\]; 1 only in the second, e\.g\. \['r9'\]"
    ):
        align_keys(en, fr, how="strict")
    ra, rb = align_keys(en, fr, how="inner")
    assert [en.keys[i] for i in ra] == [fr.keys[i] for i in rb] == ["r1", "r3"]
    sub = fr.subset(rb)
    assert sub.items() == ["un", "trois"] and sub.ids == ["r1", "r3"] and sub.fingerprint() != fr.fingerprint()
    with pytest.raises(ValueError, match="share no pairing key"):
        align_keys(en, InMemory(["x"], "text", ids=["zz"]), how="inner")
    with pytest.raises(ValueError, match="no view 'de'"):
        corpus.view("de")


# ------------------------------------------------------------------------------------ images


def _png(path: Path, color: tuple[int, ...], mode: str = "RGB", size: tuple[int, int] = (5, 4)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_labels_items_and_unreadable(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = tmp_path / "imgs"
    _png(root / "cat" / "a.png", (255, 0, 0))
    _png(root / "cat" / "sub" / "b.png", (0, 255, 0, 128), mode="RGBA")
    _png(root / "dog" / "c.png", (7,), mode="L")
    (root / "dog" / "notes.txt").write_text("ignored")
    broken = root / "dog" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg: unreadable image.*on_error='skip'"):
        ImageFolder(root)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file.*broken\.jpg"):
        ds = ImageFolder(root, on_error="skip")
    assert [p for p, _ in ds.skipped] == [str(broken)]
    assert ds.ids == ["cat/a.png", "cat/sub/b.png", "dog/c.png"] and ds.class_names == ["cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 1] and ds.modality == "image"
    items = ds.items()
    assert [im.mode for im in items] == ["RGB", "RGB", "L"] and items[0].size == (5, 4)
    assert np.asarray(items[0])[0, 0].tolist() == [255, 0, 0]
    fp = ds.fingerprint()
    _png(root / "cat" / "a.png", (254, 0, 0))
    with pytest.warns(UserWarning):
        assert ImageFolder(root, on_error="skip").fingerprint() != fp
    flat = tmp_path / "flat"
    _png(flat / "z.png", (1, 2, 3))
    unlabelled = ImageFolder(flat)
    assert unlabelled.labels is None and unlabelled.ids == ["z.png"]
    with pytest.raises(FileNotFoundError, match="missing"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no items found in .*empty"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(ValueError, match="on_error"):
        ImageFolder(flat, on_error="ignore")


def test_idx_round_trip_and_corruption(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 6, 5), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 2], dtype=np.uint8)
    for suffix in ("", ".gz"):
        write_idx(tmp_path / f"img{suffix}", images)
        write_idx(tmp_path / f"lab{suffix}", labels)
        np.testing.assert_array_equal(read_idx(tmp_path / f"img{suffix}"), images)
    floats = rng.standard_normal((3, 2)).astype(np.float32)
    write_idx(tmp_path / "f.idx", floats)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)
    assert gzip.decompress((tmp_path / "img.gz").read_bytes()) == (tmp_path / "img").read_bytes()
    ds = IDXImages(tmp_path / "img.gz", tmp_path / "lab.gz", class_names=["a", "b", "c"], limit=5)
    assert len(ds) == 5 and ds.ids == ["0", "1", "2", "3", "4"] and ds.labels.tolist() == [0, 1, 2, 0, 1]
    item = ds[2]
    assert item.dtype == np.uint8 and item.shape == (6, 5) and item.flags.writeable
    np.testing.assert_array_equal(item, images[2])
    assert ds.fingerprint() == IDXImages(tmp_path / "img", limit=5).fingerprint()
    assert ds.fingerprint() != IDXImages(tmp_path / "img", limit=6).fingerprint()
    raw = (tmp_path / "img").read_bytes()
    (tmp_path / "trunc").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match=r"trunc: IDX file truncated: header says shape \[7, 6, 5\]"):
        read_idx(tmp_path / "trunc")
    (tmp_path / "long").write_bytes(raw + b"xx")
    with pytest.raises(ValueError, match="trailing bytes"):
        IDXImages(tmp_path / "long")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(ValueError, match=r"magic: not an IDX file: bad magic number 0x0102"):
        read_idx(tmp_path / "magic")
    (tmp_path / "badgz.gz").write_bytes(gzip.compress(raw)[:-30])
    with pytest.raises(ValueError, match=r"badgz\.gz: corrupt or truncated gzip"):
        read_idx(tmp_path / "badgz.gz")
    write_idx(tmp_path / "few", labels[:4])
    with pytest.raises(ValueError, match=r"few: 4 labels for 7 images"):
        IDXImages(tmp_path / "img", tmp_path / "few")
    with pytest.raises(FileNotFoundError, match="nothing"):
        IDXImages(tmp_path / "nothing")


# ------------------------------------------------------------------------------------ audio


def test_audio_folder(tmp_path: Path) -> None:
    from scipy.io import wavfile

    root = tmp_path / "audio"
    (root / "speech").mkdir(parents=True)
    (root / "tone").mkdir()
    t = np.linspace(0, 1, 800, endpoint=False)
    wavfile.write(root / "speech" / "a.wav", 8000, (np.sin(2 * np.pi * 5 * t) * 16384).astype(np.int16))
    stereo = np.stack([np.full(400, 32767, np.int16), np.full(400, -32768, np.int16)], axis=1)
    wavfile.write(root / "speech" / "b.wav", 16000, stereo)
    wavfile.write(root / "tone" / "c.wav", 22050, (0.5 * np.cos(2 * np.pi * 3 * t)).astype(np.float32))
    (root / "tone" / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(ValueError, match=r"bad\.wav: unreadable audio"):
        AudioFolder(root)
    with pytest.warns(UserWarning, match=r"bad\.wav"):
        ds = AudioFolder(root, on_error="skip")
    assert ds.ids == ["speech/a.wav", "speech/b.wav", "tone/c.wav"] and ds.labels.tolist() == [0, 0, 1]
    assert ds.class_names == ["speech", "tone"] and ds.modality == "audio" and len(ds.skipped) == 1
    (a, ra), (b, rb), (c, rc) = ds.items()
    assert (ra, rb, rc) == (8000, 16000, 22050)
    for w in (a, b, c):
        assert w.dtype == np.float32 and w.ndim == 1 and np.abs(w).max() <= 1.0
    assert a.max() == pytest.approx(0.5, abs=1e-3) and np.abs(b).max() < 1e-4  # stereo averaged to mono
    assert c.max() == pytest.approx(0.5, abs=1e-3)


# ------------------------------------------------------------------------------------ Hugging Face


def test_hf_dataset_without_package_or_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="pip install datasets"):
        HFDataset("imdb", column="text")
    offline = types.ModuleType("datasets")

    def no_network(*args: Any, **kwargs: Any) -> None:
        assert "trust_remote_code" not in kwargs
        raise ConnectionError("Couldn't reach 'imdb' on the Hub (LocalEntryNotFoundError)")

    offline.load_dataset = no_network  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", offline)
    with pytest.raises(ConnectionError, match=r"could not load Hugging Face dataset 'imdb'.*network access"):
        HFDataset("imdb", split="test", column="text")


def test_hf_dataset_reads_columns_from_a_loaded_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter's own logic, over a stand-in for a loaded ``datasets.Dataset``."""
    Value = type("Value", (), {"__init__": lambda self, dtype: setattr(self, "dtype", dtype)})
    ClassLabel = type("ClassLabel", (), {"__init__": lambda self, names: setattr(self, "names", names)})

    class Split:
        def __init__(self) -> None:
            self.features = {"text": Value("string"), "label": ClassLabel(["neg", "pos"]), "uid": Value("string")}
            self.column_names = list(self.features)
            self._fingerprint = "abc123"
            self.data = {"text": ["good", "bad", "fine"], "label": [1, 0, 1], "uid": ["u1", "u2", "u3"]}

        def __len__(self) -> int:
            return 3

        def __getitem__(self, key: Any) -> Any:
            if isinstance(key, str):
                return self.data[key]
            return {k: v[key] for k, v in self.data.items()}

    seen: dict[str, Any] = {}

    def load_dataset(name: str, config: Any = None, **kwargs: Any) -> Split:
        seen.update(name=name, config=config, **kwargs)
        return Split()

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    ds = HFDataset("imdb", split="test", column="text", label_column="label", id_column="uid", revision="r1")
    assert seen == {"name": "imdb", "config": None, "split": "test", "revision": "r1"}
    assert ds.modality == "text" and ds.items(1, 3) == ["bad", "fine"] and ds.ids == ["u1", "u2", "u3"]
    assert ds.labels.tolist() == [1, 0, 1] and ds.class_names == ["neg", "pos"]
    assert ds.fingerprint() != HFDataset("imdb", split="test", column="text", revision="r2").fingerprint()
    with pytest.raises(ValueError, match="has no column 'body'"):
        HFDataset("imdb", column="body")


# ------------------------------------------------------------------------------------ in memory


def test_in_memory_fingerprints() -> None:
    a = InMemory(["x", "y"], "text")
    assert a.fingerprint() == InMemory(["x", "y"], "text").fingerprint()
    assert a.fingerprint() != InMemory(["y", "x"], "text").fingerprint()
    assert a.fingerprint() != InMemory(["x", "y"], "text", ids=["a", "b"]).fingerprint()
    audio = InMemory([(np.zeros(10, np.float32), 16000)], "audio")
    assert audio.fingerprint() != InMemory([(np.zeros(10, np.float32), 8000)], "audio").fingerprint()
    with pytest.raises(ValueError, match="no items found"):
        InMemory([], "text")


# ------------------------------------------------------------------------------------ bundled samples


def test_bundled_bible_pairs_match_the_demo_embeddings() -> None:
    from alignkit.data.samples import bible_pairs, samples_info
    from alignkit.demo_data import bible_demo_info, load_bible_demo

    en, es = bible_pairs()
    refs = bible_demo_info()["refs"]
    assert len(en) == len(es) == 2000 and en.ids == es.ids == refs
    assert all(t.strip() for t in en.items()) and all(t.strip() for t in es.items())
    i = refs.index("Gen.1.10") if "Gen.1.10" in refs else 0
    assert "God" in en[i] and "Dios" in es[i]
    X, _, demo_refs = load_bible_demo()
    assert X.shape == (2000, 384) and demo_refs == en.ids
    info = samples_info()
    assert "public domain" in info["bible"]["licence"] and "MIT" in info["fashion_mnist"]["licence"]


def test_bundled_fashion_mnist_sample() -> None:
    from alignkit.data.samples import FASHION_MNIST_CLASSES, fashion_mnist_sample

    ds = fashion_mnist_sample()
    assert len(ds) == 1000 and ds.modality == "image"
    assert np.bincount(ds.labels).tolist() == [100] * 10
    assert ds.class_names == FASHION_MNIST_CLASSES and ds.class_names[0] == "T-shirt/top"
    assert ds.class_names[9] == "Ankle boot"
    img = ds[0]
    assert img.shape == (28, 28) and img.dtype == np.uint8 and img.max() > 0
