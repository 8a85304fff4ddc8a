"""`PoseExtrapolate`: re-render a synthetic sample (its w is known) at another yaw.

torchvision (v2 or v1 Compose, or called directly) on the samples of
`SyntheticPoseFaces(output="sample")`, dicts {"image", "w", "yaw", "identity"}:

    t = v2.Compose([PoseExtrapolate("bundle/", yaw=(-90, 90)), v2.RandomHorizontalFlip()])
    ds = SyntheticPoseFaces("bundle/", 100, 8, output="sample", transform=t)

The new yaw is drawn from torch's global RNG in `get_params()` (so DataLoader worker seeding and
torch.manual_seed govern it, as for torchvision's own random transforms); `apply(sample, yaw)` is
deterministic. The edit is Eq. 4 along v_yaw: w' = w - (w.v) v + s(yaw) sigma v.

albumentations: `AlbuPoseExtrapolate` takes the latent as an extra named target,
`A.Compose([AlbuPoseExtrapolate("bundle/", yaw=(-90, 90)), A.HorizontalFlip()])(image=img, w=w)`,
draws the yaw in `get_params` (albumentations' seeded RNG) and renders in `apply`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .engine import Engine, open_bundle, to_unit_range


def _yaw_range(yaw: Any, limit: float) -> tuple[float, float]:
    if isinstance(yaw, str):
        if yaw != "uniform":
            raise ValueError(f"yaw must be 'uniform' or (lo, hi) degrees, got {yaw!r}")
        return -limit, limit
    lo, hi = (float(v) for v in yaw)
    if not lo <= hi:
        raise ValueError(f"yaw range must have lo <= hi, got {(lo, hi)}")
    return lo, hi


class _Renderer:
    """The shared part: bundle spec, per-process engine, one re-render at a yaw."""

    def __init__(self, bundle: Any, yaw: Any, p: float, backend: str, device: str):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.spec = open_bundle(bundle, backend, device)
        self.yaw_range = _yaw_range(yaw, self.spec.yaw_limit)
        self.p = float(p)
        self.engine = Engine(self.spec)

    def rerender(self, w: Tensor, yaw: float, size: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
        """(image [3, H, W] in [0, 1], w' [d]) for latent w [d] turned to `yaw` degrees."""
        w = torch.as_tensor(w, dtype=torch.float32)
        if w.shape != (self.spec.w_dim,):
            raise ValueError(f"w must be [{self.spec.w_dim}], got {tuple(w.shape)}")
        w2 = self.spec.edit(w[None], "yaw", torch.tensor([float(self.spec.yaw_to_s(yaw))]))
        img = to_unit_range(self.engine.render(w2))
        if size is not None and tuple(img.shape[-2:]) != tuple(size):
            img = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
        return img[0], w2[0]


class PoseExtrapolate(torch.nn.Module):
    """Transform for synthetic samples: with probability p, re-render at a yaw ~ U(yaw range).

    Input: a dict with "w" [d] and "image" ([3, H, W] tensor / tv_tensors.Image in [0, 1]); output:
    the same dict with "image" (a tv_tensors.Image of the input's size), "w" and "yaw" replaced.
    """

    def __init__(self, bundle: Any, yaw: Any = "uniform", p: float = 1.0, backend: str = "torch", device: str = "cpu"):
        super().__init__()
        self._r = _Renderer(bundle, yaw, p, backend, device)

    @property
    def yaw_range(self) -> tuple[float, float]:
        return self._r.yaw_range

    def get_params(self) -> dict[str, Any]:
        """Random draws: {"apply": bool, "yaw": degrees}, from torch's global RNG."""
        apply = bool(torch.rand(()) < self._r.p)
        lo, hi = self._r.yaw_range
        return {"apply": apply, "yaw": float(lo + (hi - lo) * torch.rand((), dtype=torch.float64))}

    def apply(self, sample: dict[str, Any], yaw: float, apply: bool = True) -> dict[str, Any]:
        """Deterministic: `sample` re-rendered at `yaw` degrees (unchanged when apply is False)."""
        if not isinstance(sample, dict) or "w" not in sample:
            raise TypeError("PoseExtrapolate needs a synthetic sample dict with its latent 'w' (SyntheticPoseFaces(output='sample'))")
        if not apply:
            return sample
        from torchvision import tv_tensors

        old = sample.get("image")
        size = tuple(old.shape[-2:]) if isinstance(old, Tensor) else None
        image, w = self._r.rerender(sample["w"], yaw, size)
        return {**sample, "image": tv_tensors.Image(image), "w": w, "yaw": float(yaw)}

    def forward(self, sample: dict[str, Any]) -> dict[str, Any]:
        return self.apply(sample, **self.get_params())

    def extra_repr(self) -> str:
        lo, hi = self._r.yaw_range
        return f"bundle={str(self._r.spec.path)!r}, yaw=({lo:g}, {hi:g}), p={self._r.p:g}, backend={self._r.spec.backend!r}"


def _make_albu_class() -> type:
    import albumentations as A

    class AlbuPoseExtrapolate(A.ImageOnlyTransform):
        """albumentations transform: re-render the image at a yaw ~ U(yaw range); the sample's latent
        is passed as the named target `w` ([d] array or tensor). get_params draws, apply renders."""

        def __init__(self, bundle: Any, yaw: Any = "uniform", backend: str = "torch", device: str = "cpu", p: float = 1.0):
            super().__init__(p=p)
            self._r = _Renderer(bundle, yaw, 1.0, backend, device)

        @property
        def targets_as_params(self) -> list[str]:
            return ["w"]

        def get_params(self) -> dict[str, Any]:
            lo, hi = self._r.yaw_range
            return {"yaw": float(self.py_random.uniform(lo, hi))}

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            if "w" not in data:
                raise ValueError("AlbuPoseExtrapolate needs the sample's latent: call compose(image=..., w=...)")
            return {"w": torch.as_tensor(np.asarray(data["w"]), dtype=torch.float32)}

        def apply(self, img: np.ndarray, yaw: float = 0.0, w: Tensor | None = None, **params: Any) -> np.ndarray:
            if w is None:
                raise ValueError("AlbuPoseExtrapolate.apply needs w")
            image, _ = self._r.rerender(w, yaw, tuple(img.shape[:2]))
            hwc = image.permute(1, 2, 0).numpy()
            if img.dtype == np.uint8:
                return (hwc * 255.0 + 0.5).astype(np.uint8)
            return hwc.astype(img.dtype)

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ()

    return AlbuPoseExtrapolate


_ALBU: type | None = None


def __getattr__(name: str) -> Any:
    # albumentations is imported only when its wrapper is asked for (it pulls in opencv)
    global _ALBU
    if name == "AlbuPoseExtrapolate":
        if _ALBU is None:
            _ALBU = _make_albu_class()
            _ALBU.__module__ = __name__
            _ALBU.__qualname__ = "AlbuPoseExtrapolate"
        return _ALBU
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
