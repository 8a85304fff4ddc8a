"""`PoseExtrapolate`: turn a face to another yaw: a real photo (through the bundle's encoder) or a
synthetic sample (its w is known).

Real images (tensor [3, H, W] in [0, 1], PIL image, numpy; see facedis_aug.augment.real): encode to
w (refined for a few steps), Eq. 4 to the target yaw, decode, resize back to the input's size and
form; `blend_background=True` pastes the turned face over the original with a soft central mask:

    t = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), PoseExtrapolate("bundle/")])  # uniform over the reach
    t = PoseExtrapolate("bundle/", yaw=(-30, 30), relative=True)     # turn BY up to 30 degrees

Synthetic samples of `SyntheticPoseFaces(output="sample")`, dicts {"image", "w", "yaw", "identity"}:

    t = v2.Compose([PoseExtrapolate("bundle/", yaw="uniform"), v2.RandomHorizontalFlip()])
    ds = SyntheticPoseFaces("bundle/", 100, 8, output="sample", transform=t)

The new yaw is drawn from torch's global RNG in `get_params()` (so DataLoader worker seeding and
torch.manual_seed govern it, as for torchvision's own random transforms); `apply(sample, yaw)` is
deterministic. The edit is Eq. 4 along v_yaw: w' = w - (w.v) v + s(yaw) sigma v.

albumentations: `AlbuPoseExtrapolate(bundle, encode=True)` turns real images (uint8 or float
[H, W, C]); with encode=False (the default) it takes the latent as an extra named target,
`A.Compose([AlbuPoseExtrapolate("bundle/"), A.HorizontalFlip()])(image=img, w=w)`.
Either way it draws the yaw in `get_params` (albumentations' seeded RNG) and renders in `apply`.
The target yaw is reached through the bundle's calibration (degrees per unit of s along v_yaw, read
off edits by the directions stage), so it is only as good as that calibration: benchmarks/results/
table2_*.md measure it. Targets beyond the bundle's measured reach, or whose s lies more than `max_s`
sigma from the generator's own faces, are refused (ValueError naming the range the bundle reaches;
max_s=None renders anyway); images that cannot be turned raise `FaceInputError` (see .real).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ..ops.resize import resize_bilinear
from .engine import Engine, open_bundle, to_unit_range
from .real import FaceInputError, central_mask, from_rgb_unit, pad_square, to_rgb_unit

# Largest |s - mean s| (sigma units along v_yaw) a turn may ask for: Sec. 3.4 trains the decomposer on
# edits with |s| <= 10, so the calibration is unsupported beyond; on the tiny bundle the turned images
# drift away from the true render steadily with |s| (benchmarks/results/encoder.md)
MAX_S = 10.0


def _yaw_range(yaw: Any, default: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    if isinstance(yaw, str):
        if yaw != "uniform":
            raise ValueError(f"yaw must be 'uniform' or (lo, hi) degrees, got {yaw!r}")
        return default()
    lo, hi = (float(v) for v in yaw)
    if not lo <= hi:
        raise ValueError(f"yaw range must have lo <= hi, got {(lo, hi)}")
    return lo, hi


class _YawTurner:
    """The shared part: bundle spec, per-process engine, one re-render at a yaw, one real-image turn."""

    def __init__(self, bundle: Any, yaw: Any, p: float, backend: str, device: str, relative: bool = False,
                 blend_background: bool = False, refine_steps: int | None = None, face_check: bool = True,
                 max_s: float | None = MAX_S):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if refine_steps is not None and int(refine_steps) < 0:
            raise ValueError(f"refine_steps must be >= 0 or None (the bundle's default), got {refine_steps}")
        self.spec = open_bundle(bundle, backend, device)
        self.relative = bool(relative)
        lim = self.spec.yaw_limit
        self.yaw_range = _yaw_range(yaw, (lambda: (-2 * lim, 2 * lim)) if relative else self.spec.uniform_yaws)
        self.p = float(p)
        self.blend_background, self.refine_steps, self.face_check = bool(blend_background), refine_steps, bool(face_check)
        if max_s is not None and not float(max_s) > 0:
            raise ValueError(f"max_s must be > 0 or None, got {max_s}")
        self.max_s = None if max_s is None else float(max_s)
        if not self.relative:  # absolute targets are known now: refuse a range the bundle cannot reach
            for t in self.yaw_range:
                self._check_reach(t)
        # relative targets depend on each face: they are clipped into this range, decided now, so that a
        # DataLoader never meets an error mid-epoch
        self.reachable = self._reachable()
        self.engine = Engine(self.spec)

    def _reachable(self) -> tuple[float, float]:
        """Absolute yaws (degrees) this transform may render: the bundle's measured reach (or the yaw limit),
        narrowed by max_s; with max_s None, the yaw limit."""
        lim = self.spec.yaw_limit
        if self.max_s is None:
            return -lim, lim
        m = self.spec.yaw_s_mean
        lo, hi = sorted(float(self.spec.s_to_yaw(m + d)) for d in (-self.max_s, self.max_s))
        blo, bhi = self.spec.yaw_bounds
        return max(lo, blo), min(hi, bhi)

    def _check_reach(self, target: float) -> None:
        """Refuse a target yaw beyond the bundle's measured reach, or whose s lies more than max_s sigma from
        the generator's own faces (max_s None: neither)."""
        if self.max_s is None:
            return
        sp = self.spec
        sp.check_yaws(target, target, "target yaw")
        s, m = float(sp.yaw_to_s(target)), sp.yaw_s_mean
        if abs(s - m) > self.max_s * (1 + 1e-9):  # the range's own ends (from s_to_yaw) must pass
            c, k = sp.calibration["yaw"]
            how = "its measured curve" if sp.yaw_knots is not None else f"{k:.2f} deg per sigma, intercept {c:.1f} deg"
            lo, hi = sorted(float(sp.s_to_yaw(m + d)) for d in (-self.max_s, self.max_s))
            raise ValueError(
                f"yaw {target:g} deg needs s = {s:.1f} along v_yaw (bundle calibration: {how}), "
                f"{abs(s - m):.0f} sigma from the generator's own faces; beyond max_s = {self.max_s:g} the "
                f"turned images break up. This bundle reaches [{lo:.1f}, {hi:.1f}] deg: narrow the yaw range, or pass "
                "max_s=None to render anyway (see benchmarks/results/encoder.md)"
            )

    def _target(self, yaw: float, w: Tensor, known_yaw: float | None = None) -> float:
        """Absolute target yaw: `yaw`, or with relative=True the face's current yaw plus `yaw`, clipped into
        `reachable` (never an error per sample)."""
        if not self.relative:
            self._check_reach(float(yaw))
            return float(yaw)
        now = float(known_yaw) if known_yaw is not None else float(self.spec.yaw_of(w[None])[0])
        lo, hi = self.reachable
        return float(min(max(now + float(yaw), lo), hi))

    def turn_image(self, image: Any, yaw: float) -> Any:
        """A real image (any accepted form) turned to `yaw` (or by it, relative=True); same form and size back."""
        x01, layout = to_rgb_unit(image)
        sq, (top, left, h, w) = pad_square(x01)
        R = self.spec.resolution
        model_in = resize_bilinear(sq, (R, R))[None] * 2.0 - 1.0
        self.spec.require_encoder()
        lat, l1 = self.engine.encode(model_in, self.refine_steps)
        limit = self.spec.encoder["max_l1"]
        if self.face_check and float(l1[0]) > limit:
            raise FaceInputError(
                f"the bundle cannot reconstruct this image as a face (encoder L1 {float(l1[0]):.3f} > its limit {limit:.3f}, "
                "set by the encode stage from its training faces' L1): not a face, or a face framed unlike the training data; "
                "crop it like the training faces, or pass face_check=False to turn it anyway"
            )
        target = self._target(yaw, lat[0])
        turned, _ = self.rerender(lat[0], target, (sq.shape[-2], sq.shape[-1]))
        out = turned[:, top : top + h, left : left + w]
        if self.blend_background:
            m = central_mask(h, w)
            out = m * out + (1.0 - m) * x01
        return from_rgb_unit(out, layout)

    def rerender(self, w: Tensor, yaw: float, size: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
        """(image [3, H, W] in [0, 1], w' [d]) for latent w [d] turned to `yaw` degrees."""
        w = torch.as_tensor(w, dtype=torch.float32)
        if w.shape != (self.spec.w_dim,):
            raise ValueError(f"w must be [{self.spec.w_dim}], got {tuple(w.shape)}")
        w2 = self.spec.edit(w[None], "yaw", torch.tensor([float(self.spec.yaw_to_s(yaw))]))
        img = to_unit_range(self.engine.render(w2))
        if size is not None and tuple(img.shape[-2:]) != tuple(size):
            img = resize_bilinear(img, size).clamp_(0, 1)
        return img[0], w2[0]


class PoseExtrapolate(torch.nn.Module):
    """Transform: with probability p, turn the face to a yaw ~ U(yaw range) (degrees, > 0 = to the image's left).

    Input: a real image (see facedis_aug.augment.real; needs a bundle with an encoder) -> the turned
    image in the input's form and size; or a synthetic sample dict with "w" [d] and "image" -> the
    same dict with "image" (a tv_tensors.Image of the input's size), "w" and "yaw" replaced.
    relative=True: the range is an offset from the face's current yaw (w.v_yaw through the
    calibration; a sample's own "yaw" when it has one), clipped into `reachable` (the bundle's measured
    reach narrowed by max_s, fixed at construction: a relative turn never raises per sample).
    refine_steps: Adam steps refining the encoder's w (None = the bundle's default); face_check:
    refuse images whose encoder reconstruction is worse than the bundle's max_l1 (FaceInputError).
    max_s: refuse target yaws (ValueError, at construction for absolute ranges) beyond the bundle's
    measured reach or whose Eq. 4 scale is more than max_s sigma from the generator's own faces
    (None: neither limit; only the view range).
    """

    def __init__(self, bundle: Any, yaw: Any = "uniform", p: float = 1.0, backend: str = "torch", device: str = "cpu",
                 relative: bool = False, blend_background: bool = False, refine_steps: int | None = None, face_check: bool = True,
                 max_s: float | None = MAX_S):
        super().__init__()
        self._r = _YawTurner(bundle, yaw, p, backend, device, relative, blend_background, refine_steps, face_check, max_s)

    @property
    def yaw_range(self) -> tuple[float, float]:
        return self._r.yaw_range

    @property
    def reachable(self) -> tuple[float, float]:
        """Absolute yaws (degrees) this transform renders; relative targets are clipped into it."""
        return self._r.reachable

    def get_params(self) -> dict[str, Any]:
        """Random draws: {"apply": bool, "yaw": degrees}, from torch's global RNG."""
        apply = bool(torch.rand(()) < self._r.p)
        lo, hi = self._r.yaw_range
        return {"apply": apply, "yaw": float(lo + (hi - lo) * torch.rand((), dtype=torch.float64))}

    def apply(self, sample: Any, yaw: float, apply: bool = True) -> Any:
        """Deterministic: `sample` (real image or synthetic dict) turned to (or by) `yaw` degrees; unchanged when apply is False."""
        if isinstance(sample, dict) and "w" not in sample:
            raise TypeError("PoseExtrapolate: a dict sample needs its latent 'w' (SyntheticPoseFaces(output='sample')); "
                            "pass real images themselves, not in a dict")
        if not apply:
            return sample
        if not isinstance(sample, dict):
            return self._r.turn_image(sample, yaw)
        from torchvision import tv_tensors

        old = sample.get("image")
        size = tuple(old.shape[-2:]) if isinstance(old, Tensor) else None
        w0 = torch.as_tensor(sample["w"], dtype=torch.float32)
        target = self._r._target(yaw, w0, sample.get("yaw"))
        image, w = self._r.rerender(w0, target, size)
        return {**sample, "image": tv_tensors.Image(image), "w": w, "yaw": target}

    def forward(self, sample: Any) -> Any:
        return self.apply(sample, **self.get_params())

    def extra_repr(self) -> str:
        lo, hi = self._r.yaw_range
        extra = (f", relative=True, reachable=({self._r.reachable[0]:.1f}, {self._r.reachable[1]:.1f})" if self._r.relative else "") + (", blend_background=True" if self._r.blend_background else "")
        return f"bundle={str(self._r.spec.path)!r}, yaw=({lo:g}, {hi:g}), p={self._r.p:g}, backend={self._r.spec.backend!r}{extra}"


def _make_albu_class() -> type:
    import albumentations as A

    class AlbuPoseExtrapolate(A.ImageOnlyTransform):
        """albumentations transform: turn the face to a yaw ~ U(yaw range). encode=True: the image is
        a real photo (uint8 or float [H, W, C]), encoded by the bundle; encode=False: the sample's
        latent is passed as the named target `w` ([d] array or tensor). Other options as
        PoseExtrapolate. get_params draws, apply renders."""

        def __init__(self, bundle: Any, yaw: Any = "uniform", backend: str = "torch", device: str = "cpu", p: float = 1.0,
                     encode: bool = False, relative: bool = False, blend_background: bool = False,
                     refine_steps: int | None = None, face_check: bool = True, max_s: float | None = MAX_S):
            super().__init__(p=p)
            self._r = _YawTurner(bundle, yaw, 1.0, backend, device, relative, blend_background, refine_steps, face_check, max_s)
            self.encode = bool(encode)
            if self.encode:
                self._r.spec.require_encoder()  # fail at construction, not at the first image

        @property
        def targets_as_params(self) -> list[str]:
            return [] if self.encode else ["w"]

        def get_params(self) -> dict[str, Any]:
            lo, hi = self._r.yaw_range
            return {"yaw": float(self.py_random.uniform(lo, hi))}

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            if self.encode:
                return {}
            if "w" not in data:
                raise ValueError("AlbuPoseExtrapolate needs the sample's latent: call compose(image=..., w=...)")
            return {"w": torch.as_tensor(np.asarray(data["w"]), dtype=torch.float32)}

        def apply(self, img: np.ndarray, yaw: float = 0.0, w: Tensor | None = None, **params: Any) -> np.ndarray:
            if self.encode:
                return self._r.turn_image(img, yaw)
            if w is None:
                raise ValueError("AlbuPoseExtrapolate.apply needs w (or encode=True for real images)")
            image, _ = self._r.rerender(w, self._r._target(yaw, w), tuple(img.shape[:2]))
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
