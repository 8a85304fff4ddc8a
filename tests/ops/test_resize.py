"""One resize for training and serving: the decomposer's training batches, the directions stage and the
bundle's view head (PyTorch and ONNX paths) all shrink images the same way."""
import torch
import torch.nn.functional as F

from facedis_aug.decompose.sources import resize_to as train_resize
from facedis_aug.directions.semantics import resize_for_decomposer
from facedis_aug.export.onnx import resize_to as serve_resize
from facedis_aug.ops import resize_square


def test_shrinking_is_box_averaging_and_growing_is_bilinear():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(resize_square(x, 32), F.avg_pool2d(x, 2))
    small = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(resize_square(small, 16), F.interpolate(small, size=16, mode="bilinear", align_corners=False))
    assert resize_square(x, 64) is x


def test_train_and_serve_see_the_same_pixels():
    torch.manual_seed(1)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    ref = resize_square(x, 32)
    for f in (train_resize, serve_resize, resize_for_decomposer):
        torch.testing.assert_close(f(x, 32), ref, rtol=0, atol=0)


def test_resize_bilinear_is_antialiased_bilinear_for_batches_and_single_images():
    from facedis_aug.ops.resize import resize_bilinear

    x = torch.rand(2, 3, 40, 30, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x, size=(16, 20), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(resize_bilinear(x, (16, 20)), ref, rtol=0, atol=0)
    torch.testing.assert_close(resize_bilinear(x[1], (16, 20)), ref[1], rtol=0, atol=0)
    assert resize_bilinear(x, (40, 30)) is x
    up = resize_bilinear(x, 64)  # growing: plain bilinear (antialiasing only acts when shrinking)
    torch.testing.assert_close(up, F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False), rtol=0, atol=1e-6)
