import pytest
import torch

from benchmarks.bench_blur_scale import blur, sharpness, slope


def test_blur_known_answers():
    x = torch.rand(2, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(blur(x, 0.0), x)
    const = torch.full((1, 3, 9, 9), 0.25)
    assert torch.allclose(blur(const, 1.0), const)  # a normalised kernel keeps a constant
    delta = torch.zeros(1, 1, 15, 15)
    delta[..., 7, 7] = 1.0
    out = blur(delta, 1.0)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-6)  # mass kept away from the edges
    assert torch.allclose(out, out.flip(-1)) and torch.allclose(out, out.transpose(-1, -2))  # symmetric
    # the Gaussian's variance along one axis is sigma^2
    t = torch.arange(15.0) - 7
    assert (out[0, 0].sum(0) * t ** 2).sum().item() == pytest.approx(1.0, rel=0.05)


def test_sharpness_and_slope_known_answers():
    assert sharpness(torch.full((1, 1, 6, 6), 0.3)) == 0.0
    board = ((torch.arange(6)[:, None] + torch.arange(6)[None]) % 2).float()[None, None]
    assert sharpness(board) == pytest.approx(4.0)  # every interior pixel differs from its 4 neighbours by 1
    true = torch.tensor([-30.0, -10.0, 10.0, 30.0])
    assert slope(0.8 * true + 5.0, true) == pytest.approx(0.8)  # the intercept does not change it
