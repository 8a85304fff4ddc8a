"""One resize for training and serving: the decomposer's training batches, the directions stage and the
bundle's view head (PyTorch and ONNX paths, which call `ops.resize_square` directly) all shrink images
the same way."""
import torch
import torch.nn.functional as F
from torch import nn

from facedis_aug.decompose.sources import generator_sampler, stream_sampler
from facedis_aug.directions.semantics import decompose
from facedis_aug.ops import resize_square


def test_shrinking_is_box_averaging_and_growing_is_bilinear():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(resize_square(x, 32), F.avg_pool2d(x, 2))
    small = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(resize_square(small, 16), F.interpolate(small, size=16, mode="bilinear", align_corners=False))
    assert resize_square(x, 64) is x


class _Recorder(nn.Module):
    """A stand-in 32 px decomposer that keeps what it was given."""
    image_size = 32

    def forward(self, images):
        self.seen = images
        b = images.shape[0]
        return {"view": torch.zeros(b, 6), "light": torch.zeros(b, 8), "albedo": torch.zeros(b, 3, 32, 32),
                "depth": torch.zeros(b, 32, 32)}


class _G:
    z_dim = 4

    def __init__(self, images):
        self.images = images

    def mapping(self, z):
        return z

    def synthesis(self, w, noise_mode="const"):
        return self.images[: w.shape[0]]


def test_train_and_serve_see_the_same_pixels():
    torch.manual_seed(1)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    ref = resize_square(x, 32)
    assert not torch.allclose(ref, F.interpolate(x, size=32, mode="bilinear", antialias=True))  # the choice matters
    # stage 2's batches: a data stream and the generator's samples (with the yaw augmentation's synthesize)
    torch.testing.assert_close(stream_sampler(lambda start: iter([x]), 32)(0)[0], ref, rtol=0, atol=0)
    sampler, synthesize = generator_sampler(_G(x), 32, batch=3, seed=0)
    torch.testing.assert_close(sampler(0)[0], ref.clamp(-1, 1), rtol=0, atol=0)
    torch.testing.assert_close(synthesize(torch.zeros(3, 4)), ref.clamp(-1, 1), rtol=0, atol=0)
    # stage 3: the decomposer reads the generator's faces
    rec = _Recorder()
    decompose(rec, x)
    torch.testing.assert_close(rec.seen, ref, rtol=0, atol=0)


def test_resize_bilinear_is_antialiased_bilinear_for_batches_and_single_images():
    from facedis_aug.ops.resize import resize_bilinear

    x = torch.rand(2, 3, 40, 30, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x, size=(16, 20), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(resize_bilinear(x, (16, 20)), ref, rtol=0, atol=0)
    torch.testing.assert_close(resize_bilinear(x[1], (16, 20)), ref[1], rtol=0, atol=0)
    assert resize_bilinear(x, (40, 30)) is x
    up = resize_bilinear(x, 64)  # growing: plain bilinear (antialiasing only acts when shrinking)
    torch.testing.assert_close(up, F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False), rtol=0, atol=1e-6)
