"""Losses: decorrelation (Eq. 1) on planted answers and gradcheck, GAN losses, R1, path length."""
from __future__ import annotations

import math

import pytest
import torch

from facedis_aug.gan.loss import (
    decorrelation_loss,
    decorrelation_stats,
    discriminator_loss,
    generator_loss,
    path_length_penalty,
    r1_penalty,
)
from facedis_aug.gan.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig


def _orthonormal_centred(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """k centred columns of length n, orthonormal: their sample correlations are exactly 0."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, k, generator=g, dtype=torch.float64)
    a = a - a.mean(0)
    q, _ = torch.linalg.qr(a)
    return q


def test_decorrelation_planted_correlation_exact():
    n, r = 200, 0.6
    q = _orthonormal_centred(n, 2)
    w = torch.stack([q[:, 0], r * q[:, 0] + math.sqrt(1 - r**2) * q[:, 1]], 1) * 3.0  # corr exactly r, equal var
    assert decorrelation_loss(w).item() == pytest.approx(-2 * math.log(1 - r), rel=1e-6)  # pairs (0,1) and (1,0)
    s = decorrelation_stats(w)
    assert s["rho_mean"] == pytest.approx(r, rel=1e-5) and s["rho_max"] == pytest.approx(r, rel=1e-5)
    assert s["var_cv"] == pytest.approx(0.0, abs=1e-5)


def test_decorrelation_variance_term_exact():
    n = 101
    scales = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    w = _orthonormal_centred(n, 3) * scales * math.sqrt(n - 1)  # uncorrelated, Var = scales^2
    var = scales**2
    expected = ((var - var.mean()) ** 2).sum().item()  # the mean, not the printed sum (see docstring)
    assert decorrelation_loss(w).item() == pytest.approx(expected, rel=1e-6)
    assert decorrelation_stats(w)["var_cv"] == pytest.approx((var.std() / var.mean()).item(), rel=1e-5)


def test_decorrelation_independent_small_planted_large():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4000, 8, generator=g)
    base = decorrelation_loss(w).item()
    # E|rho| ~ sqrt(2 / (pi N)) = 0.0126 over 56 ordered pairs ~ 0.7; variance term ~ 0
    assert base < 1.5
    w2 = w.clone()
    w2[:, 1] = 0.8 * w[:, 0] + 0.6 * w[:, 1]
    assert decorrelation_loss(w2).item() > base + 2 * -math.log(1 - 0.7)
    assert decorrelation_stats(w2)["rho_max"] == pytest.approx(0.8, abs=0.03)


def test_decorrelation_gradcheck():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(12, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(decorrelation_loss, (w,), eps=1e-6, atol=1e-5)


def test_decorrelation_reaches_mapping_only():
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=32))
    D = Discriminator(DiscriminatorConfig(resolution=32, channel_base=256, channel_max=32))
    loss = decorrelation_loss(G.mapping(torch.randn(64, 16)))
    params = list(G.mapping.parameters()) + list(G.synthesis.parameters()) + list(D.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    n_map = len(list(G.mapping.parameters()))
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:n_map])
    assert all(g is None for g in grads[n_map:])


def test_gan_losses_known_values():
    zero = torch.zeros(4)
    assert generator_loss(zero).item() == pytest.approx(math.log(2))
    assert discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    big = torch.full((4,), 30.0)
    assert discriminator_loss(big, -big).item() == pytest.approx(0.0, abs=1e-10)  # perfect D


def test_r1_penalty_of_linear_critic():
    a = torch.randn(3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (x * a).sum(dim=[1, 2, 3])
    assert torch.allclose(r1_penalty(logits, x), torch.full((5,), a.square().sum().item()), rtol=1e-5)
    D = Discriminator(DiscriminatorConfig(resolution=32, channel_base=128, channel_max=16))
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    pen = r1_penalty(D(x), x)
    pen.mean().backward()  # second-order graph reaches D's weights
    assert pen.shape == (4,) and D.from_rgb.weight.grad is not None


def test_path_length_of_identity_map():
    """images = ws reshaped: J^T y = y, whose length is ~1 by the 1/sqrt(HW) scaling."""
    torch.manual_seed(0)
    ws = torch.randn(6, 1, 64 * 64, requires_grad=True)
    images = ws.reshape(6, 1, 64, 64)
    pen, new_mean = path_length_penalty(images, ws, torch.tensor(0.0), decay=1.0)
    assert new_mean.item() == pytest.approx(1.0, abs=0.03)
    assert pen.max().item() < 1e-3
    _, half = path_length_penalty(images, ws, torch.tensor(3.0), decay=0.5)
    assert half.item() == pytest.approx(2.0, abs=0.03)  # lerp of 3 towards ~1 by 0.5
