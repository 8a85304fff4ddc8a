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
