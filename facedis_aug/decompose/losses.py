"""Stage 2 losses: confidence-weighted photometric L1, optional VGG16 perceptual loss, the flip
(symmetry) branch, and mutual reconstruction (paper Sec. 3.2).

    total = (1 - eps) * L_recon(own albedo, depth) + eps * L~_recon(partner's albedo, depth)

with L_recon = L1 + flip_weight * L1_flip + perceptual_weight * (P + flip_weight * P_flip), as unsup3d,
(+ gradient_weight * the same two branches' `gradient_l1` and ssim_weight * their `dssim`, ours),
plus pitch_gauge * (batch-mean pitch / 10 degrees)^2, which fixes the canonical frame's pitch (see
DecomposeConfig.pitch_gauge), view_cycle * `view_cycle_loss` (the view head reading back known
views of the model's own face layer; DecomposeConfig.view_cycle) and map_cycle * `map_cycle_loss` (the
albedo and depth nets reading the same renders back to the maps they came from).
The paper swaps with probability eps; we use its expectation, the weighted sum, which is what the
paper's overall loss writes and has lower variance.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import load_safetensors
from .config import DecomposeConfig
from .model import Decomposer, Decomposition
from .renderer import Rendered, Renderer

EPS = 1e-7


def _masked_mean(loss: Tensor, mask: Tensor) -> Tensor:
    """Mean of loss [B, C, h, w] over pixels where mask [B, 1, h, w] is set (all channels)."""
    mask = mask.to(loss.dtype).expand_as(loss)
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def photometric_l1(recon: Tensor, target: Tensor, sigma: Tensor, mask: Tensor, robust: float = 0.0) -> Tensor:
    """unsup3d's confidence-weighted L1: mean over valid pixels of |diff| * sqrt(2) / sigma + log sigma.
    robust > 0 (DecomposeConfig.photometric_robust): |diff| is replaced by robust * log(1 + |diff| / robust).

    recon, target [B, 3, H, W]; sigma [B, 1, H, W] > 0; mask [B, H, W] bool (valid depth)."""
    if recon.shape != target.shape or sigma.shape[1] != 1 or mask.shape != recon.shape[:1] + recon.shape[2:]:
        raise ValueError(f"shapes: recon {tuple(recon.shape)}, target {tuple(target.shape)}, sigma {tuple(sigma.shape)}, mask {tuple(mask.shape)}")
    err = (recon - target).abs()
    if robust > 0:
        err = robust * torch.log1p(err / robust)
    # the decomposer's sigma has a floor (DecomposeConfig.conf_floor); EPS only guards other callers
    loss = err * math.sqrt(2.0) / (sigma + EPS) + torch.log(sigma + EPS)
    return _masked_mean(loss, mask[:, None])


def gradient_l1(recon: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean L1 between the horizontal and vertical finite differences of recon and target [B, 3, H, W],
    over pixel pairs that are both valid (mask [B, H, W] bool). Weighs edges (eyes, mouth, the face's
    outline), whose positions carry the pose, which a blurry albedo under a plain L1 gives away."""
    if recon.shape != target.shape or mask.shape != recon.shape[:1] + recon.shape[2:]:
        raise ValueError(f"shapes: recon {tuple(recon.shape)}, target {tuple(target.shape)}, mask {tuple(mask.shape)}")
    d = recon - target
    m = mask[:, None]
    dx, mx = (d[..., :, 1:] - d[..., :, :-1]).abs(), m[..., :, 1:] & m[..., :, :-1]
    dy, my = (d[..., 1:, :] - d[..., :-1, :]).abs(), m[..., 1:, :] & m[..., :-1, :]
    return (_masked_mean(dx, mx) + _masked_mean(dy, my)) / 2


def _box3(t: Tensor) -> Tensor:
    """Mean over 3x3 windows of t [B, C, H, W] (edges replicated), as sums of shifted slices: the same
    as avg_pool2d(pad(t), 3, 1) at about a third of its time on CPU (forward and backward, 32 px)."""
    t = F.pad(t, (1, 1, 1, 1), mode="replicate")
    h = t[..., :, :-2] + t[..., :, 1:-1] + t[..., :, 2:]
    return (h[..., :-2, :] + h[..., 1:-1, :] + h[..., 2:, :]) / 9.0


def dssim(recon: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean structural dissimilarity (1 - SSIM) / 2 over 3x3 windows (Monodepth's photometric term), over
    valid pixels (mask [B, H, W] bool); recon, target [B, 3, H, W] in [-1, 1]. Unlike an L1, which a blurred
    reconstruction keeps low, SSIM compares local contrast and structure, normalised by the local variance, so a
    face drawn without its eyes scores badly wherever the target has them."""
    if recon.shape != target.shape or mask.shape != recon.shape[:1] + recon.shape[2:]:
        raise ValueError(f"shapes: recon {tuple(recon.shape)}, target {tuple(target.shape)}, mask {tuple(mask.shape)}")
    x, y = (recon + 1) / 2, (target + 1) / 2
    mx, my, xx, yy, xy = _box3(torch.cat([x, y, x * x, y * y, x * y], 1)).chunk(5, 1)
    vx, vy, cxy = xx - mx * mx, yy - my * my, xy - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2  # SSIM's constants for images in [0, 1]
    ssim = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return _masked_mean(((1 - ssim) / 2).clamp(0, 1), mask[:, None])


def vgg16_relu3_3() -> nn.Sequential:
    """torchvision's vgg16().features[:16] (same layer indices, so its state-dict keys load), built
    without the 120M-parameter classifier."""
    layers: list[nn.Module] = []
    cin = 3
    for c in (64, 64, "M", 128, 128, "M", 256, 256, 256):
        if c == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=True)]
            cin = c
    return nn.Sequential(*layers)


class PerceptualLoss(nn.Module):
    """VGG16 relu3_3 perceptual loss with a confidence map (unsup3d): diff^2 / (2 sigma^2) + log sigma.

    Weights come from a LOCAL file only (a torchvision vgg16 state dict, .safetensors or .pth read with
    weights_only=True; keys "features.N.*" or "N.*"); nothing is ever downloaded. `available` is False
    (and one line says so) when no file is given or it is missing."""

    def __init__(self, weights: Optional[str | os.PathLike]):
        super().__init__()
        self.available = False
        self.features: Optional[nn.Module] = None
        if not weights or not Path(weights).is_file():
            where = f"not found at {weights}" if weights else "not configured (decompose.vgg_weights)"
            print(f"perceptual loss skipped: VGG16 weights {where}; they are never downloaded")
            return
        features = vgg16_relu3_3()
        path = Path(weights)
        if path.suffix == ".safetensors":
            state, _ = load_safetensors(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k[len("features."):] if k.startswith("features.") else k: v for k, v in state.items()}
        state = {k: v for k, v in state.items() if k.split(".")[0].isdigit() and int(k.split(".")[0]) < 16}
        features.load_state_dict(state, strict=True)
        for p in features.parameters():
            p.requires_grad_(False)
        self.features = features.eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.available = True

    def forward(self, recon: Tensor, target: Tensor, sigma: Tensor, mask: Tensor) -> Tensor:
        """recon, target [B, 3, H, W] in [-1, 1]; sigma [B, 1, H/4, W/4]; mask [B, H, W] bool."""
        if not self.available:
            raise RuntimeError("perceptual loss is not available (no VGG16 weights)")
        x = torch.cat([recon, target], 0)
        f = self.features(((x + 1) / 2 - self.mean) / self.std)
        f1, f2 = f.chunk(2, 0)
        # a feature cell counts only if all the pixels under it are valid
        m = F.adaptive_avg_pool2d(mask[:, None].to(f.dtype), f.shape[-2:]) > 0.99
        if sigma.shape[-2:] != f.shape[-2:]:
            raise ValueError(f"sigma {tuple(sigma.shape)} does not match VGG features {tuple(f.shape)}")
        loss = (f1 - f2) ** 2 / (2 * sigma**2 + EPS) + torch.log(sigma + EPS)
        return _masked_mean(loss, m)


@dataclass
class StepOutput:
    total: Tensor  # scalar to minimise
    terms: dict[str, float]  # logged components
    decomposition: Decomposition
    recon: Tensor  # [B, 3, S, S] own reconstruction (for snapshots)
    mask: Tensor  # [B, S, S] its valid mask


def partners_of(x: Tensor, pairs: bool = False) -> Tensor:
    """The partner of image i is image i - 1 of the batch (a roll): every image has a different one.
    pairs: image i ^ 1, the other image of its pair (DecomposeConfig.identity_pairs; B even)."""
    if pairs:
        return x.unflatten(0, (-1, 2)).flip(1).flatten(0, 1)
    return torch.roll(x, shifts=1, dims=0)


def _reconstruction_loss(
    cfg: DecomposeConfig,
    renderer: Renderer,
    images: Tensor,
    albedo: Tensor,
    depth: Tensor,
    d: Decomposition,
    conf: Tensor,
    conf_perc: Tensor,
    perceptual: Optional[PerceptualLoss],
    terms: dict[str, float],
    prefix: str,
) -> tuple[Tensor, Rendered]:
    """L1 (+ perceptual) of images rendered from (albedo, depth) and their mirror with d's view/light.

    Layered model: the face layer (with d's own opacity, mirrored with it) over d's own background,
    every pixel counts. Single mesh: only pixels both renders cover count (unsup3d). Either way target
    pixels at |x| >= cfg.saturated are left out (an exact match there lets sigma collapse)."""
    b = images.shape[0]
    # a symmetric face layer (cfg.symmetric: albedo, depth and opacity averaged with their mirror) is its own
    # mirror, so the flip branch's render is the plain one: it is drawn once, and the terms without a
    # confidence map count it (1 + flip_weight) times. The same loss and gradient for half the renderer's work
    mirrored = not cfg.symmetric
    if mirrored:
        alb, dep = torch.cat([albedo, albedo.flip(3)], 0), torch.cat([depth, depth.flip(2)], 0)
        light, view = d.light.repeat(2, 1), d.view.repeat(2, 1)
    else:
        alb, dep, light, view = albedo, depth, d.light, d.view
    unsaturated = images.detach().abs().amax(1) < cfg.saturated
    cam = cfg.light_frame == "camera"
    if cfg.layers:
        assert d.alpha is not None and d.background is not None
        alpha = torch.cat([d.alpha, d.alpha.flip(2)], 0) if mirrored else d.alpha
        background = d.background.repeat(2, 1, 1, 1) if mirrored else d.background
        out = renderer.reconstruct_layered(alb, dep, alpha, light, view, background, camera_light=cam)
        mask = unsaturated
    else:
        out = renderer.reconstruct(alb, dep, light, view, camera_light=cam)
        # unsup3d: both renders must be valid
        mask = (out.mask[:b] & out.mask[b:] if mirrored else out.mask) & unsaturated
    rec = out.image[:b]
    rec_flip = out.image[b:] if mirrored else rec
    l1 = photometric_l1(rec, images, conf[:, 0:1], mask, cfg.photometric_robust)
    l1_flip = photometric_l1(rec_flip, images, conf[:, 1:2], mask, cfg.photometric_robust)
    loss = l1 + cfg.flip_weight * l1_flip
    terms[f"{prefix}l1"] = l1.item()
    terms[f"{prefix}l1_flip"] = l1_flip.item()

    def both(term) -> Tensor:  # a term without a confidence map, over the plain and the flip branch
        if mirrored:
            return term(rec, images, mask) + cfg.flip_weight * term(rec_flip, images, mask)
        return (1.0 + cfg.flip_weight) * term(rec, images, mask)

    if cfg.gradient_weight > 0:
        grad = both(gradient_l1)
        loss = loss + cfg.gradient_weight * grad
        terms[f"{prefix}grad_l1"] = grad.item()
    if cfg.ssim_weight > 0:
        ds = both(dssim)
        loss = loss + cfg.ssim_weight * ds
        terms[f"{prefix}dssim"] = ds.item()
    if perceptual is not None and perceptual.available and cfg.perceptual_weight > 0:
        p = perceptual(rec, images, conf_perc[:, 0:1], mask)
        p_flip = perceptual(rec_flip, images, conf_perc[:, 1:2], mask)
        loss = loss + cfg.perceptual_weight * (p + cfg.flip_weight * p_flip)
        terms[f"{prefix}perc"] = p.item()
        terms[f"{prefix}perc_flip"] = p_flip.item()
    terms[f"{prefix}valid"] = mask.float().mean().item()
    return loss, Rendered(image=rec, mask=mask, depth=out.depth[:b], grid=out.grid[:b],
                          alpha=None if out.alpha is None else out.alpha[:b])


def cycle_render(cfg: DecomposeConfig, model: Decomposer, renderer: Renderer, d: Decomposition,
                 gen: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """d's face layer, detached, re-rendered over d's own background at random known views: pitch, yaw ~
    U[-r, r] with r = cfg.view_cycle_range, roll and translation kept; under its own light, or with
    cfg.view_cycle_light 'next' under the next face's (face i takes the light of face i + 1 of the batch).
    Returns (images [B, 3, S, S] in [-1, 1], views [B, 6]); no gradient flows through either."""
    b = d.view.shape[0]
    pr, yr = cfg.view_cycle_range
    with torch.no_grad():
        u = torch.rand(b, 2, generator=gen).to(d.view.device) * 2 - 1
        view = d.view.detach().clone()
        view[:, 0], view[:, 1] = u[:, 0] * pr, u[:, 1] * yr
        light = d.light.detach().roll(-1, 0) if cfg.view_cycle_light == "next" else d.light.detach()
        fixed = dataclasses.replace(d, **{**{k: v.detach() for k, v in vars(d).items() if isinstance(v, Tensor)},
                                          "view": view, "light": light})
        image = model.reconstruct(renderer, fixed).image.clamp(-1, 1)
    return image, view


def view_cycle_loss(cfg: DecomposeConfig, model: Decomposer, image: Tensor, view: Tensor) -> Tensor:
    """L1 between known views [B, 6] and the view head's reading of `cycle_render`'s images of them, in units
    of pitch_range and rot_range (the roll's, read back as rendered, of roll_range). Only the view head
    receives gradient."""
    read = model.view_from_raw(model.net_view(image))
    scale = view.new_tensor([cfg.pitch_range, cfg.rot_range, cfg.roll_range]).clamp(min=1e-6)
    return ((read[:, :3] - view[:, :3]).abs() / scale).mean()


def map_cycle_loss(model: Decomposer, image: Tensor, d: Decomposition) -> Tensor:
    """L1 between the canonical maps the decomposer reads off `cycle_render`'s images (its face layer turned
    to other views) and the maps d they were drawn from (detached): albedo, plus depth in units of its
    learnable range (layered: depth_residual) and the opacity. A canonical map that follows the view (an
    albedo whose eyes sit where the input's are) fails it. Only the albedo and depth nets receive gradient."""
    cfg = model.cfg
    shape, albedo = model.net_depth(image), model.net_albedo(image)
    if cfg.symmetric:
        shape, albedo = (shape + shape.flip(3)) / 2, (albedo + albedo.flip(3)) / 2
    span = cfg.depth_residual if cfg.layers else (cfg.max_depth - cfg.min_depth) / 2
    loss = (torch.tanh(albedo) - d.albedo.detach()).abs().mean()
    loss = loss + (model.depth_from_raw(shape[:, 0]) - d.depth.detach()).abs().mean() / span
    if cfg.layers:
        assert d.alpha is not None
        loss = loss + (model.alpha_from_raw(shape[:, 1]) - d.alpha.detach()).abs().mean()
    return loss


def erase_random(images: Tensor, share: float, gen: Optional[torch.Generator] = None) -> Tensor:
    """images [B, C, S, S] with, in each image with probability `share`, one random rectangle (each side a quarter to
    a half of the image's, anywhere inside it) filled with that image's mean colour; the others unchanged."""
    b, _, s, _ = images.shape
    u = torch.rand(b, 5, generator=gen).to(images.device)
    h, w = (s * (0.25 + 0.25 * u[:, 0])).long(), (s * (0.25 + 0.25 * u[:, 1])).long()
    top, left = ((s - h) * u[:, 2]).long(), ((s - w) * u[:, 3]).long()
    i = torch.arange(s, device=images.device)
    rows = (i[None] >= top[:, None]) & (i[None] < (top + h)[:, None])  # [B, S]
    cols = (i[None] >= left[:, None]) & (i[None] < (left + w)[:, None])
    inside = rows[:, :, None] & cols[:, None, :] & (u[:, 4] < share)[:, None, None]
    return torch.where(inside[:, None], images.mean((2, 3), keepdim=True), images)


def decomposition_loss(
    cfg: DecomposeConfig,
    model: Decomposer,
    renderer: Renderer,
    images: Tensor,
    perceptual: Optional[PerceptualLoss] = None,
) -> StepOutput:
    """Full stage-2 objective on a batch images [B, 3, S, S] in [-1, 1] (see the module doc)."""
    d = model(images, view_input=erase_random(images, cfg.view_erase) if cfg.view_erase > 0 else None)
    terms: dict[str, float] = {}
    own, rendered = _reconstruction_loss(cfg, renderer, images, d.albedo, d.depth, d, d.conf, d.conf_perc,
                                         perceptual, terms, "")
    terms["recon"] = own.item()
    total = own
    if cfg.mutual:
        # swap albedo and depth with the partner; view and light stay the image's own (Sec. 3.2)
        pairs = cfg.identity_pairs
        mconf, mconf_perc = model.mutual_confidence(images, partners_of(images, pairs))
        mutual, _ = _reconstruction_loss(cfg, renderer, images, partners_of(d.albedo, pairs), partners_of(d.depth, pairs),
                                         d, mconf, mconf_perc, perceptual, terms, "mutual_")
        terms["mutual_recon"] = mutual.item()
        total = (1.0 - cfg.mutual_eps) * own + cfg.mutual_eps * mutual
    if cfg.pitch_gauge > 0:
        gauge = cfg.pitch_gauge * (d.view[:, 0].mean() / 10.0) ** 2
        terms["pitch_gauge"] = gauge.item()
        total = total + gauge
    if cfg.light_gauge > 0:
        gauge = cfg.light_gauge * (d.light[:, 7].mean() / 0.1) ** 2
        terms["light_gauge"] = gauge.item()
        total = total + gauge
    if cfg.view_cycle > 0 or cfg.map_cycle > 0:
        image, view = cycle_render(cfg, model, renderer, d)
        if cfg.view_cycle > 0:
            cycle = cfg.view_cycle * view_cycle_loss(cfg, model, image, view)
            terms["view_cycle"] = cycle.item()
            total = total + cycle
        if cfg.map_cycle > 0:
            cycle = cfg.map_cycle * map_cycle_loss(model, image, d)
            terms["map_cycle"] = cycle.item()
            total = total + cycle
    terms["total"] = total.item()
    return StepOutput(total=total, terms=terms, decomposition=d, recon=rendered.image, mask=rendered.mask)
