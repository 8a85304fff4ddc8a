"""Pictures of the directions: manipulation strips (paper Fig. 4 and Fig. 7) and component maps (Fig. 6).

A strip is G(edit_latent(w, v, s, sigma)) for s in s_values (paper Fig. 7: s from -4 to 4). Rows of
strips are written as one labelled PNG. `facedis_aug.bundle.draw_strips` draws them for any bundle and seed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ..ops.io import atomic_write, to_uint8_image
from ..ops.linear import edit_latent

DEFAULT_S: tuple[float, ...] = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0)


def _synthesise(target: Any, w: Tensor, batch_size: int = 64) -> Tensor:
    """Images [B, 3, R, R] from w [B, d] via a Bundle (has .generate) or a generator (has .synthesis)."""
    outs = []
    with torch.no_grad():
        for i in range(0, w.shape[0], batch_size):
            chunk = w[i : i + batch_size]
            if hasattr(target, "synthesis"):
                dev = next(iter(target.parameters()), torch.empty(0)).device
                outs.append(target.synthesis(chunk.to(dev), noise_mode="const").float().cpu())
            else:
                outs.append(target.generate(w=chunk).float().cpu())
    return torch.cat(outs)


def manipulation_strip(
    bundle_or_G: Any, w: Tensor, v: Tensor, sigma: float, s_values: Sequence[float] = DEFAULT_S
) -> Tensor:
    """Images [B * len(s_values), 3, R, R] in [-1, 1], row-major: row b is w[b] edited by Eq. 4 at
    each s (w: [B, d] or [d]; v: [d] unit; sigma: std of w.v). Save with nrow=len(s_values)."""
    if w.ndim == 1:
        w = w[None]
    if w.ndim != 2 or v.ndim != 1 or v.shape[0] != w.shape[1]:
        raise ValueError(f"expected w [B, d] and v [d], got {tuple(w.shape)} and {tuple(v.shape)}")
    s = torch.as_tensor(list(s_values), dtype=w.dtype)
    b, k = w.shape[0], s.shape[0]
    w_rep = w.detach().cpu().repeat_interleave(k, dim=0)  # [B*k, d], row-major
    edited = edit_latent(w_rep, v.detach().cpu().to(w.dtype), s.repeat(b), float(sigma))
    return _synthesise(bundle_or_G, edited)


def signed_map_images(maps: Tensor) -> Tensor:
    """Perturbation maps [P, 4, H, W] (albedo RGB, depth) -> pictures [P, 3, H, 2W] in [-1, 1]:
    albedo change on the left (grey = no change), depth change on the right (grey scale), each
    scaled by its own max |value| so the pattern of every component is visible."""
    if maps.ndim != 4 or maps.shape[1] != 4:
        raise ValueError(f"maps must be [P, 4, H, W], got {tuple(maps.shape)}")
    alb, dep = maps[:, :3].float(), maps[:, 3:].float()
    alb = alb / alb.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    dep = dep / dep.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return torch.cat([alb, dep.expand(-1, 3, -1, -1)], dim=3)


def save_labelled_rows(
    rows: Tensor,
    labels: Sequence[str],
    path: str | os.PathLike,
    col_labels: Sequence[str] | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    min_side: int = 64,
    pad: int = 2,
) -> Path:
    """rows [N_rows, N_cols, 3, H, W] -> one PNG with a text label left of each row (and optional
    column labels on top). Small images are upscaled (nearest) to at least `min_side` pixels."""
    from PIL import Image, ImageDraw

    if rows.ndim != 5 or rows.shape[2] != 3:
        raise ValueError(f"rows must be [R, C, 3, H, W], got {tuple(rows.shape)}")
    if len(labels) != rows.shape[0]:
        raise ValueError(f"{len(labels)} labels for {rows.shape[0]} rows")
    nr, nc, _, h, w = rows.shape
    scale = max(1, -(-min_side // max(h, 1)))
    h2, w2 = h * scale, w * scale
    label_w = 8 + 7 * max((len(t) for t in labels), default=0)
    top = 14 if col_labels else 0
    canvas = np.full((top + nr * (h2 + pad) + pad, label_w + nc * (w2 + pad) + pad, 3), 255, np.uint8)
    for r in range(nr):
        for c in range(nc):
            tile = to_uint8_image(rows[r, c], value_range)
            tile = tile.repeat(scale, 0).repeat(scale, 1)
            y, x = top + pad + r * (h2 + pad), label_w + pad + c * (w2 + pad)
            canvas[y : y + h2, x : x + w2] = tile
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for r, text in enumerate(labels):
        draw.text((4, top + pad + r * (h2 + pad) + h2 // 2 - 5), str(text), fill=(0, 0, 0))
    for c, text in enumerate(col_labels or []):
        draw.text((label_w + pad + c * (w2 + pad) + 2, 1), str(text), fill=(0, 0, 0))
    path = Path(path)
    with atomic_write(path, "wb") as f:
        img.save(f, format="PNG")
    return path


def strips_png(
    bundle_or_G: Any,
    w: Tensor,
    directions: dict[str, Tensor],
    sigmas: dict[str, float],
    path: str | os.PathLike,
    s_values: Sequence[float] = DEFAULT_S,
) -> Path:
    """One labelled PNG: a row per (direction, sample) for w [B, d], columns s_values."""
    if w.ndim == 1:
        w = w[None]
    rows, labels = [], []
    for name, v in directions.items():
        strip = manipulation_strip(bundle_or_G, w, v, sigmas[name], s_values)
        rows.append(strip.view(w.shape[0], len(s_values), *strip.shape[1:]))
        labels += [name if b == 0 else "" for b in range(w.shape[0])]
    if not rows:
        raise ValueError("strips_png: no directions to draw")
    return save_labelled_rows(torch.cat(rows), labels, path, col_labels=[f"s={s:+g}" for s in s_values])
