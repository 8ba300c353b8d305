"""Losses: hand-written loop references (float64), published identities, properties, gradients, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.align.losses import (
    CombinedLoss,
    GramVolumeLoss,
    InfoNCE,
    SigLIP,
    alignment_loss,
    calibrated_uniformity,
    geodesic_mix,
    gram_volume,
    gram_volume_loss,
    info_nce,
    intra_modal_loss,
    mixup_negatives_loss,
    mv_dhel,
    mv_info_nce,
    siglip,
    structure_lambda,
    structure_reg,
    triple_contrastive,
    uniformity_loss,
)

D = torch.float64


def _randn(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=D)


def _unit(v):
    return v / v.norm()


def _rows(x):
    return [_unit(x[i]) for i in range(x.shape[0])]


def _orth(d, seed=3):
    q, _ = torch.linalg.qr(_randn(d, d, seed=seed))
    return q


# ------------------------------------------------------------------------------------------------- InfoNCE
def _info_nce_ref(a, b, tau):
    a, b = _rows(a), _rows(b)
    n = len(a)
    s = [[float(a[i] @ b[j]) / tau for j in range(n)] for i in range(n)]
    row = sum(-s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(n))) for i in range(n)) / n
    col = sum(-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(n))) for j in range(n)) / n
    return 0.5 * (row + col)


def test_info_nce_matches_loops():
    a, b = _randn(4, 5, seed=1), _randn(4, 5, seed=2)
    assert info_nce(a, b, 0.3).item() == pytest.approx(_info_nce_ref(a, b, 0.3), rel=1e-12)


def test_info_nce_equal_logits_is_log_n():
    a = torch.ones(5, 3, dtype=D)
    b = torch.tensor([[1.0, -2.0, 0.5]], dtype=D).repeat(5, 1)
    assert info_nce(a, b, 0.05).item() == pytest.approx(math.log(5), rel=1e-12)


def test_info_nce_module_temperature_and_clamp():
    a, b = _randn(4, 3, seed=1), _randn(4, 3, seed=2)
    m = InfoNCE(learnable=True, init_temperature=0.07)
    assert m.temperature.item() == pytest.approx(0.07)
    assert m(a, b).item() == pytest.approx(_info_nce_ref(a, b, 0.07), rel=1e-6)
    m(a, b).backward()
    assert m.logit_scale.grad is not None and torch.isfinite(m.logit_scale.grad)
    with torch.no_grad():
        m.logit_scale.fill_(10.0)
    assert m.temperature.item() == pytest.approx(0.01)  # scale clamped at 100
    m.clamp_()
    assert m.logit_scale.item() == pytest.approx(math.log(100))
    fixed = InfoNCE(learnable=False)
    assert list(fixed.parameters()) == []


def test_info_nce_gradcheck():
    a = _randn(3, 4, seed=1).requires_grad_()
    b = _randn(3, 4, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda u, v: info_nce(u, v, 0.5), (a, b))


# -------------------------------------------------------------------------------------------------- SigLIP
def _siglip_ref(a, b, s, bias):
    a, b = _rows(a), _rows(b)
    n = len(a)
    tot = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            logit = math.exp(s) * float(a[i] @ b[j]) + bias
            tot += -math.log(1.0 / (1.0 + math.exp(-z * logit)))
    return tot


def test_siglip_matches_loops_and_reductions_differ_by_n():
    n = 4
    a, b = _randn(n, 3, seed=1), _randn(n, 3, seed=2)
    ref = _siglip_ref(a, b, math.log(10), -2.0)
    mean = siglip(a, b, math.log(10), -2.0, reduction="mean")
    rows = siglip(a, b, math.log(10), -2.0, reduction="sum_rows")
    assert mean.item() == pytest.approx(ref / n**2, rel=1e-12)
    assert rows.item() == pytest.approx(ref / n, rel=1e-12)
    assert (rows / mean).item() == pytest.approx(n, rel=1e-12)


def test_siglip_extra_negatives_are_negative_columns():
    a, b, e = _randn(3, 4, seed=1), _randn(3, 4, seed=2), _randn(2, 4, seed=3)
    out = siglip(a, b, 1.0, -1.0, extra_negatives=e)
    bias, scale = -1.0, math.exp(1.0)
    extra = sum(
        math.log1p(math.exp(scale * float(_unit(a[i]) @ _unit(e[j])) + bias)) for i in range(3) for j in range(2)
    )
    base = _siglip_ref(a, b, 1.0, bias)
    assert out.item() == pytest.approx((base + extra) / 15, rel=1e-12)


def test_siglip_module_init_clamp_and_grad():
    m = SigLIP()
    assert m.logit_scale.item() == pytest.approx(math.log(10))
    assert m.bias.item() == pytest.approx(-10.0)
    loss = m(_randn(4, 3, seed=1).float(), _randn(4, 3, seed=2).float())
    loss.backward()
    assert torch.isfinite(m.logit_scale.grad) and torch.isfinite(m.bias.grad)
    with torch.no_grad():
        m.logit_scale.fill_(9.0)
    assert m.clamp_().logit_scale.item() == pytest.approx(math.log(100))
    with torch.no_grad():
        m.logit_scale.fill_(-1.0)
    assert m.clamp_().logit_scale.item() == 0.0


def test_siglip_gradcheck():
    a = _randn(3, 4, seed=1).requires_grad_()
    b = _randn(3, 4, seed=2).requires_grad_()
    s = torch.tensor(0.5, dtype=D, requires_grad=True)
    bias = torch.tensor(-1.0, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, v, p, q: siglip(u, v, p, q), (a, b, s, bias))


# --------------------------------------------------------------------------------------------- STRUCTURE R_S
def _structure_ref(x, z, levels, tau, margin, weighting, divergence):
    def p_matrix(v):
        n = v.shape[0]
        u = torch.stack(_rows(v))
        mean = sum(u[i] for i in range(n)) / n
        c = [u[i] - mean for i in range(n)]
        p = torch.zeros(n, n, dtype=D)
        for i in range(n):
            e = [math.exp(float(c[i] @ c[j]) / tau) for j in range(n)]
            for j in range(n):
                p[i, j] = e[j] / sum(e)
        return p

    def kl(p, q):
        n = p.shape[0]
        return (
            sum(
                float(p[i, j]) * (math.log(float(p[i, j]) + 1e-12) - math.log(float(q[i, j]) + 1e-12))
                for i in range(n)
                for j in range(n)
            )
            / n
        )

    px, pz = p_matrix(x), p_matrix(z)
    total = 0.0
    for lev in range(1, levels + 1):
        a, b = torch.linalg.matrix_power(px, lev), torch.linalg.matrix_power(pz, lev)
        m = (a + b) / 2
        div = 0.5 * (kl(m, a) + kl(m, b)) if divergence == "code" else 0.5 * (kl(a, m) + kl(b, m))
        w = 1.0 if weighting == "none" else 1.0 / lev
        total += w * max(div - margin, 0.0)
    return total / levels


@pytest.mark.parametrize(
    "levels,weighting,divergence,margin",
    [(1, "none", "code", 0.0), (3, "inverse", "code", 0.0), (2, "inverse", "js", 0.0), (1, "none", "js", 0.01)],
)
def test_structure_reg_matches_loops(levels, weighting, divergence, margin):
    x, z = _randn(4, 3, seed=1), _randn(4, 5, seed=2)
    got = structure_reg(x, z, levels=levels, tau=0.5, margin=margin, weighting=weighting, divergence=divergence)
    ref = _structure_ref(x, z, levels, 0.5, margin, weighting, divergence)
    assert got.item() == pytest.approx(ref, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("divergence", ["code", "js"])
def test_structure_reg_invariances(divergence):
    x = _randn(6, 4, seed=1)
    assert structure_reg(x, x, levels=2, divergence=divergence).item() == pytest.approx(0.0, abs=1e-12)
    assert structure_reg(x, x @ _orth(4), levels=2, divergence=divergence).item() == pytest.approx(0.0, abs=1e-9)
    z = _randn(6, 3, seed=2)
    assert structure_reg(x, z, divergence=divergence).item() == pytest.approx(
        structure_reg(z, x, divergence=divergence).item(), rel=1e-12
    )


def test_structure_reg_js_bounded_by_log2():
    x, z = _randn(8, 4, seed=1), _randn(8, 4, seed=2)
    for tau in (0.001, 0.05):
        val = structure_reg(x, z, levels=2, tau=tau, divergence="js").item()
        assert 0.0 < val <= math.log(2) + 1e-12


def test_structure_reg_gradcheck_and_lambda():
    x = _randn(4, 3, seed=1)
    z = _randn(4, 3, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: structure_reg(x, v, levels=2, tau=0.5), (z,))
    assert structure_lambda(0) == 0.0
    assert structure_lambda(500) == pytest.approx(5.0)
    assert structure_lambda(5000) == 10.0
    assert structure_lambda(3, warmup=0) == 10.0


# ---------------------------------------------------------------------------------------------------- GRAM
def test_gram_volume_identities():
    th = 0.7
    v = torch.tensor([[1.0, 0.0, 0.0], [math.cos(th), math.sin(th), 0.0]], dtype=D)
    assert gram_volume(v).item() == pytest.approx(abs(math.sin(th)), rel=1e-12)
    x = _randn(20, 3, 5, seed=1)
    vol = gram_volume(x)
    assert bool(((vol >= 0) & (vol <= 1 + 1e-12)).all())
    dep = torch.stack([x[:, 0], x[:, 1], 2 * x[:, 0] - 0.5 * x[:, 1]], dim=1)
    assert gram_volume(dep).abs().max().item() < 1e-6
    u = x / x.norm(dim=-1, keepdim=True)
    a = (u[:, 0] * u[:, 1]).sum(-1)
    b = (u[:, 0] * u[:, 2]).sum(-1)
    c = (u[:, 1] * u[:, 2]).sum(-1)
    closed = torch.sqrt((1 + 2 * a * b * c - a**2 - b**2 - c**2).abs())
    torch.testing.assert_close(vol, closed)


def test_gram_volume_loss_matches_loops():
    n, tau, ls = 4, 0.3, 0.1
    anchor, o1, o2 = _randn(n, 3, seed=1), _randn(n, 3, seed=2), _randn(n, 3, seed=3)
    got = gram_volume_loss(anchor, [o1, o2], temperature=tau, label_smoothing=ls, eps=0.0)
    vol = torch.zeros(n, n, dtype=D)
    for i in range(n):
        for j in range(n):
            vs = [_unit(anchor[i]), _unit(o1[j]), _unit(o2[j])]
            g = torch.tensor([[float(p @ q) for q in vs] for p in vs], dtype=D)
            vol[i, j] = math.sqrt(abs(float(torch.linalg.det(g))))
    logits = -vol / tau

    def ce(lg):  # label-smoothed CE, written out
        tot = 0.0
        for i in range(n):
            lse = math.log(sum(math.exp(float(lg[i, j])) for j in range(n)))
            logp = [float(lg[i, j]) - lse for j in range(n)]
            tot += -(1 - ls) * logp[i] - ls / n * sum(logp)
        return tot / n

    assert got.item() == pytest.approx(0.5 * (ce(logits) + ce(logits.T)), rel=1e-10)


def test_gram_volume_loss_cannot_see_signs():
    """|det G| is unchanged when a vector flips: the pitfall documented in gram_volume_loss."""
    a, b, c = _randn(5, 4, seed=1), _randn(5, 4, seed=2), _randn(5, 4, seed=3)
    base = gram_volume_loss(a, [b, c], 0.1).item()
    assert gram_volume_loss(a, [-b, c], 0.1).item() == pytest.approx(base, rel=1e-12)
    assert gram_volume_loss(-a, [b, -c], 0.1).item() == pytest.approx(base, rel=1e-12)


def test_gram_loss_module_and_gradcheck():
    anchor = _randn(3, 4, seed=1).requires_grad_()
    o1 = _randn(3, 4, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: gram_volume_loss(a, [b], temperature=0.5), (anchor, o1))
    m = GramVolumeLoss()
    assert m.log_temperature.exp().item() == pytest.approx(0.07)
    m(anchor.detach().float(), [o1.detach().float()]).backward()
    assert torch.isfinite(m.log_temperature.grad)


# ------------------------------------------------------------------------------------------ multi-view losses
def test_mv_info_nce_matches_loops():
    m, n, tau = 3, 3, 0.5
    v = _randn(m, n, 4, seed=1)
    u = [[_unit(v[i, l]) for l in range(n)] for i in range(m)]
    ref = 0.0
    for i in range(m):
        num = sum(math.exp(float(u[i][l] @ u[i][k]) / tau) for l in range(n) for k in range(n) if l != k)
        den = sum(
            math.exp(float(u[i][l] @ u[j][k]) / tau)
            for l in range(n)
            for j in range(m)
            for k in range(n)
            if (j, k) != (i, l)
        )
        ref += -math.log(num / den)
    assert mv_info_nce(v, tau).item() == pytest.approx(ref / m, rel=1e-12)


def test_mv_dhel_matches_loops_and_two_view_dhel():
    m, n, tau = 4, 3, 0.2
    v = _randn(m, n, 4, seed=1)
    u = [[_unit(v[i, l]) for l in range(n)] for i in range(m)]
    ref = 0.0
    for i in range(m):
        align = sum(math.exp(float(u[i][l] @ u[i][k]) / tau) for l in range(n) for k in range(l + 1, n))
        unif = sum(
            math.log(sum(math.exp(float(u[i][l] @ u[j][l]) / tau) for j in range(m) if j != i)) for l in range(n)
        )
        ref += -math.log(align) + unif
    assert mv_dhel(v, tau).item() == pytest.approx(ref / m, rel=1e-12)
    # N = 2: DHEL −log(e^{x_i·y_i/τ} / (Σ_{j≠i} e^{x_i·x_j/τ} Σ_{j≠i} e^{y_i·y_j/τ}))
    x, y = [_unit(r) for r in _randn(m, 4, seed=5)], [_unit(r) for r in _randn(m, 4, seed=6)]
    dhel = 0.0
    for i in range(m):
        sx = sum(math.exp(float(x[i] @ x[j]) / tau) for j in range(m) if j != i)
        sy = sum(math.exp(float(y[i] @ y[j]) / tau) for j in range(m) if j != i)
        dhel += -math.log(math.exp(float(x[i] @ y[i]) / tau) / (sx * sy))
    views = torch.stack([torch.stack(x), torch.stack(y)], dim=1)
    assert mv_dhel(views, tau).item() == pytest.approx(dhel / m, rel=1e-12)


def test_triple_contrastive_matches_loops():
    """Cross-view InfoNCE with intra-view negatives (CrossCLR's logit-scaled w·s), summed over view pairs."""
    m, n, tau, w = 4, 3, 0.3, 0.8
    v = _randn(m, n, 5, seed=7)
    u = [[_unit(v[i, l]) for l in range(n)] for i in range(m)]
    ref = 0.0
    for a in range(n):
        for b in range(a + 1, n):
            halves = []
            for p, q in ((a, b), (b, a)):
                tot = 0.0
                for i in range(m):
                    den = sum(math.exp(float(u[i][p] @ u[j][q]) / tau) for j in range(m))
                    den += sum(math.exp(w * float(u[i][p] @ u[j][p]) / tau) for j in range(m) if j != i)
                    tot += -float(u[i][p] @ u[i][q]) / tau + math.log(den)
                halves.append(tot / m)
            ref += 0.5 * (halves[0] + halves[1])
    assert triple_contrastive(v, tau, w).item() == pytest.approx(ref, rel=1e-12)
    # no intra term at all (w → −∞ is not a weight): with w = 0 each intra logit is 0, i.e. M − 1 terms of e⁰
    x, y = v[:, 0], v[:, 1]
    tau2 = 0.5
    two = triple_contrastive(torch.stack([x, y], 1), tau2, 0.0)
    s = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(y, dim=1).T / tau2
    fwd = (-s.diag() + torch.log(s.exp().sum(1) + (m - 1))).mean()
    bwd = (-s.diag() + torch.log(s.exp().sum(0) + (m - 1))).mean()
    assert two.item() == pytest.approx(0.5 * (fwd + bwd).item(), rel=1e-12)
    with pytest.raises(ValueError, match="intra_weight"):
        triple_contrastive(v, tau, -1.0)


@pytest.mark.parametrize("loss", [mv_info_nce, mv_dhel, triple_contrastive])
def test_multiview_view_permutation_invariance_and_grad(loss):
    v = _randn(4, 4, 3, seed=2)
    perm = torch.tensor([2, 0, 3, 1])
    assert loss(v[:, perm], 0.3).item() == pytest.approx(loss(v, 0.3).item(), rel=1e-12)
    w = _randn(3, 3, 2, seed=4).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: loss(t, 0.5), (w,))


def test_intra_modal_loss_matches_loops():
    n, tau = 3, 0.4
    x, xp = _randn(n, 4, seed=1), _randn(n, 4, seed=2)
    z = _rows(x) + _rows(xp)
    ref = 0.0
    for r in range(2 * n):
        p = (r + n) % (2 * n)
        den = sum(math.exp(float(z[r] @ z[q]) / tau) for q in range(2 * n) if q != r)
        ref += -math.log(math.exp(float(z[r] @ z[p]) / tau) / den)
    assert intra_modal_loss(x, xp, tau).item() == pytest.approx(ref / (2 * n), rel=1e-12)


# ------------------------------------------------------------------------------------------ geodesic mixup
def test_geodesic_mix_properties():
    a, b = _randn(5, 4, seed=1), _randn(5, 4, seed=2)
    ua, ub = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    for lam in (0.0, 0.3, 0.5, 1.0):
        torch.testing.assert_close(geodesic_mix(a, b, lam).norm(dim=1), torch.ones(5, dtype=D))
    torch.testing.assert_close(geodesic_mix(a, b, 1.0), ua)
    torch.testing.assert_close(geodesic_mix(a, b, 0.0), ub)
    # the midpoint lies on the bisector; a == b falls back to lerp (no NaN)
    mid = geodesic_mix(a, b, 0.5)
    torch.testing.assert_close((mid * ua).sum(1), (mid * ub).sum(1))
    same = geodesic_mix(a, a.clone(), 0.3)
    torch.testing.assert_close(same, ua)
    # gradients stay finite through the fallback branch (arccos' is infinite at cos = 1)
    img = a.clone().requires_grad_()
    mixup_negatives_loss(img, a.clone(), lam=0.4).backward()
    assert bool(torch.isfinite(img.grad).all())


def test_mixup_negatives_loss_matches_loops_and_seeded():
    n, tau, lam = 3, 0.2, 0.3
    img, txt = _randn(n, 4, seed=1), _randn(n, 4, seed=2)
    i, t = _rows(img), _rows(txt)
    h = []
    for k in range(n):
        th = math.acos(float(i[k] @ t[k]))
        h.append((math.sin(lam * th) * i[k] + math.sin((1 - lam) * th) * t[k]) / math.sin(th))
    ref = 0.0
    for side in (i, t):
        for r in range(n):
            logits = [float(i[r] @ t[r]) / tau if c == r else float(side[r] @ h[c]) / tau for c in range(n)]
            ref += 0.5 * (-logits[r] + math.log(sum(math.exp(v) for v in logits))) / n
    got = mixup_negatives_loss(img, txt, temperature=tau, lam=lam)
    assert got.item() == pytest.approx(ref, rel=1e-10)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert mixup_negatives_loss(img, txt, generator=g1).item() == mixup_negatives_loss(img, txt, generator=g2).item()


# ---------------------------------------------------------------------------------- alignment and uniformity
def test_alignment_loss():
    x, y = _randn(4, 3, seed=1), _randn(4, 3, seed=2)
    ref = sum(float((_unit(x[i]) - _unit(y[i])).norm()) ** 3 for i in range(4)) / 4
    assert alignment_loss(x, y, alpha=3).item() == pytest.approx(ref, rel=1e-12)
    assert alignment_loss(x, 2 * x).item() == pytest.approx(0.0, abs=1e-15)


def test_uniformity_loss_reference_and_properties():
    x = _randn(7, 3, seed=1)
    u = _rows(x)
    vals = [math.exp(-2 * float((u[i] - u[j]).norm()) ** 2) for i in range(7) for j in range(i + 1, 7)]
    ref = math.log(sum(vals) / len(vals))
    assert uniformity_loss(x).item() == pytest.approx(ref, rel=1e-12)
    assert uniformity_loss(x, chunk_size=2).item() == pytest.approx(ref, rel=1e-12)
    assert -8.0 <= ref <= 0.0
    assert uniformity_loss(x @ _orth(3)).item() == pytest.approx(ref, rel=1e-10)
    assert uniformity_loss(torch.ones(5, 3, dtype=D)).item() == pytest.approx(0.0, abs=1e-15)
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=D)  # the lower bound −4t
    assert uniformity_loss(antipodal, t=2).item() == pytest.approx(-8.0, rel=1e-12)


def test_calibrated_uniformity():
    x = _randn(5, 3, seed=1)
    u = x / x.norm(dim=1, keepdim=True)
    assert calibrated_uniformity(x, u @ u.T).item() == pytest.approx(0.0, abs=1e-12)
    s = _randn(5, 5, seed=2).clamp(-1, 1)
    vals = [
        math.exp(-2 * (float((u[i] - u[j]).norm()) ** 2 - 2 + 2 * min(max(float(s[i, j]), -0.5), 0.8)))
        for i in range(5)
        for j in range(i + 1, 5)
    ]
    got = calibrated_uniformity(x, s, t=2, min_sim=-0.5, max_sim=0.8)
    assert got.item() == pytest.approx(math.log(sum(vals) / len(vals)), rel=1e-12)


def test_uniformity_gradcheck():
    x = _randn(4, 3, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: uniformity_loss(v, chunk_size=3), (x,))
    y = _randn(4, 3, seed=2)
    assert torch.autograd.gradcheck(lambda v: alignment_loss(v, y), (x,))


# ------------------------------------------------------------------------------------------------ combining
def test_combined_loss_sums_and_reports_parts():
    a, b = _randn(4, 3, seed=1), _randn(4, 3, seed=2)
    nce = InfoNCE(init_temperature=0.1).double()
    comb = CombinedLoss({"nce": (nce, 1.0), "unif": (lambda u, v: uniformity_loss(u), 0.5)})
    total, parts = comb(a, b)
    expect = nce(a, b) + 0.5 * uniformity_loss(a)
    assert total.item() == pytest.approx(expect.item(), rel=1e-12)
    assert set(parts) == {"nce", "unif", "total"} and isinstance(parts["nce"], float)
    assert parts["unif"] == pytest.approx(uniformity_loss(a).item())
    assert any(p is nce.logit_scale for p in comb.parameters())
    comb.set_weight("unif", 0.0)
    assert comb(a, b)[0].item() == pytest.approx(nce(a, b).item(), rel=1e-12)
    assert not comb.accepts_mask  # a plain function term does not take a mask of present views
    sig = SigLIP()
    with torch.no_grad():
        sig.logit_scale.fill_(9.0)
    CombinedLoss({"sig": (sig, 1.0)}).clamp_()  # forwards to every term that has clamp_
    assert sig.logit_scale.item() == pytest.approx(math.log(100.0))


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input_errors_name_the_argument():
    a, b = _randn(4, 3, seed=1), _randn(4, 3, seed=2)
    with pytest.raises(ValueError, match="a and b must be paired"):
        info_nce(a, b[:3])
    bad = a.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="b contains 1 NaN"):
        info_nce(a, bad)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(a, b, 0.0)
    with pytest.raises(ValueError, match="reduction"):
        siglip(a, b, 1.0, 0.0, reduction="sum")
    with pytest.raises(ValueError, match="at least 2 modalities"):
        gram_volume_loss(a, [])
    with pytest.raises(ValueError, match="others\\[0\\]"):
        gram_volume_loss(a, [b[:2]])
    with pytest.raises(ValueError, match="k >= 2"):
        gram_volume(a[:1])
    with pytest.raises(ValueError, match="at least 2 views"):
        mv_dhel(_randn(4, 1, 3))
    with pytest.raises(ValueError, match="views must be 3-D"):
        mv_info_nce(a)
    with pytest.raises(ValueError, match="divergence"):
        structure_reg(a, b, divergence="kl")
    with pytest.raises(ValueError, match="levels"):
        structure_reg(a, b, levels=0)
    with pytest.raises(ValueError, match="s must be the 4x4"):
        calibrated_uniformity(a, b)
    with pytest.raises(ValueError, match="x needs at least 2 rows"):
        uniformity_loss(a[:1])
    with pytest.raises(TypeError, match=r"img must be a torch\.Tensor"):
        mixup_negatives_loss(a.numpy(), b)
    with pytest.raises(ValueError, match="reserved"):
        CombinedLoss({"total": (info_nce, 1.0)})
