"""The package's two image resizes.

`resize_square`: what a network sees, in training and in use alike. Area averaging when shrinking
(exact box filter for integer factors, exportable to ONNX), bilinear when growing. The decomposer
used to train on antialiased bilinear and infer on area averaging: the two differ by up to 0.1 (in
[-1, 1] units) on sharp edges at 64 -> 32 px.

`resize_bilinear`: images handed to a user or a feature network (crops, transforms' outputs, FID
inputs): antialiased bilinear, any target shape.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def resize_bilinear(images: Tensor, size: int | tuple[int, int]) -> Tensor:
    """images [B, C, H, W] or [C, H, W] -> [..., h, w] (size int: square), antialiased bilinear (the
    antialiasing acts only when shrinking); returned as is when already that size."""
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be [B, C, H, W] or [C, H, W], got {tuple(images.shape)}")
    if tuple(images.shape[-2:]) == hw:
        return images
    x = images[None] if images.ndim == 3 else images
    x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return x[0] if images.ndim == 3 else x


def resize_square(images: Tensor, size: int) -> Tensor:
    """images [B, C, H, W] -> [B, C, size, size]; returned as is when already that size."""
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got {tuple(images.shape)}")
    if images.shape[-2:] == (size, size):
        return images
    if images.shape[-1] > size and images.shape[-2] > size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
