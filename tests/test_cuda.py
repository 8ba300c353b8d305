"""CUDA paths agree with the CPU ones (skipped where no GPU is present; run on a GPU machine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignkit import atlas, measure
from alignkit.align import HeadAligner
from alignkit.align.losses import siglip
from alignkit.evaluate import retrieval
from alignkit.neighbors import knn_graph

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _pair(n: int = 600, d: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 16))
    x = z @ rng.standard_normal((16, d)) + 0.3 * rng.standard_normal((n, d))
    y = np.tanh(z @ rng.standard_normal((16, d))) + 0.3 * rng.standard_normal((n, d))
    return x.astype(np.float32), y.astype(np.float32)


def test_knn_graph_on_cuda_matches_cpu() -> None:
    x, _ = _pair()
    cpu = knn_graph(x, 10)
    gpu = knn_graph(torch.from_numpy(x).cuda(), 10)
    same = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(cpu.indices.tolist(), gpu.indices.cpu().tolist(), strict=True)]
    )
    assert same > 0.995  # float32 near-ties may swap the 10th neighbour


@pytest.mark.parametrize("name", ["mutual_knn", "cka", "cka?debiased=false", "cca", "rsa"])
def test_measures_on_cuda_match_cpu(name: str) -> None:
    x, y = _pair()
    cpu = measure(name, x, y)
    gpu = measure(name, torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda())
    assert gpu == pytest.approx(cpu, abs=2e-3)


def test_atlas_with_null_on_cuda_matches_cpu() -> None:
    x, y = _pair()
    A = {f"a{i}": x[:, : 16 * (i + 1)] for i in range(3)}
    B = {f"b{i}": y[:, : 16 * (i + 1)] for i in range(2)}
    cpu = atlas(A, B, "cka", n_perm=50, seed=1)
    on_gpu = [{k: torch.from_numpy(v).cuda() for k, v in side.items()} for side in (A, B)]
    gpu = atlas(*on_gpu, "cka", n_perm=50, seed=1)
    np.testing.assert_allclose(gpu.scores, cpu.scores, atol=1e-4)
    np.testing.assert_allclose(gpu.null, cpu.null, atol=1e-3)


@pytest.mark.parametrize("reduction", ["mean", "sum_rows"])
def test_blocked_siglip_on_cuda_equals_dense(reduction: str) -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(1536, 64, device="cuda", generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1536, 64, device="cuda", generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(2.3, device="cuda", dtype=torch.float64, requires_grad=True)
    t = torch.tensor(-10.0, device="cuda", dtype=torch.float64, requires_grad=True)
    grads = []
    for impl in ("dense", "blocked"):
        loss = siglip(a, b, s, t, reduction=reduction, impl=impl, block_size=None if impl == "dense" else 200)
        grads.append((loss.detach(), *torch.autograd.grad(loss, (a, b, s, t))))
    for u, v in zip(*grads, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)


def test_head_training_on_cuda_is_seeded_and_learns() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1200, 48)).astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((48, 48)))
    y = (x @ q + 0.1 * rng.standard_normal((1200, 48))).astype(np.float32)  # a noisy rotation: learnable
    fits = [
        HeadAligner(head="linear", loss="infonce", d_out=32, epochs=30, batch_size=128, device="cuda", seed=3).fit(
            x[:1000], y[:1000]
        )
        for _ in range(2)
    ]
    zx = [np.asarray(f.transform_x(x[1000:])) for f in fits]
    np.testing.assert_allclose(zx[0], zx[1], atol=1e-5)  # same seed, same device: same model
    zy = np.asarray(fits[0].transform_y(y[1000:]))
    r1 = [r for r in retrieval(zx[0], zy, ks=(1,)) if r["metric"] == "R@1"]
    assert min(r["value"] for r in r1) > 0.5  # 200 candidates: chance is 0.005


def test_retrieval_on_cuda_matches_cpu() -> None:
    x, y = _pair()
    cpu = retrieval(x, y, scoring="csls")
    gpu = retrieval(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda(), scoring="csls")
    for a, b in zip(cpu, gpu, strict=True):
        assert a["metric"] == b["metric"] and a["value"] == pytest.approx(b["value"], abs=2e-3)
