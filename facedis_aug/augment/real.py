"""Real images for `PoseExtrapolate`: input conversion and checks, the encode -> Eq. 4 -> decode turn,
and pasting the turned face back over the original background.

Accepted images: a torch tensor [C, H, W] or [H, W] (float in [0, 1] or uint8; C = 1, 3 or 4;
tv_tensors.Image too), a PIL image of any mode, or a numpy array [H, W], [H, W, C] (uint8 or float
in [0, 1]; albumentations' layout). Greyscale is repeated to RGB and alpha is dropped for the
model; the result goes back to the input's type, size, dtype and channels (greyscale out for
greyscale in, the original alpha kept). Anything else, images under MIN_SIDE pixels, blank images
and images the bundle cannot reconstruct as a face raise one `FaceInputError` saying why.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


MIN_SIDE = 16  # pixels; below this there is no face left to encode
BLANK_STD = 2e-3  # an image whose pixel std (in [0, 1]) is below this is blank: nothing to encode
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights, as PIL's convert("L")


class FaceInputError(ValueError, TypeError):
    """An input PoseExtrapolate cannot turn. A ValueError, and a TypeError for code that caught the
    older 'needs a sample dict' TypeError (as numpy's AxisError is both ValueError and IndexError)."""


@dataclass
class Layout:
    """How to give the result back in the input's form."""

    kind: str  # "tensor" | "tv_image" | "pil" | "numpy"
    channels: int  # 1 (grey, also for 2-D input), 3 or 4
    two_d: bool  # the input had no channel axis
    dtype: Any  # torch or numpy dtype of the input
    alpha: Tensor | None  # [1, H, W] in [0, 1] when the input had an alpha channel
    pil_mode: str | None = None


def _chw_to_unit(x: Tensor, what: str) -> Tensor:
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise FaceInputError(f"{what}: dtype {x.dtype} is not an image dtype (uint8, or float in [0, 1])")
    x = x.float()
    if not torch.isfinite(x).all():
        raise FaceInputError(f"{what}: contains NaN or Inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        hint = "; it looks like 0-255 values: divide by 255 or pass uint8" if hi > 1.5 and lo >= 0 else ""
        raise FaceInputError(f"{what}: float values must be in [0, 1], got [{lo:.3g}, {hi:.3g}]{hint}")
    return x.clamp(0.0, 1.0)


def to_rgb_unit(image: Any) -> tuple[Tensor, Layout]:
    """Any accepted image -> (RGB float [3, H, W] in [0, 1], its Layout). Raises FaceInputError."""
    from PIL import Image

    if isinstance(image, Image.Image):
        from ..data.folder import pil_to_tensor01, to_rgb

        mode = image.mode
        alpha = None
        if mode in ("RGBA", "LA"):
            alpha = torch.from_numpy(np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0)[None]
        x, layout = pil_to_tensor01(to_rgb(image)), Layout("pil", 3, False, None, alpha, mode)
    elif isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
            raise FaceInputError(f"numpy image: dtype {arr.dtype} is not an image dtype (uint8, or float in [0, 1])")
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise FaceInputError(f"numpy image must be [H, W] or [H, W, 1|3|4] (channels last), got shape {arr.shape}")
        t = torch.from_numpy(np.array(arr, copy=True))  # a copy: the caller's array may be read-only
        t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
        x, layout = _split_channels(_chw_to_unit(t, "numpy image"), "numpy", arr.ndim == 2, arr.dtype)
    elif isinstance(image, Tensor):
        from torchvision import tv_tensors

        kind = "tv_image" if isinstance(image, tv_tensors.Image) else "tensor"
        t = image.as_subclass(Tensor).detach().cpu()
        if t.ndim == 4:
            raise FaceInputError(f"image tensor: one image [C, H, W] at a time, got a batch {tuple(t.shape)}")
        if t.ndim not in (2, 3) or (t.ndim == 3 and t.shape[0] not in (1, 3, 4)):
            raise FaceInputError(f"image tensor must be [H, W] or [1|3|4, H, W] (channels first), got {tuple(t.shape)}")
        t = t[None] if t.ndim == 2 else t
        x, layout = _split_channels(_chw_to_unit(t, "image tensor"), kind, image.ndim == 2, image.dtype)
    else:
        raise FaceInputError(
            f"PoseExtrapolate cannot read a {type(image).__name__}: give a face image (tensor [3, H, W] in [0, 1], "
            "PIL image or uint8 numpy [H, W, 3]) or a synthetic sample dict with its latent 'w'"
        )
    h, w = x.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise FaceInputError(f"image is {w}x{h} px; PoseExtrapolate needs at least {MIN_SIDE} px on each side")
    std = float(x.std())
    if std < BLANK_STD:
        raise FaceInputError(f"image is blank (all pixels {float(x.mean()):.3f}, std {std:.1e}): not a face; "
                             "give a face photo or a synthetic sample dict with its latent 'w'")
    return x, layout


def _split_channels(x: Tensor, kind: str, two_d: bool, dtype: Any) -> tuple[Tensor, Layout]:
    c = x.shape[0]
    alpha = x[3:4].clone() if c == 4 else None
    rgb = x[:1].expand(3, -1, -1).clone() if c == 1 else x[:3]
    return rgb, Layout(kind, c, two_d, dtype, alpha)


def from_rgb_unit(x: Tensor, layout: Layout) -> Any:
    """RGB [3, H, W] in [0, 1] -> the input's form (see Layout)."""
    x = x.clamp(0.0, 1.0)
    if layout.kind == "pil":
        from PIL import Image

        out = Image.fromarray((x.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8), mode="RGB")
        if layout.alpha is not None:
            out.putalpha(Image.fromarray((layout.alpha[0].numpy() * 255.0 + 0.5).astype(np.uint8), mode="L"))
        # L, LA, RGB and RGBA come back as they came; other modes (P, CMYK, I;16, ...) as RGB
        return out.convert(layout.pil_mode) if layout.pil_mode in ("L", "LA") else out
    if layout.channels == 1:
        x = (x * torch.tensor(LUMA)[:, None, None]).sum(0, keepdim=True)
    elif layout.channels == 4:
        x = torch.cat([x, layout.alpha if layout.alpha is not None else torch.ones_like(x[:1])])
    if layout.kind == "numpy":
        arr = x.permute(1, 2, 0).numpy()
        arr = (arr * 255.0 + 0.5).astype(np.uint8) if layout.dtype == np.uint8 else arr.astype(layout.dtype)
        return arr[..., 0] if layout.two_d else arr
    out = (x * 255.0 + 0.5).to(torch.uint8) if layout.dtype == torch.uint8 else x.to(layout.dtype)
    out = out[0] if layout.two_d else out
    if layout.kind == "tv_image":
        from torchvision import tv_tensors

        return tv_tensors.Image(out)
    return out


def pad_square(x: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
    """[3, H, W] -> [3, S, S], S = max(H, W), edge-padded around the centre (keeps the aspect ratio,
    as the 'casia' folder preprocessing does); returns the crop box (top, left, H, W) to undo it."""
    h, w = x.shape[-2:]
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    if s == h == w:
        return x, (0, 0, h, w)
    padded = F.pad(x[None], (left, s - w - left, top, s - h - top), mode="replicate")[0]
    return padded, (top, left, h, w)


def central_mask(h: int, w: int, radius: float = 0.30, softness: float = 0.15) -> Tensor:
    """Soft elliptic mask [1, h, w] in [0, 1]: 1 inside `radius` (share of each side) around the centre,
    falling smoothly to 0 over `softness` (smoothstep); where the generator's face is."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h - 0.5
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w - 0.5
    r = torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)  # 0.5 = the middle of each edge
    t = ((radius + softness - r) / max(softness, 1e-6)).clamp(0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t))[None]
