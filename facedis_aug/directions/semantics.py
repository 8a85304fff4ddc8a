"""The 14 univariate semantics (paper Sec. 4.3) and their least-squares directions (Eq. 2-3).

A semantic y = f(G(w)) is read off the stage-2 decomposer: the view (pitch, yaw, roll, tx, ty, tz)
and the light (ambient RGB, diffuse RGB, light direction x/y). Eq. 3 is solved over N pairs
(w1, w0) with `facedis_aug.ops.linear.fit_directions`; each direction is stored at unit length
with sigma_w (Eq. 4) and a calibration that turns a target value (e.g. a yaw in degrees) into the
edit scale s:

    y(w') = intercept + units_per_sigma * s      for w' = edit_latent(w, v, s, sigma)

which holds exactly under the linear model y = intercept + grad . w, because edit_latent sets
w'.v = s * sigma and grad = |grad| v.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..ops.linear import fit_directions_with_r2, projection_std
from ..ops.resize import resize_square
from .config import SEMANTICS  # defined there so that reading a recipe needs no torch

# unit of one semantic step: angles are degrees by the package convention
SEMANTIC_UNITS: dict[str, str] = {
    **{k: "degrees" for k in ("pitch", "yaw", "roll")},
    **{k: "decomposer units" for k in SEMANTICS[3:]},
}
DECOMPOSER_SIZE = 64  # the paper decomposes every generation at 64x64 (Sec. 4)

# A horizontal mirror of the image turns yaw, roll, the x-translation and the light's x the other way and
# leaves the other semantics (geometry; for yaw, the decomposers' r of yaw(x) with -yaw(mirror x) is 0.95-0.98
# on world faces: benchmarks/results/cross_read.md, "mirror agreement").
MIRROR_SIGN: tuple[float, ...] = tuple(-1.0 if n in ("yaw", "roll", "tx", "light_x") else 1.0 for n in SEMANTICS)

# |gradient| below this (relative to the largest) means the semantic never moved across the
# samples (e.g. unsup3d's tz, which the view net never predicts): no direction exists for it.
_DEGENERATE_REL = 1e-6


@dataclass
class SemanticMaps:
    """What stage 3 needs from the decomposer, as plain tensors on the caller's device.

    semantics [B, 14] in SEMANTICS order (angles in degrees); albedo [B, 3, 64, 64] in [-1, 1];
    depth [B, 64, 64] (canonical frame).
    """

    semantics: Tensor
    albedo: Tensor
    depth: Tensor


def _field(out: Any, name: str) -> Tensor:
    value = out[name] if isinstance(out, Mapping) else getattr(out, name, None)
    if not isinstance(value, Tensor):
        raise TypeError(f"decomposer output has no tensor field '{name}' (got {type(out).__name__})")
    return value


def decomposer_input_size(decomposer: nn.Module) -> int:
    """Input side the decomposer expects: `.image_size`, else `.cfg.image_size`, else 64."""
    size = getattr(decomposer, "image_size", None) or getattr(getattr(decomposer, "cfg", None), "image_size", None)
    return int(size or DECOMPOSER_SIZE)


@torch.no_grad()
def decompose(decomposer: nn.Module, images: Tensor, mirror_average: bool = False) -> SemanticMaps:
    """Run the decomposer on images [B, 3, R, R] in [-1, 1] (resized to its input size).

    mirror_average: read the mirrored images too and average the semantics, the mirror's with MIRROR_SIGN
    (yaw(x) := (yaw(x) - yaw(mirror x)) / 2, ...): a view head that sees a turn in a symmetric face reads
    every face that much off (its 'mirror bias', +0.7..+1.5 degrees of yaw for this project's decomposers,
    benchmarks/results/cross_read.md); the average has none. The maps come from the images as given."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
    x = resize_square(images, decomposer_input_size(decomposer))
    b = images.shape[0]
    out = decomposer(torch.cat([x, x.flip(-1)]) if mirror_average else x)
    view, light = _field(out, "view"), _field(out, "light")
    albedo, depth = _field(out, "albedo"), _field(out, "depth")
    if mirror_average:
        _check_heads(view, light, 2 * b)
        sem = torch.cat([view, light], dim=1)
        sem = (sem[:b] + torch.tensor(MIRROR_SIGN, dtype=sem.dtype, device=sem.device) * sem[b:]) / 2
        view, light, albedo, depth = sem[:, :6], sem[:, 6:], albedo[:b], depth[:b]
    return _checked(view, light, albedo, depth, b)


def _check_heads(view: Tensor, light: Tensor, b: int) -> None:
    if view.shape != (b, 6) or light.shape != (b, 8):
        raise ValueError(f"decomposer: expected view [B, 6] and light [B, 8], got {tuple(view.shape)} and {tuple(light.shape)}")


def _checked(view: Tensor, light: Tensor, albedo: Tensor, depth: Tensor, b: int) -> SemanticMaps:
    _check_heads(view, light, b)
    if depth.ndim == 4 and depth.shape[1] == 1:
        depth = depth[:, 0]
    if albedo.ndim != 4 or albedo.shape[:2] != (b, 3) or depth.shape != (b, *albedo.shape[-2:]):
        raise ValueError(f"decomposer: expected albedo [B, 3, H, W] and depth [B, H, W], got {tuple(albedo.shape)} and {tuple(depth.shape)}")
    # view angles are degrees by the decomposer's contract (decompose.model.Decomposition)
    sem = torch.cat([view, light], dim=1)
    return SemanticMaps(semantics=sem.float(), albedo=albedo.float(), depth=depth.float())


def measure_semantics(decomposer: nn.Module, images: Tensor, mirror_average: bool = False) -> Tensor:
    """The 14 semantics [B, 14] (SEMANTICS order, angles in degrees) of images [B, 3, R, R] in [-1, 1]
    (mirror_average: see `decompose`)."""
    return decompose(decomposer, images, mirror_average).semantics


def sample_w(G: nn.Module, n: int, seed: int, device: str | torch.device = "cpu", truncation_psi: float = 1.0) -> Tensor:
    """n latents w = F(z), z ~ N(0, I) from a seeded CPU generator (same w on every device). [n, w_dim]."""
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, int(G.z_dim), generator=gen)
    with torch.no_grad():
        return G.mapping(z.to(device), truncation_psi=truncation_psi).float()


@torch.no_grad()
def decompose_latents(
    G: nn.Module, decomposer: nn.Module, w: Tensor, batch_size: int = 64, keep_maps: bool = False, progress: Any = None,
    mirror_average: bool = False,
) -> SemanticMaps:
    """Generate G(w) for w [N, d] in batches and decompose. Maps (albedo, depth) are kept on the CPU
    only when keep_maps (they are N x 16384 floats); otherwise they are empty tensors. mirror_average:
    see `decompose`."""
    sems, albedos, depths = [], [], []
    for i in range(0, w.shape[0], batch_size):
        img = G.synthesis(w[i : i + batch_size], noise_mode="const")
        dec = decompose(decomposer, img, mirror_average)
        sems.append(dec.semantics.cpu())
        if keep_maps:
            albedos.append(dec.albedo.cpu())
            depths.append(dec.depth.cpu())
        if progress is not None:
            progress.update(int(img.shape[0]))
    empty = torch.empty(0)
    return SemanticMaps(
        semantics=torch.cat(sems),
        albedo=torch.cat(albedos) if keep_maps else empty,
        depth=torch.cat(depths) if keep_maps else empty,
    )


def univariate_from_samples(w: Tensor, y: Tensor, w_sigma: Tensor, names: tuple[str, ...] = SEMANTICS) -> dict[str, Any]:
    """Eq. 3 on paired samples: w [2N, d] and y [2N, k] are paired as (w[:N], w[N:]).

    w_sigma [M, d]: fresh samples of F(z) for sigma_w. Returns {"directions": {name: v [d] float32},
    "info": {name: {...}}}; info holds r2, grad_norm, sigma, units_per_sigma (semantic units per
    s = 1), intercept (the semantic at w.v = 0), proj_mean/proj_std of w.v, and `valid`. A semantic
    that never varies gets valid = False and no direction.
    """
    if w.ndim != 2 or y.ndim != 2 or w.shape[0] != y.shape[0] or y.shape[1] != len(names):
        raise ValueError(f"expected w [2N, d] and y [2N, {len(names)}], got {tuple(w.shape)} and {tuple(y.shape)}")
    if w.shape[0] % 2:
        raise ValueError("w must hold an even number of samples (pairs w[:N], w[N:])")
    n = w.shape[0] // 2
    w64, y64 = w.detach().cpu().double(), y.detach().cpu().double()
    grads, r2 = fit_directions_with_r2(w64[:n] - w64[n:], y64[:n] - y64[n:])  # [k, d], [k]
    norms = grads.norm(dim=1)
    scale = float(norms.max()) if norms.numel() else 0.0
    directions: dict[str, Tensor] = {}
    info: dict[str, dict[str, Any]] = {}
    ws = w_sigma.detach().cpu().double()
    for j, name in enumerate(names):
        g = grads[j]
        y_range = float(y64[:, j].max() - y64[:, j].min())
        if float(norms[j]) <= _DEGENERATE_REL * max(scale, 1e-30) or y_range == 0.0:
            info[name] = {"valid": False, "reason": "constant across the samples: the decomposer does not move it",
                          "unit": SEMANTIC_UNITS.get(name, "units")}  # fmt: skip
            continue
        v = g / norms[j]
        sigma = projection_std(ws, v)
        proj = ws @ v
        # intercept of y = c + g.w over all 2N samples (Eq. 3 uses differences, so c is fitted here)
        intercept = float((y64[:, j] - w64 @ g).mean())
        directions[name] = v.float()
        info[name] = {
            "valid": True,
            "r2": float(r2[j]) if math.isfinite(float(r2[j])) else None,
            "grad_norm": float(norms[j]),
            "sigma": sigma,
            "units_per_sigma": float(norms[j]) * sigma,
            "intercept": intercept,
            "proj_mean": float(proj.mean()),
            "proj_std": sigma,
            "unit": SEMANTIC_UNITS.get(name, "units"),
        }
    return {"directions": directions, "info": info}
