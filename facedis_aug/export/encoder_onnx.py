"""ONNX export of the latent encoder (image -> w) and its inference through ONNX Runtime.

    export_encoder(E, "encoder.onnx")             # image [B, 3, S, S] in [-1, 1] -> w [B, d]
    enc = OnnxEncoder("encoder.onnx"); w = enc(images)   # any [B, 3, H, W]; resized to S first
    diff = encoder_max_abs_difference(E, "encoder.onnx", batch=3)

Resizing stays outside the graph (`facedis_aug.encode.model.fit_images`, the same function on both
sides), as for the view head; batch is dynamic. The refinement of w needs the generator's
gradients and so always runs in PyTorch.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..encode.model import fit_images
from .onnx import _EXAMPLE_BATCH, Exporter, OnnxImageModel, _export


def export_encoder(E: nn.Module, path: str | os.PathLike, *, exporter: Exporter = "dynamo", opset: int = 18) -> Path:
    """Write E as ONNX: input `image` [B, 3, S, S] in [-1, 1] (S = E.image_size), output `w` [B, d]."""
    s = int(E.image_size)
    dev = next(E.parameters()).device
    x = (torch.rand(_EXAMPLE_BATCH, 3, s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dev)
    meta = {"kind": "encoder", "image_size": s, "w_dim": int(E.w_dim), "resolution": int(E.resolution)}
    with torch.no_grad():
        return _export(E.eval(), (x,), Path(path), ["image"], ["w"], exporter, opset, meta)


class OnnxEncoder(OnnxImageModel):
    """encoder.onnx through ONNX Runtime: `enc(images [B, 3, H, W] in [-1, 1]) -> w [B, d]` (torch, CPU)."""

    @property
    def w_dim(self) -> int:
        return int(self.session.get_outputs()[0].shape[1])

    def __call__(self, images: Tensor) -> Tensor:
        x = fit_images(images.detach().float().cpu(), self.image_size)
        return torch.from_numpy(self.session.run(["w"], {"image": x.numpy()})[0])


def encoder_max_abs_difference(E: nn.Module, path: str | os.PathLike, batch: int = 3, seed: int = 0) -> float:
    """Largest |ONNX Runtime - PyTorch| of w over one seeded batch of random images (CPU provider)."""
    s = int(E.image_size)
    x = torch.rand(batch, 3, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.no_grad():
        ref = E.eval()(x.to(next(E.parameters()).device)).cpu()
    out = OnnxEncoder(path, device="cpu")(x)
    if out.shape != ref.shape:
        raise ValueError(f"{path}: ONNX output shape {tuple(out.shape)} differs from PyTorch {tuple(ref.shape)}")
    return float(np.abs(out.numpy() - ref.numpy()).max())
