"""The model zoo: architectures, data, deterministic resumable training, checkpoints, activations, the zoo encoder.

Fast: small networks trained for 1–2 epochs on the bundled 1,000-image Fashion-MNIST sample.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from alignkit.data.image import read_idx, write_idx
from alignkit.data.samples import FASHION_IMAGES_FILE, FASHION_LABELS_FILE, fashion_mnist_sample, sample_path
from alignkit.encoders import load_encoder
from alignkit.store import EmbeddingStore
from alignkit.zoo import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    ZooEncoder,
    activations,
    build_model,
    check_spec,
    default_spec,
    evaluate,
    fashion_mnist,
    init_model,
    layer_names,
    load_images,
    load_model,
    load_zoo,
    normalise,
    predict,
    sample_data,
    train_model,
    train_zoo,
)
from alignkit.zoo import train as zoo_train
from alignkit.zoo.checkpoint import read_checkpoint, write_checkpoint

MLP = {"arch": "mlp", "widths": [32, 24, 16]}
CNN = {"arch": "cnn", "channels": [4, 4, 8, 8, 8, 8]}
#: settings that make the small networks learn in 2 epochs of 800 images
FAST = {"batch_size": 32, "lr": 1e-2}


@pytest.fixture(scope="module")
def data():
    return sample_data()


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A small MLP and CNN trained 2 epochs (seed 0)."""
    root = tmp_path_factory.mktemp("zoo")
    return {
        arch: train_model(spec, data, seed=0, epochs=2, **FAST, out=root / f"{arch}.safetensors", progress=False)
        for arch, spec in (("mlp", MLP), ("cnn", CNN))
    }


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------ architectures


def test_mlp_and_cnn_are_flat_stacks_of_standard_modules():
    mlp = build_model(default_spec("mlp"))
    assert [type(m) for m in mlp] == [nn.Flatten] + [nn.Linear, nn.ReLU] * 3 + [nn.Linear]
    assert [m.out_features for m in mlp if isinstance(m, nn.Linear)] == [512, 512, 512, 10]
    assert mlp.fc1.in_features == 784
    cnn = build_model({"arch": "cnn", "channels": [32, 32, 64, 64, 128, 128]})
    kinds = [type(m) for m in cnn]
    block = [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert kinds == (block * 2 + [nn.MaxPool2d]) * 3 + [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear]
    convs = [m for m in cnn if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is None for c in convs)
    assert "bn3.running_mean" in cnn.state_dict() and "fc2.weight" in mlp.state_dict()
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert layer_names(mlp) == ["fc1", "fc2", "fc3", "logits"]
    assert layer_names(cnn) == [f"conv{i}" for i in range(1, 7)] + ["logits"]


def test_default_spec_and_width_scale():
    assert default_spec("mlp")["widths"] == [512, 512, 512]
    assert default_spec("cnn")["channels"] == [16, 16, 32, 32, 64, 64]
    assert default_spec("cnn", width_scale=4)["channels"] == [64, 64, 128, 128, 256, 256]
    assert default_spec("mlp", 0.5) == {
        "arch": "mlp",
        "widths": [256] * 3,
        "input_shape": [1, 28, 28],
        "num_classes": 10,
    }
    spec = check_spec({"arch": "cnn", "channels": [3, 5], "input_shape": [3, 8, 8], "num_classes": 4})
    assert build_model(spec)(torch.zeros(1, 3, 8, 8)).shape == (1, 4)
    json.dumps(spec)  # JSON-able


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ([1, 2], "spec must be a dict"),
        ({"arch": "resnet"}, "spec['arch'] must be one of ['mlp', 'cnn']"),
        ({"arch": "mlp", "channels": [3]}, "unknown key(s) ['channels']"),
        ({"arch": "mlp", "widths": []}, "non-empty list of positive integers"),
        ({"arch": "mlp", "widths": [8, 0]}, "spec['widths'][1] must be a positive integer"),
        ({"arch": "mlp", "widths": [8, True]}, "spec['widths'][1] must be a positive integer"),
        ({"arch": "mlp", "widths": [8.0]}, "spec['widths'][0] must be a positive integer"),
        ({"arch": "mlp", "input_shape": [28, 28]}, "spec['input_shape'] must be [channels, height, width]"),
        ({"arch": "mlp", "num_classes": 1}, "spec['num_classes'] must be at least 2"),
        ({"arch": "cnn", "channels": [4] * 10}, "shrink a 28×28 input below one pixel; use at most 9"),
    ],
)
def test_bad_specs(spec, words):
    with pytest.raises(ValueError) as err:
        build_model(spec)
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (nn.Linear(3, 2), "must be an nn.Sequential"),
        (nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), "model module 1 (Tanh) is not supported"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU()), "must end in an nn.Linear"),
        (nn.Sequential(nn.ReLU(), nn.Linear(4, 2)), "ReLU with no Linear or Conv2d before it"),
    ],
)
def test_layer_names_reject_other_models(model, words):
    with pytest.raises(ValueError, match=None) as err:
        layer_names(model)
    assert words in str(err.value)


def test_init_model_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = init_model(CNN, 7), init_model(CNN, 7), init_model(CNN, 8)
    assert torch.equal(torch.rand(3), expected)
    assert same_state(a, b) and not same_state(a, c)
    assert not any(m.training for m in a.modules())


# ------------------------------------------------------------------------------------------------- data


def test_load_images_normalises_with_the_fixed_statistics():
    raw = read_idx(sample_path(FASHION_IMAGES_FILE))
    labels = read_idx(sample_path(FASHION_LABELS_FILE))
    expected = (raw.astype(np.float64) / 255 - 0.2860) / 0.3530
    for source in ("sample:fashion-mnist", fashion_mnist_sample()):
        x, y = load_images(source)
        assert x.dtype == torch.float32 and x.shape == (1000, 1, 28, 28)
        np.testing.assert_allclose(x[:, 0].numpy(), expected, atol=1e-5)
        assert np.array_equal(y.numpy(), labels)
    x, y = load_images(sample_path(FASHION_IMAGES_FILE), sample_path(FASHION_LABELS_FILE), limit=10)
    assert x.shape == (10, 1, 28, 28) and np.array_equal(y.numpy(), labels[:10])
    assert (FASHION_MNIST_MEAN, FASHION_MNIST_STD) == (0.2860, 0.3530)
    x, y = load_images(sample_path(FASHION_IMAGES_FILE))
    assert y is None
    x, y = load_images(sample_path(FASHION_IMAGES_FILE), np.arange(1000) % 3)
    assert y.dtype == torch.int64 and y[:4].tolist() == [0, 1, 2, 0]
    with pytest.raises(ValueError, match="must be an image dataset"):
        load_images("sample:bible-en")
    with pytest.raises(ValueError, match="labels must be 1000 integers"):
        load_images(sample_path(FASHION_IMAGES_FILE), np.zeros(5, dtype=np.int64))


def test_fashion_mnist_reads_a_folder_of_idx_files(tmp_path, monkeypatch):
    raw = read_idx(sample_path(FASHION_IMAGES_FILE))
    labels = read_idx(sample_path(FASHION_LABELS_FILE))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", raw[:600])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels[:600])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", raw[600:])
    monkeypatch.delenv("ALIGNKIT_FASHION_MNIST", raising=False)
    with pytest.raises(FileNotFoundError, match=r"no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte\.gz"):
        fashion_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[600:])
    d = fashion_mnist(tmp_path)
    assert [tuple(t.shape) for t in d] == [(600, 1, 28, 28), (600,), (400, 1, 28, 28), (400,)]
    assert torch.equal(d.test_x, normalise(raw[600:]))
    with pytest.raises(ValueError, match=r"pass root= or set \$ALIGNKIT_FASHION_MNIST"):
        fashion_mnist()
    monkeypatch.setenv("ALIGNKIT_FASHION_MNIST", str(tmp_path))
    assert torch.equal(fashion_mnist().train_y, d.train_y)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        fashion_mnist(tmp_path / "nope")


def test_normalise_rejects_float_and_ragged_images():
    with pytest.raises(ValueError, match="uint8 pixels"):
        normalise(np.zeros((2, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="one size"):
        normalise([np.zeros((28, 28), np.uint8), np.zeros((20, 20), np.uint8)])
    with pytest.raises(ValueError, match=r"\(n, H, W\) or \(n, H, W, C\)"):
        normalise(np.zeros((28, 28), dtype=np.uint8))
    assert normalise(np.zeros((2, 8, 8, 3), np.uint8)).shape == (2, 3, 8, 8)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d[:3], "data must be (train_x, train_y, test_x, test_y)"),
        (lambda d: (d[0][:, 0], *d[1:]), "data.train_x must be float images (n, C, H, W)"),
        (lambda d: (d[0][:, :, :20], *d[1:]), "holds images of shape (1, 20, 28); the network expects (1, 28, 28)"),
        (lambda d: (d[0], d[1][:-1], *d[2:]), "data.train_y must be 800 integer labels"),
        (lambda d: (*d[:3], d[3] + 5), "holds labels in [5, 14]; the network has 10 classes"),
        (lambda d: (d[0], d[1].float(), *d[2:]), "data.train_y must be 800 integer labels"),
    ],
)
def test_bad_training_data(data, tmp_path, change, words):
    with pytest.raises(ValueError) as err:
        train_model(MLP, change(tuple(data)), seed=0, epochs=1, out=tmp_path / "m.safetensors", progress=False)
    assert words in str(err.value)
    assert not (tmp_path / "m.safetensors").exists()


# ------------------------------------------------------------------------------------------------ training


def test_training_learns_and_records_what_it_did(trained, data):
    for arch, z in trained.items():
        meta = z.metadata
        assert z.test_accuracy > 0.45, arch  # 10 classes: chance is 0.1
        assert meta["epochs_done"] == 2 and meta["finished"] and len(meta["history"]) == 2
        assert meta["train"]["optimizer"] == "adam" and meta["train"]["epochs"] == 2
        assert meta["history"][1]["train_loss"] < meta["history"][0]["train_loss"]
        assert len(meta["data_sha256"]) == 64 and meta["versions"]["alignkit"]
        assert not z.model.training
        # the recorded accuracy is the model's on the test set, recomputed by hand
        with torch.no_grad():
            acc = float((z.model(data.test_x).argmax(1) == data.test_y).sum()) / len(data.test_y)
        assert z.test_accuracy == pytest.approx(acc, abs=1e-9)


@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "cnn"])
def test_same_seed_same_weights_other_seed_other_weights(data, tmp_path, spec):
    a = train_model(spec, data, seed=3, epochs=1, out=tmp_path / "a.safetensors", progress=False)
    b = train_model(spec, data, seed=3, epochs=1, out=tmp_path / "b.safetensors", progress=False)
    c = train_model(spec, data, seed=4, epochs=1, out=tmp_path / "c.safetensors", progress=False)
    assert same_state(a.model, b.model)
    assert not same_state(a.model, c.model)
    assert a.test_accuracy == b.test_accuracy


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(data, tmp_path, monkeypatch):
    full = train_model(CNN, data, seed=1, epochs=2, out=tmp_path / "full.safetensors", progress=False)
    out = tmp_path / "cut.safetensors"
    real_write = zoo_train.write_checkpoint

    def write_then_die(*args, **kwargs):
        real_write(*args, **kwargs)
        raise KeyboardInterrupt  # killed right after epoch 1's checkpoint

    monkeypatch.setattr(zoo_train, "write_checkpoint", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_model(CNN, data, seed=1, epochs=2, out=out, progress=False)
    monkeypatch.undo()
    meta, tensors = read_checkpoint(out)
    assert meta["epochs_done"] == 1 and not meta["finished"]
    assert any(k.startswith("optimizer/") and k.endswith("/exp_avg_sq") for k in tensors)
    with pytest.raises(ValueError, match=r"an unfinished run \(epoch 1 of 2\)"):
        load_model(out)
    assert load_model(out, allow_unfinished=True).metadata["epochs_done"] == 1
    resumed = train_model(CNN, data, seed=1, epochs=2, out=out, progress=False)
    assert same_state(resumed.model, full.model)
    assert resumed.test_accuracy == full.test_accuracy
    assert [h["train_loss"] for h in resumed.metadata["history"]] == [h["train_loss"] for h in full.metadata["history"]]
    _, finished = read_checkpoint(out)
    assert not any(k.startswith("optimizer/") for k in finished)  # the finished file drops the Adam state


def test_a_finished_checkpoint_is_loaded_not_retrained_and_other_settings_refused(trained, data, monkeypatch):
    z = trained["mlp"]
    monkeypatch.setattr(zoo_train, "deterministic", None)  # would fail if training ran
    again = train_model(MLP, data, seed=0, epochs=2, **FAST, out=z.path, progress=False)
    assert same_state(again.model, z.model)
    with pytest.raises(
        ValueError,
        match=r"holds a different run \(train\.lr: checkpoint 0\.01, asked for 0\.02\); delete it or pass another out=",
    ):
        train_model(MLP, data, seed=0, epochs=2, batch_size=32, lr=0.02, out=z.path, progress=False)
    with pytest.raises(ValueError, match="seed: checkpoint 0, asked for 1"):
        train_model(MLP, data, seed=1, epochs=2, **FAST, out=z.path, progress=False)
    other = (data.train_x[:-1], data.train_y[:-1], data.test_x, data.test_y)
    with pytest.raises(ValueError, match="data_sha256: checkpoint"):
        train_model(MLP, other, seed=0, epochs=2, **FAST, out=z.path, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": 1.0}, "seed must be a non-negative integer"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"lr": float("nan")}, "lr must be a positive finite number"),
    ],
)
def test_bad_training_settings(data, tmp_path, kwargs, words):
    args = {"seed": 0, "epochs": 1, "out": tmp_path / "m.safetensors", "progress": False, **kwargs}
    with pytest.raises(ValueError, match=None) as err:
        train_model(MLP, data, **args)
    assert words in str(err.value)


def test_train_zoo_trains_what_is_missing_and_loads_the_rest(data, tmp_path, monkeypatch):
    zoo = train_zoo(MLP, [2, 0], tmp_path, data=data, epochs=1, progress=False)
    assert [z.seed for z in zoo] == [2, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mlp-32x24x16-seed0.safetensors",
        "mlp-32x24x16-seed2.safetensors",
    ]

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(zoo_train, "train_model", no_training)
    monkeypatch.delenv("ALIGNKIT_FASHION_MNIST", raising=False)
    again = train_zoo(MLP, [0, 2], tmp_path, epochs=1, progress=False)  # no data needed: all finished
    assert all(same_state(a.model, b.model) for a, b in zip(again, zoo[::-1], strict=True))
    loaded = load_zoo(tmp_path)
    assert [z.seed for z in loaded] == [0, 2] and load_zoo(tmp_path, CNN) == []
    with pytest.raises(ValueError, match="seeds must be distinct"):
        train_zoo(MLP, [1, 1], tmp_path, data=data, progress=False)


# ---------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(trained):
    for z in trained.values():
        back = load_model(z.path)
        assert same_state(back.model, z.model)
        assert (back.spec, back.seed, back.test_accuracy) == (z.spec, z.seed, z.test_accuracy)
        assert not back.model.training and back.name.endswith("-seed0")


def test_bad_checkpoints(trained, tmp_path):
    good = trained["mlp"].path
    with pytest.raises(FileNotFoundError, match="zoo checkpoint not found"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        load_model(tmp_path / "empty.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(300))
    with pytest.raises(ValueError, match="corrupt or not a safetensors file"):
        load_model(tmp_path / "junk.safetensors")
    raw = good.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(ValueError, match="corrupt or not a safetensors file"):
        load_model(tmp_path / "cut.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="without alignkit zoo metadata"):
        load_model(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="is a folder"):
        load_model(tmp_path)


def test_weights_of_another_architecture_are_named(trained, tmp_path):
    meta, _ = read_checkpoint(trained["mlp"].path)
    meta.pop("format")
    other = build_model({"arch": "mlp", "widths": [32, 20, 16]})
    write_checkpoint(tmp_path / "x.safetensors", other, meta)
    with pytest.raises(ValueError) as err:
        load_model(tmp_path / "x.safetensors")
    assert str(err.value) == (
        f"checkpoint {tmp_path / 'x.safetensors'} was trained as arch mlp, widths [32, 24, 16]; "
        "tensor fc2.weight has shape (20, 32), expected (24, 32)"
    )
    write_checkpoint(tmp_path / "y.safetensors", build_model(CNN), meta)
    with pytest.raises(ValueError, match=r"was trained as arch mlp, widths \[32, 24, 16\]; it lacks tensor\(s\)"):
        load_model(tmp_path / "y.safetensors")
    bad = trained["mlp"].model
    nan = build_model(MLP)
    nan.load_state_dict(bad.state_dict())
    with torch.no_grad():
        nan.fc1.weight[0, 0] = float("nan")
    write_checkpoint(tmp_path / "z.safetensors", nan, meta)
    with pytest.raises(ValueError, match=r"tensor fc1\.weight holds NaN/Inf"):
        load_model(tmp_path / "z.safetensors")


# ---------------------------------------------------------------------------------------------- activations


def test_mlp_activations_match_a_forward_pass_by_hand(trained, data):
    model = trained["mlp"].model
    x = data.test_x[:50]
    acts = activations(model, x, batch_size=7)
    h = x.reshape(50, -1).double()
    weights = {k: v.detach().double() for k, v in model.state_dict().items()}
    for name in ("fc1", "fc2", "fc3"):
        h = torch.relu(h @ weights[f"{name}.weight"].T + weights[f"{name}.bias"])
        assert acts[name].dtype == np.float32 and acts[name].shape == (50, h.shape[1])
        np.testing.assert_allclose(acts[name], h.numpy(), rtol=1e-6, atol=1e-5)  # float32 forward: ~3e-7 relative
    logits = h @ weights["logits.weight"].T + weights["logits.bias"]
    np.testing.assert_allclose(acts["logits"], logits.numpy(), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(predict(model, x).numpy(), logits.numpy(), rtol=1e-6, atol=1e-5)
    assert list(activations(model, x, layers=["fc2"])) == ["fc2"]


def test_cnn_activations_match_a_forward_pass_by_hand(trained, data):
    model = trained["cnn"].model
    x = data.test_x[:20]

    def block(h, i):
        conv, bn = getattr(model, f"conv{i}"), getattr(model, f"bn{i}")
        h = F.conv2d(h, conv.weight, padding=1)
        h = (h - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps)
        return torch.relu(h * bn.weight[None, :, None, None] + bn.bias[None, :, None, None])

    with torch.no_grad():
        h1 = block(x, 1)
        h2 = block(h1, 2)
        h3 = block(F.max_pool2d(h2, 2), 3)
    mean = activations(model, x, layers=["conv1", "conv3"])
    flat = activations(model, x, layers=["conv3"], pooling="flatten")
    np.testing.assert_allclose(mean["conv1"], h1.mean(dim=(2, 3)).numpy(), atol=1e-5)
    np.testing.assert_allclose(mean["conv3"], h3.mean(dim=(2, 3)).numpy(), atol=1e-5)
    assert flat["conv3"].shape == (20, 8 * 14 * 14)
    np.testing.assert_allclose(flat["conv3"], h3.flatten(1).numpy(), atol=1e-5)
    full = activations(model, x)
    assert {k: v.shape for k, v in full.items()} == {
        "conv1": (20, 4), "conv2": (20, 4), "conv3": (20, 8), "conv4": (20, 8), "conv5": (20, 8), "conv6": (20, 8),
        "logits": (20, 10),
    }  # fmt: skip
    with torch.no_grad():
        np.testing.assert_allclose(full["logits"], model(x).numpy(), atol=1e-5)
    scores = evaluate(model, x, data.test_y[:20])
    with torch.no_grad():
        assert scores["loss"] == pytest.approx(float(F.cross_entropy(model(x), data.test_y[:20])), rel=1e-5)


def test_activation_errors(trained, data):
    mlp, cnn = trained["mlp"].model, trained["cnn"].model
    x = data.test_x[:4]
    cnn.train()
    try:
        with pytest.raises(ValueError, match=r"model is in train mode; call model\.eval"):
            activations(cnn, x)
        with pytest.raises(ValueError, match="model is in train mode"):
            predict(cnn, x)
    finally:
        cnn.eval()
    with pytest.raises(ValueError, match=r"must be 4-D \(n, C, H, W\); got shape \(4, 28, 28\)"):
        activations(mlp, x[:, 0])
    with pytest.raises(ValueError, match="images have 3 channel"):
        activations(cnn, x.repeat(1, 3, 1, 1))
    with pytest.raises(ValueError, match="hold 1568 values each; the network's first Linear expects 784"):
        activations(mlp, torch.zeros(4, 2, 28, 28))
    with pytest.raises(ValueError, match="must be float"):
        activations(mlp, torch.zeros(4, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"layers \['conv9'\] are not layers"):
        activations(cnn, x, layers=["conv9"])
    with pytest.raises(ValueError, match="pooling must be one of"):
        activations(cnn, x, pooling="max")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        activations(cnn, x, batch_size=0)
    with pytest.raises(ValueError, match="labels must lie in"):
        evaluate(cnn, x, torch.tensor([0, 1, 2, 10]))


# ---------------------------------------------------------------------------------------------------- encoder


def test_zoo_encoder_goes_through_the_store(trained, tmp_path):
    z = trained["cnn"]
    dataset = fashion_mnist_sample().subset(range(40))
    encoder = load_encoder(f"zoo:{z.path}", device="cpu", batch_size=16)
    assert isinstance(encoder, ZooEncoder) and encoder.modality == "image"
    assert encoder.layer_names == layer_names(z.model)
    assert encoder.dims == {"conv1": 4, "conv2": 4, "conv3": 8, "conv4": 8, "conv5": 8, "conv6": 8, "logits": 10}
    spaces = EmbeddingStore(tmp_path / "store").extract(encoder, dataset, progress=False)
    x, _ = load_images(dataset)
    expected = activations(z.model, x)
    for name in encoder.layer_names:
        np.testing.assert_allclose(np.asarray(spaces[name]), expected[name], atol=1e-5)
    flat = ZooEncoder(z.path, pooling="flatten", device="cpu")
    assert flat.dims["conv1"] == 4 * 28 * 28 and flat.fingerprint() != encoder.fingerprint()
    other = ZooEncoder(trained["mlp"].path, device="cpu")
    assert other.identity()["checkpoint_sha256"] != encoder.identity()["checkpoint_sha256"]
    with pytest.raises(ValueError, match=r"images of shape \(1, 20, 20\)"):
        encoder.encode([np.zeros((20, 20), np.uint8)])
    with pytest.raises(ValueError, match="pooling"):
        load_encoder(f"zoo:{z.path}", pooling="max")
    with pytest.raises(FileNotFoundError, match="zoo checkpoint not found"):
        load_encoder(f"zoo:{Path(tmp_path) / 'none.safetensors'}")
