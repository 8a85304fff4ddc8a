"""The decomposer: image -> view, light, albedo, depth, confidence (unsup3d's networks, paper Sec. 3.2),
and in the layered model (the default) a face opacity and a still background layer.

Input: float32 [B, 3, S, S] in [-1, 1], S = cfg.image_size (64 in the paper). Shapes and ranges of the
outputs are on `Decomposition`. The mutual confidence net of Sec. 3.2 reads an image and its partner
concatenated channel-wise (6 channels).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import load_safetensors, save_safetensors
from ..ops.dataconf import from_dict, to_dict
from .config import DecomposerConfig
from .renderer import Renderer

FORMAT = "facedis-aug decomposer v1"  # the config in the metadata says which image model


def _groups(ch: int) -> int:
    """GroupNorm groups: unsup3d uses ch / 4 (16 for 64 channels); take the largest divisor <= that."""
    g = max(1, ch // 4)
    while ch % g:
        g -= 1
    return g


def _levels(image_size: int) -> int:
    """Stride-2 stages that take image_size down to 4x4 (4 at 64 px, as unsup3d)."""
    return int(math.log2(image_size)) - 2


def _width(base: int, level: int) -> int:
    return base * min(2**level, 8)  # nf, 2nf, 4nf, 8nf, then capped (unsup3d)


def _down_stack(image_size: int, cin: int, nf: int, zdim: int) -> tuple[list[nn.Module], int]:
    """unsup3d's encoder layers, [B, cin, S, S] -> [B, zdim, 1, 1] with stride-2 4x4 convs, and the
    channel count of the last stride-2 stage (the decoders start from it)."""
    enc: list[nn.Module] = []
    c = cin
    n = _levels(image_size)
    for i in range(n):
        w = _width(nf, i)
        enc += [nn.Conv2d(c, w, 4, 2, 1)]
        if i < n - 1:  # unsup3d: no normalisation on the last down stage
            enc += [nn.GroupNorm(_groups(w), w)]
        enc += [nn.LeakyReLU(0.2, inplace=True)]
        c = w
    enc += [nn.Conv2d(c, zdim, 4, 1, 0), nn.ReLU(inplace=True)]
    return enc, c


class Encoder(nn.Module):
    """Small encoder for the view and light heads: [B, 3, S, S] -> [B, cout] in (-1, 1)."""

    def __init__(self, image_size: int, cout: int, nf: int):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i in range(_levels(image_size)):
            layers += [nn.Conv2d(cin, _width(nf, i), 4, 2, 1), nn.ReLU(inplace=True)]
            cin = _width(nf, i)
        layers += [nn.Conv2d(cin, cin, 4, 1, 0), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)


class EncoderDecoder(nn.Module):
    """unsup3d's albedo/depth net: [B, cin, S, S] -> [B, cout, S, S] (no final activation).

    Encoder with GroupNorm down to a `zdim` bottleneck at 1x1, decoder with transposed convolutions up
    to S/2 and a nearest-neighbour upsampling to S followed by 3x3 and 5x5 convolutions."""

    def __init__(self, image_size: int, cin: int, cout: int, nf: int, zdim: int):
        super().__init__()
        n = _levels(image_size)
        enc, c = _down_stack(image_size, cin, nf, zdim)
        dec: list[nn.Module] = [nn.ConvTranspose2d(zdim, c, 4, 1, 0), nn.ReLU(inplace=True),
                                nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(inplace=True)]
        for i in range(n - 2, -1, -1):  # 4 -> S/2
            w = _width(nf, i)
            dec += [nn.ConvTranspose2d(c, w, 4, 2, 1), nn.GroupNorm(_groups(w), w), nn.ReLU(inplace=True),
                    nn.Conv2d(w, w, 3, 1, 1), nn.GroupNorm(_groups(w), w), nn.ReLU(inplace=True)]
            c = w
        dec += [nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c, nf, 3, 1, 1), nn.GroupNorm(_groups(nf), nf), nn.ReLU(inplace=True),
                nn.Conv2d(nf, nf, 5, 1, 2), nn.GroupNorm(_groups(nf), nf), nn.ReLU(inplace=True),
                nn.Conv2d(nf, cout, 5, 1, 2)]
        self.net = nn.Sequential(*enc, *dec)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConfNet(nn.Module):
    """Confidence (sigma) maps: [B, cin, S, S] -> ([B, 2, S, S], [B, 2, S/4, S/4]), positive.

    Channel 0 is for the direct reconstruction, 1 for its flipped (symmetry) branch; the S/4 maps are
    for the perceptual loss on VGG relu3_3 features (unsup3d's ConfNet)."""

    def __init__(self, image_size: int, cin: int, nf: int, zdim: int):
        super().__init__()
        n = _levels(image_size)
        enc, c = _down_stack(image_size, cin, nf, zdim)
        dec: list[nn.Module] = [nn.ConvTranspose2d(zdim, c, 4, 1, 0), nn.ReLU(inplace=True)]
        for i in range(n - 2, 0, -1):  # 4 -> S/4
            w = _width(nf, i)
            dec += [nn.ConvTranspose2d(c, w, 4, 2, 1), nn.GroupNorm(_groups(w), w), nn.ReLU(inplace=True)]
            c = w
        self.trunk = nn.Sequential(*enc, *dec)
        self.perc_head = nn.Sequential(nn.Conv2d(c, 2, 3, 1, 1), nn.Softplus())
        self.up = nn.Sequential(nn.ConvTranspose2d(c, nf, 4, 2, 1), nn.GroupNorm(_groups(nf), nf), nn.ReLU(inplace=True),
                                nn.ConvTranspose2d(nf, nf, 4, 2, 1), nn.GroupNorm(_groups(nf), nf), nn.ReLU(inplace=True),
                                nn.Conv2d(nf, 2, 5, 1, 2), nn.Softplus())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        return self.up(h), self.perc_head(h)


def smooth_fill(images: Tensor, known: Tensor) -> Tensor:
    """images [B, C, S, S] known where known [B, 1, S, S] = 1 -> [B, C, S, S] filled everywhere.

    Normalised averaging at box sizes 2, 4, ..., S: each pixel takes the finest scale whose box holds
    at least a quarter of known pixels (blended over the coarser ones), so known pixels stay nearly as
    they are and holes get the colour of their surroundings."""
    s = images.shape[-1]
    filled = torch.zeros_like(known)
    out = torch.zeros_like(images)
    k = 2
    up = lambda t: F.interpolate(t, size=(s, s), mode="bilinear", align_corners=False)  # noqa: E731
    while k <= s:
        # numerator and share are upsampled apart, so that a constant image fills to that constant
        share = up(F.avg_pool2d(known, k))
        est = up(F.avg_pool2d(images * known, k)) / share.clamp(min=1e-6)
        weight = (share * 4).clamp(max=1.0) * (1 - filled)
        out, filled = out + weight * est, filled + weight
        k *= 2
    mean = (images * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp(min=1.0)
    return out + (1 - filled) * mean


def renderer_for(cfg: DecomposerConfig) -> Renderer:
    """The renderer of a decomposer's image model (its image size, field of view and face surface)."""
    return Renderer(cfg.image_size, cfg.fov, surface=cfg.surface, surface_range=cfg.surface_range)


@dataclass
class Decomposition:
    view: Tensor  # [B, 6]: pitch, yaw, roll in degrees, then tx, ty, tz in world units (tz = 0)
    light: Tensor  # [B, 8]: ambient RGB, diffuse RGB in [0, 1], light direction dx, dy in [-1, 1]
    albedo: Tensor  # [B, 3, S, S] canonical albedo in [-1, 1]
    depth: Tensor  # [B, S, S] canonical depth (layered: the face layer's; single mesh: in [min_depth, max_depth], border
    #                clamped; surface 'head': the radius over longitude and latitude, see the Renderer)
    conf: Tensor  # [B, 2, S, S] sigma of the L1 loss (direct, flipped), >= cfg.conf_floor
    conf_perc: Tensor  # [B, 2, S/4, S/4] sigma of the perceptual loss (direct, flipped), >= cfg.conf_floor
    alpha: Optional[Tensor] = None  # [B, S, S] canonical face opacity in [0, 1] (layered model only)
    background: Optional[Tensor] = None  # [B, 3, S, S] background layer in the image frame, [-1, 1] (layered)


class Decomposer(nn.Module):
    """unsup3d-style networks with the paper's 8-output RGB light head and mutual confidence net.

    `cfg`: a `DecomposerConfig`, or the stage's `DecomposeConfig`, of which only the network part is kept."""

    def __init__(self, cfg: DecomposerConfig):
        super().__init__()
        self.cfg = cfg = cfg.network()
        s = cfg.image_size
        self.net_view = Encoder(s, 6, cfg.head_channels)
        self.net_light = Encoder(s, 8, cfg.head_channels)
        # layered: the depth net's second channel is the face opacity (shape and silhouette together)
        self.net_depth = EncoderDecoder(s, 3, 2 if cfg.layers else 1, cfg.channels, cfg.bottleneck)
        self.net_albedo = EncoderDecoder(s, 3, 3, cfg.channels, cfg.bottleneck)
        self.net_conf = ConfNet(s, 3, cfg.conf_channels, cfg.conf_bottleneck)
        self.net_mutual_conf = ConfNet(s, 6, cfg.conf_channels, cfg.conf_bottleneck)  # reads (I, I') (Sec. 3.2)
        # view scale: degrees for (pitch, yaw, roll), world units for (tx, ty); tz fixed at 0 (unsup3d)
        scale = [cfg.pitch_range, cfg.rot_range, cfg.roll_range, cfg.xy_translation_range, cfg.xy_translation_range, 0.0]
        self.register_buffer("view_scale", torch.tensor(scale), persistent=False)
        # unsup3d clamps 2-pixel left/right border columns (at 64 px) to a far depth
        border = torch.zeros(s, s)
        bw = max(1, round(2 * s / 64))
        border[:, :bw] = 1.0
        border[:, -bw:] = 1.0
        self.register_buffer("depth_border", border, persistent=False)
        self.register_buffer("depth_prior", self._prior_raw(cfg), persistent=False)
        self.register_buffer("face_cap", self._cap(cfg), persistent=False)
        self.register_buffer("head_radius", self._head_radius(cfg), persistent=False)
        v, u = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
        ax, ay = cfg.shape_prior_axes
        rho = torch.sqrt((u / ax) ** 2 + (v / ay) ** 2)  # 1 on the prior ellipse (image frame)
        self.register_buffer("background_ring", (rho > cfg.background_ring).float(), persistent=False)
        if cfg.surface == "head":
            # on the head map, 1 at 90 degrees of longitude or latitude from the front: the prior ellipse's
            # outline in a frontal view, so both surfaces start with the same silhouette
            lon_r, lat_r = cfg.surface_range
            rho = torch.sqrt((u * lon_r / 90.0) ** 2 + (v * lat_r / 90.0) ** 2)
        self.register_buffer("alpha_prior", cfg.alpha_prior_logit * (1 - rho), persistent=False)
        if cfg.zero_init_heads:
            for head in (self.net_view, self.net_light):
                nn.init.zeros_(head.net[-2].weight)  # the last 1x1 conv, before the tanh
                nn.init.zeros_(head.net[-2].bias)

    @staticmethod
    def _cap(cfg: DecomposerConfig) -> Tensor:
        """[S, S] ellipsoid cap with semi-axes cfg.shape_prior_axes: 1 in the middle, 0 outside."""
        s = cfg.image_size
        v, u = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
        ax, ay = cfg.shape_prior_axes
        return torch.sqrt((1 - (u / ax) ** 2 - (v / ay) ** 2).clamp(min=0))

    @staticmethod
    def _head_radius(cfg: DecomposerConfig) -> Tensor:
        """[S, S] head surface: the radius, along each map pixel's direction, of the ellipsoid with semi-axes
        shape_prior_axes x tan(fov / 2) (across, up; the prior ellipse in the image) and shape_prior (depth)."""
        if cfg.surface != "head":
            return torch.zeros(cfg.image_size, cfg.image_size)
        half = math.tan(math.radians(cfg.fov) / 2)
        axes = torch.tensor([cfg.shape_prior_axes[0] * half, cfg.shape_prior_axes[1] * half, cfg.shape_prior])
        d = renderer_for(cfg).head_directions(cfg.image_size, cfg.image_size, axes)
        return 1.0 / (d / axes).norm(dim=-1)

    @classmethod
    def _prior_raw(cls, cfg: DecomposerConfig) -> Tensor:
        """[S, S] raw-depth offset of the single-mesh model's convex shape prior (cfg.shape_prior): an
        ellipsoid cap whose depth, through the tanh of `depth_from_raw`, stands out by about shape_prior."""
        # near raw = 0 the depth moves by (max - min) / 2 per unit raw; closer to the camera is smaller depth
        return -cfg.shape_prior / ((cfg.max_depth - cfg.min_depth) / 2) * cls._cap(cfg)

    def _check(self, images: Tensor, channels: int = 3) -> None:
        s = self.cfg.image_size
        if images.ndim != 4 or images.shape[1:] != (channels, s, s):
            raise ValueError(f"images must be [B, {channels}, {s}, {s}] in [-1, 1], got {tuple(images.shape)}")

    def view_from_raw(self, raw: Tensor) -> Tensor:
        return raw * self.view_scale

    def light_from_raw(self, raw: Tensor) -> Tensor:
        lo = self.cfg.light_floor  # unsup3d: tanh -> [0, 1] intensities; ours keep a floor
        intensity = raw[:, :6]
        if self.cfg.light_colour == "grey":  # one ambient and one diffuse intensity, the same in r, g, b
            intensity = intensity.view(-1, 2, 3).mean(2, keepdim=True).expand(-1, 2, 3).reshape(-1, 6)
        return torch.cat([lo + (1.0 - lo) * (intensity / 2.0 + 0.5), raw[:, 6:]], 1)

    def depth_from_raw(self, raw: Tensor) -> Tensor:
        """[B, S, S] network output -> canonical depth.

        Layered: face_depth - shape_prior * cap + depth_residual * tanh(raw), a convex face the net cannot
        turn hollow. Head surface: the prior ellipsoid's radius + depth_residual * tanh(raw). Single mesh
        (unsup3d): mean-centred, tanh into [min_depth, max_depth], border clamped."""
        cfg = self.cfg
        if cfg.surface == "head":
            return self.head_radius + cfg.depth_residual * torch.tanh(raw)
        if cfg.layers:
            return cfg.face_depth - cfg.shape_prior * self.face_cap + cfg.depth_residual * torch.tanh(raw)
        raw = raw + self.depth_prior
        d = raw - raw.mean(dim=(1, 2), keepdim=True)
        d = torch.tanh(d)
        d = (1 + d) / 2 * cfg.max_depth + (1 - d) / 2 * cfg.min_depth
        far = 0.7 * cfg.max_depth + 0.3 * cfg.min_depth  # unsup3d's border depth
        return d * (1 - self.depth_border) + far * self.depth_border

    def _sigma(self, net: ConfNet, x: Tensor, mode: Optional[str] = None) -> tuple[Tensor, Tensor]:
        """Sigma maps ([B, 2, S, S], [B, 2, S/4, S/4]) of a confidence net with the floor, or ones when `mode`
        (default cfg.confidence) is 'fixed': then the net is not run at all (its output would be thrown
        away; 2 of the 8 forward passes of a tiny-recipe step)."""
        if (mode or self.cfg.confidence) == "fixed":
            b, s = x.shape[0], x.shape[-1]
            return x.new_ones(b, 2, s, s), x.new_ones(b, 2, s // 4, s // 4)
        maps = net(x)
        return maps[0] + self.cfg.conf_floor, maps[1] + self.cfg.conf_floor

    def alpha_from_raw(self, raw: Tensor) -> Tensor:
        """[B, S, S] network output -> face opacity in [0, 1] around the prior ellipse (see the config)."""
        return torch.sigmoid(self.alpha_prior + self.cfg.alpha_residual * torch.tanh(raw))

    def background_of(self, images: Tensor) -> Tensor:
        """Background layer [B, 3, S, S]: the image's own pixels outside the background ring, smoothly
        filled in towards the middle (`smooth_fill`). It never sees the face, so it cannot draw it."""
        ring = self.background_ring.expand(images.shape[0], 1, *self.background_ring.shape)
        return smooth_fill(images, ring)

    def forward(self, images: Tensor, view_input: Optional[Tensor] = None) -> Decomposition:
        """images [B, 3, S, S] in [-1, 1] -> their decomposition; `view_input` (same shape): what the view head reads
        instead of the images (training with decompose.view_erase), everything else reads the images."""
        self._check(images)
        if view_input is not None and view_input.shape != images.shape:
            raise ValueError(f"view_input must be shaped like images {tuple(images.shape)}, got {tuple(view_input.shape)}")
        conf, conf_perc = self._sigma(self.net_conf, images)
        shape, albedo = self.net_depth(images), self.net_albedo(images)
        if self.cfg.symmetric:
            shape, albedo = (shape + shape.flip(3)) / 2, (albedo + albedo.flip(3)) / 2
        layered = self.cfg.layers
        return Decomposition(
            view=self.view_from_raw(self.net_view(images if view_input is None else view_input)),
            light=self.light_from_raw(self.net_light(images)),
            albedo=torch.tanh(albedo),
            depth=self.depth_from_raw(shape[:, 0]),
            conf=conf,
            conf_perc=conf_perc,
            alpha=self.alpha_from_raw(shape[:, 1]) if layered else None,
            background=self.background_of(images) if layered else None,
        )

    def mutual_confidence(self, images: Tensor, partners: Tensor) -> tuple[Tensor, Tensor]:
        """Sigma maps for reconstructing `images` with the partners' albedo and depth: ([B, 2, S, S],
        [B, 2, S/4, S/4]). The image supplies view and light, the partner texture and shape."""
        self._check(images)
        self._check(partners)
        return self._sigma(self.net_mutual_conf, torch.cat([images, partners], 1), self.cfg.mutual_confidence)

    def reconstruct(self, renderer, d: Decomposition, *, view: Optional[Tensor] = None, light: Optional[Tensor] = None):
        """Render d (optionally at another view [B, 6] or light [B, 8]) with this model's image model:
        the layered composite or unsup3d's single mesh. Returns the renderer's `Rendered`."""
        view = d.view if view is None else view
        light = d.light if light is None else light
        cam = self.cfg.light_frame == "camera"
        if self.cfg.layers:
            return renderer.reconstruct_layered(d.albedo, d.depth, d.alpha, light, view, d.background, camera_light=cam)
        return renderer.reconstruct(d.albedo, d.depth, light, view, camera_light=cam)

    @torch.no_grad()
    def estimate_view(self, images: Tensor) -> dict[str, Tensor]:
        """Head pose of images [B, 3, S, S] in [-1, 1]: dict(yaw, pitch, roll) of [B] degrees (yaw > 0:
        face turned towards the image's left). Runs only the view head."""
        self._check(images)
        v = self.view_from_raw(self.net_view(images))
        return {"yaw": v[:, 1], "pitch": v[:, 0], "roll": v[:, 2]}


def save_decomposer(model: Decomposer, path: str | os.PathLike) -> Path:
    """Write weights + its `DecomposerConfig` (JSON metadata) atomically to `path` (normally decomposer.safetensors)."""
    path = Path(path)
    save_safetensors(path, model.state_dict(), metadata={"format": FORMAT, "config": to_dict(model.cfg)})
    return path


def load_decomposer(path: str | os.PathLike, device: str | torch.device = "cpu") -> Decomposer:
    """Read a decomposer written by `save_decomposer`; returned in eval mode on `device`."""
    tensors, meta = load_safetensors(path, device="cpu")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a decomposer file (format {meta.get('format')!r}, expected {FORMAT!r})")
    stored = dict(meta["config"])
    stored.setdefault("shape_prior", 0.0)  # files from before the shape prior had none
    # files from before the layered model: one mesh, no floors (what they were trained with)
    for key, old in (("layers", False), ("symmetric", False), ("conf_floor", 1e-7), ("light_floor", 0.0),
                     ("light_frame", "canonical")):
        stored.setdefault(key, old)
    # files written before the network/training split also carry the stage's training settings
    own = {f.name for f in fields(DecomposerConfig)}
    cfg = from_dict(DecomposerConfig, {k: v for k, v in stored.items() if k in own}, "decompose")
    model = Decomposer(cfg)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()
