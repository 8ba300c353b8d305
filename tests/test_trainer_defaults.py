"""HeadAligner defaults for few pairs: batch min(4096, max(256, n//8)), lr warm-up over 10 % of the steps, lr 1e-3
scaled by min(1, 1024/(expansion·d_in)) for StarMLP heads, SigLIP's per-row sum; star + SigLIP learning an
anisotropic planted alignment with them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from alignkit.align.trainer import HeadAligner


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def anisotropic(n: int = 768, d: int = 32, seed: int = 0):
    """Y = X·R + noise, both sides offset by a large shared mean (like e5 embeddings: high mean cosine)."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, d)).astype(np.float32)
    r = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
    mx, my = rng.standard_normal(d).astype(np.float32), rng.standard_normal(d).astype(np.float32)
    X = s + math.sqrt(d) * mx / np.linalg.norm(mx)
    Y = s @ r + 0.3 * rng.standard_normal((n, d)).astype(np.float32) + math.sqrt(d) * my / np.linalg.norm(my)
    return X, Y


@pytest.mark.parametrize(
    ("n", "head", "kw", "want"),
    [
        (600, "star", {}, {"batch_size": 256, "lr": 1e-3, "warmup_steps": 1}),
        (6000, "linear", {"epochs": 5}, {"batch_size": 750, "lr": 1e-3, "warmup_steps": 4}),
        (
            600,
            "star",
            {"batch_size": 64, "lr": 1e-2, "warmup_steps": 0},
            {"batch_size": 64, "lr": 1e-2, "warmup_steps": 0},
        ),
    ],
)
def test_default_schedule_reaches_fit_heads(tmp_path, n, head, kw, want):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    kw = {"epochs": 2, **kw}
    kw.setdefault("head_kwargs", {"expansion": 1} if head == "star" else None)
    est = HeadAligner(head=head, d_out=4, checkpoint_dir=str(tmp_path), **kw)
    assert est.get_params()["batch_size"] == kw.get("batch_size")  # None stays None (sklearn clone)
    est.fit(X, X)
    cfg = json.loads((tmp_path / "checkpoint.json").read_text())["config"]
    assert {k: cfg[k] for k in want} == want


def test_star_siglip_learns_with_defaults():
    X, Y = anisotropic()
    est = HeadAligner(head="star", loss="siglip", d_out=32).fit(X[:512], Y[:512])
    full_batch = HeadAligner(head="star", loss="siglip", d_out=32, batch_size=4096).fit(X[:512], Y[:512])
    good, bad = est.score(X[512:], Y[512:]), full_batch.score(X[512:], Y[512:])
    assert good > 0.4  # top-1 among 256 held-out pairs; chance is 0.004
    assert good > bad + 0.2


def test_bad_default_overrides():
    X, Y = anisotropic(n=64)
    with pytest.raises(ValueError, match="batch_size"):
        HeadAligner(batch_size=1).fit(X, Y)
    with pytest.raises(ValueError, match="warmup_steps"):
        HeadAligner(warmup_steps=-1).fit(X, Y)
    with pytest.raises(ValueError, match="epochs"):
        HeadAligner(epochs=0).fit(X, Y)
    with pytest.raises(ValueError, match="lr"):
        HeadAligner(lr=-1.0, epochs=1).fit(X, Y)
