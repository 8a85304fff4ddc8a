"""The latent encoder E: image -> w in W, and the optional refinement of w for one image.

    E = LatentEncoder(EncodeConfig(backbone="resnet18"), w_mean, w_std, resolution=32)
    w = E(fit_images(images, E.image_size))          # images [B, 3, H, W] in [-1, 1] -> w [B, d]
    w, l1_start, l1_end = refine_latent(G, images, w, steps=10, lr=0.05, reg=0.1, w_std=E.w_std)
    save_encoder(E, "encoder.safetensors", extra={"max_l1": 0.3}); E = load_encoder(path)

The backbone is a timm model built with pretrained=False (nothing is ever downloaded) and global
average pooling; a linear head predicts (w - w_mean) / w_std per dimension. The head starts at
zero, so an untrained encoder answers the mean w: the "mean-w baseline" every trained encoder is
measured against. w_mean and w_std are buffers estimated on F(z) samples of the generator.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..ops import load_safetensors, save_safetensors
from ..ops.dataconf import from_dict, to_dict
from ..ops.resize import resize_bilinear
from .config import EncodeConfig

FORMAT = "facedis_aug.encoder/1"


def fit_images(images: Tensor, size: int) -> Tensor:
    """[B, 3, H, W] -> [B, 3, size, size] by `ops.resize_bilinear` (antialiased bilinear), the one resize
    of the encoder's inputs in training and in use."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    return resize_bilinear(images, size)


class LatentEncoder(nn.Module):
    """images [B, 3, S, S] in [-1, 1] (S = self.image_size) -> w [B, d] = w_mean + w_std * head(backbone(x))."""

    def __init__(self, cfg: EncodeConfig, w_mean: Tensor, w_std: Tensor, resolution: int):
        super().__init__()
        import timm

        if w_mean.ndim != 1 or w_std.shape != w_mean.shape:
            raise ValueError(f"w_mean and w_std must both be [d], got {tuple(w_mean.shape)} and {tuple(w_std.shape)}")
        self.cfg = cfg
        self.resolution = int(resolution)  # the generator's side: the image loss is computed there
        self.image_size = int(cfg.image_size or resolution)
        self.w_dim = int(w_mean.shape[0])
        try:
            self.backbone = timm.create_model(cfg.backbone, pretrained=False, num_classes=0, global_pool="avg")
        except RuntimeError as e:  # timm: "Unknown model (...)"
            raise ValueError(f"encode.backbone: {e}") from None
        self.head = nn.Linear(int(self.backbone.num_features), self.w_dim)
        nn.init.zeros_(self.head.weight)  # start at the mean-w baseline
        nn.init.zeros_(self.head.bias)
        self.register_buffer("w_mean", w_mean.detach().float().clone())
        self.register_buffer("w_std", w_std.detach().float().clamp_min(1e-6).clone())

    def forward(self, images: Tensor) -> Tensor:
        s = self.image_size
        if images.ndim != 4 or images.shape[1:] != (3, s, s):
            raise ValueError(f"encoder expects [B, 3, {s}, {s}] (use fit_images), got {tuple(images.shape)}")
        return self.w_mean + self.w_std * self.head(self.backbone(images))


def relative_w_error(w_hat: Tensor, w: Tensor, w_std: Tensor) -> Tensor:
    """Per-sample mean(((w_hat - w) / w_std)^2): [B]. 1.0 is about the error of always answering the mean w."""
    return (((w_hat - w) / w_std) ** 2).mean(dim=1)


def image_l1(G: nn.Module, w: Tensor, target: Tensor) -> Tensor:
    """Per-sample mean |G(w) - target| at the generator's resolution: [B] (target [B, 3, R, R] in [-1, 1])."""
    return (G.synthesis(w, noise_mode="const") - target).abs().mean(dim=(1, 2, 3))


def refine_latent(G: nn.Module, images: Tensor, w0: Tensor, steps: int, lr: float, reg: float, w_std: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A few Adam steps on w minimising L1(G(w), x) + reg * mean(((w - w0) / w_std)^2), per image.

    images [B, 3, H, W] in [-1, 1] (resized to G's resolution), w0 [B, d] (the encoder's answer).
    Returns (w [B, d], l1 at w0 [B], l1 at the returned w [B]). Each image keeps the best w among
    the `steps` evaluated ones, so refinement never makes an image's objective worse. Each image's
    w gets gradient from its own image only, and Adam normalises per element, so the result does not
    depend on the batch it was refined in. w is parametrised as w0 + w_std * delta, so lr is in
    units of std(w) whatever the generator's scale.
    """
    target = fit_images(images.detach().float(), int(G.synthesis.resolution))
    w0 = w0.detach().float()
    std = w_std.detach().float()
    with torch.no_grad():
        l1_start = image_l1(G, w0, target)
    if steps <= 0:
        return w0, l1_start, l1_start
    delta = torch.zeros_like(w0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    best_w, best_obj, best_l1 = w0.clone(), torch.full_like(l1_start, float("inf")), l1_start.clone()
    with torch.enable_grad():
        for _ in range(steps):
            w = w0 + std * delta
            l1 = image_l1(G, w, target)
            obj = l1 + reg * delta.square().mean(dim=1)
            better = obj.detach() < best_obj
            best_w[better], best_obj[better], best_l1[better] = w.detach()[better], obj.detach()[better], l1.detach()[better]
            opt.zero_grad(set_to_none=True)
            obj.sum().backward()
            opt.step()
    return best_w, l1_start, best_l1


def save_encoder(model: LatentEncoder, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Weights + config + w_dim/resolution (+ `extra`, e.g. max_l1 and the eval report) as safetensors metadata."""
    path = Path(path)
    meta = {"format": FORMAT, "config": to_dict(model.cfg), "w_dim": model.w_dim, "resolution": model.resolution,
            "image_size": model.image_size, **(extra or {})}  # fmt: skip
    save_safetensors(path, model.state_dict(), metadata=meta)
    return path


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> LatentEncoder:
    """Read `save_encoder`'s file; eval mode, no grad, on `device`. `.meta` holds the metadata."""
    tensors, meta = load_safetensors(path, device="cpu")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an encoder file (format {meta.get('format')!r}, expected {FORMAT!r})")
    cfg = from_dict(EncodeConfig, meta["config"], "encode")
    model = LatentEncoder(cfg, tensors["w_mean"], tensors["w_std"], int(meta["resolution"]))
    model.load_state_dict(tensors, strict=True)
    model.meta = meta  # plain dict: max_l1, refinement defaults, eval report
    return model.to(device).eval().requires_grad_(False)


def encode_images(E: LatentEncoder, G: nn.Module | None, images: Tensor, refine_steps: int | None = None) -> tuple[Tensor, Tensor | None]:
    """Encoder answer, refined for `refine_steps` steps (default: the encoder's config; needs G).

    images [B, 3, H, W] in [-1, 1] on E's device. Returns (w [B, d], l1 of the unrefined answer [B]
    or None when G is None and there is no refinement)."""
    steps = E.cfg.refine_steps if refine_steps is None else int(refine_steps)
    with torch.no_grad():
        w = E(fit_images(images.float(), E.image_size))
    if G is None:
        if steps > 0:
            raise ValueError("refinement needs the generator; pass G or refine_steps=0")
        return w, None
    w, l1_start, _ = refine_latent(G, images, w, steps, E.cfg.refine_lr, E.cfg.refine_reg, E.w_std)
    return w, l1_start
