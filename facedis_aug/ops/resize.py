"""One image resize for the whole package, so that a network sees the same pixels in training and in use.

Area averaging when shrinking (exact box filter for integer factors, exportable to ONNX), bilinear when
growing. The decomposer used to train on antialiased bilinear and infer on area averaging: the two
differ by up to 0.1 (in [-1, 1] units) on sharp edges at 64 -> 32 px.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def resize_square(images: Tensor, size: int) -> Tensor:
    """images [B, C, H, W] -> [B, C, size, size]; returned as is when already that size."""
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got {tuple(images.shape)}")
    if images.shape[-2:] == (size, size):
        return images
    if images.shape[-1] > size and images.shape[-2] > size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
