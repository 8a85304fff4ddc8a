import pytest
import torch

from benchmarks.bench_contrast_scale import contrast, lower_contrast


def test_lower_contrast_keeps_each_images_mean_and_scales_its_deviations():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(lower_contrast(x, 1.0), x)
    y = lower_contrast(x, 0.5)
    torch.testing.assert_close(y.mean((2, 3)), x.mean((2, 3)))
    torch.testing.assert_close(y - y.mean((2, 3), keepdim=True), 0.5 * (x - x.mean((2, 3), keepdim=True)))
    assert torch.allclose(lower_contrast(x, 0.0), x.mean((2, 3), keepdim=True).expand_as(x))


def test_contrast_known_answers():
    assert contrast(torch.full((2, 3, 16, 16), 0.4)) == 0.0
    # a +-1 checkerboard: every central pixel is +-1 about a zero mean, std 1 (unbiased over 10 x 10 x 3 values)
    board = (((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float() * 2 - 1).expand(1, 3, 16, 16)
    n = 3 * 10 * 10
    assert contrast(board) == pytest.approx((n / (n - 1)) ** 0.5)
    assert contrast(lower_contrast(board, 0.25)) == pytest.approx(0.25 * contrast(board), rel=1e-5)
