"""J* of Sec. 3.5: the per-pixel least-squares gradient of the canonical albedo and depth w.r.t. w.

Row s of J* [S, d] is Eq. 3 solved for one canonical pixel value, S = 4 x 64 x 64 ordered
(albedo R, albedo G, albedo B, depth) x row x column, i.e. index = c * H * W + y * W + x.

Normalisation: albedo (tanh, in [-1, 1]) and depth (unsup3d: about 1 +- 0.1, varying far less)
live on different scales, and the L1 penalty of Eq. 5 would then see only albedo. Albedo is kept
in its own units (so alpha, beta and the 0.01 pruning threshold keep the paper's meaning for it) and
depth is rescaled so that its pooled standard deviation over the samples (each pixel's mean
removed) equals the albedo's: one unit of depth in J* is "as typical a change" as one unit of
albedo. The scales (albedo 1, depth depth_std / albedo_std) are returned so U can be mapped back
to raw units.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..ops.linear import fit_directions_with_r2

CHANNELS = ("albedo_r", "albedo_g", "albedo_b", "depth")


def canonical_stack(albedo: Tensor, depth: Tensor) -> Tensor:
    """albedo [N, 3, H, W] and depth [N, H, W] -> [N, 4, H, W] (albedo RGB then depth)."""
    if albedo.ndim != 4 or albedo.shape[1] != 3 or depth.shape != (albedo.shape[0], *albedo.shape[-2:]):
        raise ValueError(f"expected albedo [N, 3, H, W] and depth [N, H, W], got {tuple(albedo.shape)} and {tuple(depth.shape)}")
    return torch.cat([albedo, depth[:, None]], dim=1)


def canonical_scales(maps: Tensor) -> Tensor:
    """[2] = (albedo scale, depth scale) to divide maps [N, 4, H, W] by: (1, depth_std / albedo_std),
    std = pooled std over the samples after removing each pixel's mean. A group that never varies
    is left as it is (scale 1)."""
    if maps.ndim != 4 or maps.shape[1] != 4 or maps.shape[0] < 2:
        raise ValueError(f"maps must be [N >= 2, 4, H, W], got {tuple(maps.shape)}")
    x = maps.double()
    centred = x - x.mean(0, keepdim=True)

    def pooled_std(group: Tensor) -> float:
        return float(group.pow(2).sum() / (group.numel() - group[0].numel())) ** 0.5

    albedo_std, depth_std = pooled_std(centred[:, :3]), pooled_std(centred[:, 3:])
    ref = albedo_std if albedo_std > 0 else 1.0
    return torch.tensor([1.0, depth_std / ref if depth_std > 0 else 1.0], dtype=torch.float64)


def normalise_maps(maps: Tensor, scales: Tensor) -> Tensor:
    """maps [N, 4, H, W] divided by the per-group scales [2] (albedo channels 0-2, depth channel 3)."""
    per_channel = torch.stack([scales[0], scales[0], scales[0], scales[1]]).to(maps)
    return maps / per_channel.view(1, 4, 1, 1)


def jacobian_from_samples(w: Tensor, maps: Tensor, chunk: int = 4096, scales: Tensor | None = None) -> dict[str, Any]:
    """Per-pixel Eq. 3 on paired samples: w [2N, d], maps [2N, 4, H, W], pairs (w[:N], w[N:]).

    Returns {"J": [S, d] float32 (normalised units per unit of w), "r2": [S] float32 (NaN where a
    pixel never varies), "scales": [2] float64 (albedo, depth), "mean_r2": float}. One least-squares
    problem with an [N, S] right-hand side, solved in column chunks of `chunk` pixels so the float64
    copy stays small (the QR of delta_w is redone per chunk; it is cheap next to generation).
    """
    if w.ndim != 2 or maps.ndim != 4 or maps.shape[0] != w.shape[0] or maps.shape[1] != 4:
        raise ValueError(f"expected w [2N, d] and maps [2N, 4, H, W], got {tuple(w.shape)} and {tuple(maps.shape)}")
    if w.shape[0] % 2:
        raise ValueError("w must hold an even number of samples (pairs w[:N], w[N:])")
    n = w.shape[0] // 2
    if scales is None:
        scales = canonical_scales(maps)
    y = normalise_maps(maps.float(), scales).flatten(1)  # [2N, S]
    dw = (w[:n].double() - w[n:].double()).cpu()
    dy = (y[:n] - y[n:]).cpu()
    s_total = dy.shape[1]
    J = torch.empty(s_total, w.shape[1], dtype=torch.float32)
    r2 = torch.empty(s_total, dtype=torch.float32)
    for a in range(0, s_total, chunk):
        g, r = fit_directions_with_r2(dw, dy[:, a : a + chunk].double())
        J[a : a + chunk] = g.float()
        r2[a : a + chunk] = r.float()
    finite = r2[torch.isfinite(r2)]
    mean_r2 = float(finite.mean()) if finite.numel() else math.nan
    return {"J": J, "r2": r2, "scales": scales, "mean_r2": mean_r2}


def component_maps(u: Tensor, size: int) -> Tensor:
    """Columns of U [S, P] -> [P, 4, size, size] (albedo RGB, depth) perturbation maps."""
    if u.ndim != 2 or u.shape[0] != 4 * size * size:
        raise ValueError(f"U must be [4 * {size} * {size}, P], got {tuple(u.shape)}")
    return u.T.reshape(u.shape[1], 4, size, size)
