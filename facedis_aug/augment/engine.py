"""What the augmentation Datasets and transforms share: opening a bundle strictly, and a per-process
rendering engine (PyTorch or ONNX Runtime) that is created lazily and never crosses a fork.

    spec = open_bundle("bundle/", backend="onnx")    # validates now, in the main process
    engine = Engine(spec)                            # cheap; loads models on first use
    images = engine.render(w)                        # w [B, d] -> [B, 3, R, R] in [-1, 1], CPU
    yaw_pitch_roll = engine.view(images)             # [B, 3] degrees

Pickling an Engine (DataLoader workers with spawn) drops its models; a forked worker notices the
new process id and loads its own. So each worker holds exactly one generator / inference session.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..bundle import DECOMPOSER, ENCODER, ENCODER_ONNX, GENERATOR, GENERATOR_ONNX, VIEW_HEAD_ONNX, Bundle, BundleError
from ..ops.linear import edit_latent, s_to_value, value_to_s
from ..ops.seeds import derive_seed, seeds_to_z

Backend = Literal["torch", "onnx"]
BACKENDS = ("torch", "onnx")
# the light semantics of the bundle (paper Sec. 4.3), edited when lighting augmentation is on
LIGHT_SEMANTICS = ("ambient_r", "ambient_g", "ambient_b", "diffuse_r", "diffuse_g", "diffuse_b", "light_x", "light_y")
DEFAULT_YAW_LIMIT = 90.0  # DecomposerConfig.rot_range, for decomposer files that do not store it


@dataclass
class BundleSpec:
    """The validated, picklable facts about a bundle the augmenters need (no models)."""

    path: Path
    backend: str
    device: str
    directions: dict[str, Tensor]
    sigma: dict[str, float]
    calibration: dict[str, tuple[float, float]]  # name -> (intercept, units_per_sigma)
    generator: dict[str, Any]  # GeneratorConfig as stored in generator.safetensors
    view_size: int  # the decomposer's (view head's) input side in pixels
    yaw_limit: float
    decomposer_sha256: str
    files: dict[str, Any] = field(default_factory=dict)
    # the encoder's settings (image_size, max_l1, refine_steps / lr / reg, w_std [d]); None when the
    # bundle has no encoder (written before the encode stage existed, or without it)
    encoder: dict[str, Any] | None = None
    yaw_s_mean: float = 0.0  # mean of w.v_yaw / sigma over the generator's own w (0 when the bundle does not say)
    # (lo, hi) degrees an edit along v_yaw delivers within 15% of the calibration (directions.reach); None in
    # bundles written before it was measured, which are held to the view range alone
    yaw_reach: tuple[float, float] | None = None
    # the view head reads each image and its mirror, as the directions stage did (Bundle.mirror_average)
    view_mirror_average: bool = False
    # (s, degrees) knots of the measured yaw calibration curve (Bundle.calibration_knots); None: the line alone
    yaw_knots: tuple[list[float], list[float]] | None = None

    @property
    def yaw_bounds(self) -> tuple[float, float]:
        """(lo, hi): the yaws (degrees) this bundle may be asked for: its measured reach, within the view range."""
        lim = self.yaw_limit
        if self.yaw_reach is None:
            return -lim, lim
        return max(self.yaw_reach[0], -lim), min(self.yaw_reach[1], lim)

    def uniform_yaws(self) -> tuple[float, float]:
        """`yaw_bounds`, for a "uniform" yaw default; ValueError (one line) when the reach has no width (the
        bundle's edits deliver no turn within 15% on either side), which no yaw distribution can use."""
        lo, hi = self.yaw_bounds
        if not lo < hi:
            raise ValueError(f"the bundle {self.path} has a measured reach of [{lo:.1f}, {hi:.1f}] degrees: its edits along "
                             "v_yaw deliver no turn within 15% of the calibration (directions.json 'yaw'.reach), so it "
                             "cannot pose faces; retrain it (see the README's stage 2 notes)")
        return lo, hi

    def check_yaws(self, lo: float, hi: float, what: str = "yaw") -> None:
        """Raise ValueError (one line, naming the reach) when [lo, hi] degrees is not inside `yaw_bounds`."""
        blo, bhi = self.yaw_bounds
        if lo >= blo - 1e-9 and hi <= bhi + 1e-9:
            return
        if self.yaw_reach is None:
            why = f"the decomposer's view range (|yaw| <= {self.yaw_limit:g}, its rot_range)"
        else:
            why = ("its measured reach (edits along v_yaw, read back by its view head, deliver the calibrated yaw within "
                   "15% only there; directions.json 'yaw'.reach)")
        raise ValueError(f"{what} ({lo:g}, {hi:g}) degrees is beyond what the bundle {self.path} delivers: "
                         f"[{blo:.1f}, {bhi:.1f}] deg, {why}")

    @property
    def resolution(self) -> int:
        return int(self.generator["resolution"])

    @property
    def w_dim(self) -> int:
        return int(self.generator["w_dim"])

    @property
    def z_dim(self) -> int:
        return int(self.generator["z_dim"])

    def yaw_to_s(self, deg: np.ndarray | float) -> np.ndarray | float:
        """Edit scale s along v_yaw that gives `deg` degrees (the bundle's calibration: its curve, else its line)."""
        return value_to_s(np.asarray(deg, dtype=np.float64), *self.calibration["yaw"], self.yaw_knots)

    def s_to_yaw(self, s: np.ndarray | float) -> np.ndarray | float:
        return s_to_value(np.asarray(s, dtype=np.float64), *self.calibration["yaw"], self.yaw_knots)

    def light_names(self) -> list[str]:
        return [n for n in LIGHT_SEMANTICS if n in self.directions]

    def edit(self, w: Tensor, name: str, s: Tensor) -> Tensor:
        """Eq. 4 along a named direction: w [B, d], s [B] (units of sigma) -> w' [B, d]."""
        return edit_latent(w, self.directions[name].to(w.device, w.dtype), s.to(w.dtype), self.sigma[name])

    def yaw_of(self, w: Tensor) -> Tensor:
        """The yaw [B] (degrees) that the linear model gives latents w [B, d]: s = w.v_yaw / sigma, through the calibration."""
        v = self.directions["yaw"].to(w.device, w.dtype)
        return torch.as_tensor(self.s_to_yaw((w @ v).detach().cpu().double().numpy() / self.sigma["yaw"]), dtype=torch.float32)

    def require_encoder(self) -> dict[str, Any]:
        if self.encoder is None:
            raise BundleError(
                f"{self.path / ENCODER}: this bundle has no encoder, so it cannot turn real images "
                "(it was written before the encode stage, or without it); run the 'encode' and 'export' stages "
                "(python -m train_gan ... run.stages=[encode,export] after deleting export/DONE.json)"
            )
        return self.encoder


def _stored_config(path: Path, key: str) -> dict[str, Any]:
    """The JSON configuration stored under `key` in a safetensors header (no weights read)."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        value = json.loads(meta[key])
        if not isinstance(value, dict):
            raise TypeError(f"'{key}' is not a table")
        return value
    except Exception as e:  # corrupt header, missing metadata: name the file, one line
        raise BundleError(f"{path}: no '{key}' configuration in its metadata ({type(e).__name__}: {e})") from None


def open_bundle(bundle: str | os.PathLike | Bundle | BundleSpec, backend: str = "torch", device: str = "cpu") -> BundleSpec:
    """Load and verify a bundle (path or `Bundle`) for augmentation; raise `BundleError` in one line
    when it cannot serve `backend` (missing ONNX files, no calibrated yaw direction)."""
    if isinstance(bundle, BundleSpec):
        if bundle.backend != backend or bundle.device != device:
            return open_bundle(bundle.path, backend, device)
        return bundle
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    listed = b.manifest["files"]
    if backend == "onnx":
        if GENERATOR_ONNX not in listed:
            raise BundleError(f"{b.path / GENERATOR_ONNX}: backend='onnx' needs it; run `facedis-aug export {b.path}`")
    dirs = b.directions
    if "yaw" not in dirs:
        raise BundleError(f"{b.path / 'directions.json'}: no 'yaw' direction; this bundle cannot pose faces")
    calibration = b.calibrations()
    if "yaw" not in calibration:
        raise BundleError(f"{b.path / 'directions.json'}: the 'yaw' direction has no degrees calibration (units_per_sigma)")
    if backend == "onnx" and ENCODER in listed and ENCODER_ONNX not in listed:
        raise BundleError(f"{b.path / ENCODER_ONNX}: backend='onnx' needs it beside {ENCODER}; run `facedis-aug export {b.path}`")
    # the view head's own range, from the decomposer file (not the recipe, which a bundle may lack)
    dcfg = _stored_config(b.path / DECOMPOSER, "config")
    return BundleSpec(
        path=b.path,
        backend=backend,
        device=device,
        directions=dirs,
        sigma={n: b.sigma(n) for n in dirs},
        calibration=calibration,
        generator=_stored_config(b.path / GENERATOR, "generator"),
        view_size=int(dcfg.get("image_size", 64)),
        yaw_limit=float(dcfg.get("rot_range", DEFAULT_YAW_LIMIT)),
        decomposer_sha256=str(listed[DECOMPOSER]["sha256"]),
        files=dict(listed),
        encoder=_encoder_facts(b.path / ENCODER) if ENCODER in listed else None,
        yaw_s_mean=float(b.info["directions"]["yaw"].get("proj_mean", 0.0)) / b.sigma("yaw"),
        yaw_reach=b.yaw_reach,
        view_mirror_average=b.mirror_average,
        yaw_knots=b.calibration_knots("yaw"),
    )


def _encoder_facts(path: Path) -> dict[str, Any]:
    """What the augmenters need from encoder.safetensors without building it: sizes, max_l1, the
    refinement defaults and w_std [d] (refinement steps are in units of it)."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            w_std = f.get_tensor("w_std").float()
        cfg = json.loads(meta["config"])
        max_l1 = json.loads(meta.get("max_l1", "null"))  # absent: no face check possible (an encoder saved by hand)
        return {"image_size": int(json.loads(meta["image_size"])), "max_l1": float("inf") if max_l1 is None else float(max_l1),
                "refine_steps": int(cfg["refine_steps"]), "refine_lr": float(cfg["refine_lr"]),
                "refine_reg": float(cfg["refine_reg"]), "w_std": w_std}  # fmt: skip
    except Exception as e:  # corrupt header or not an encoder file: name the file, one line
        raise BundleError(f"{path}: not a readable encoder file ({type(e).__name__}: {e})") from None


class Engine:
    """Per-process models of a bundle. `render` / `mapping` / `view` load what they need on first use."""

    def __init__(self, spec: BundleSpec, threads: int | None = None):
        self.spec = spec
        self.threads = threads
        self._pid: int | None = None
        self._models: dict[str, Any] = {}

    def _get(self, name: str) -> Any:
        if self._pid != os.getpid():  # a forked child: build its own models, never use the parent's
            self._models = {}
            self._pid = os.getpid()
        if name not in self._models:
            self._models[name] = self._load(name)
        return self._models[name]

    def _load(self, name: str) -> Any:
        spec = self.spec
        if name == "bundle":
            # files were verified by open_bundle in the parent; re-hashing per worker is skipped
            return Bundle.load(spec.path, device=spec.device, verify=False)
        if name == "generator":
            return self._get("bundle").generator
        if name == "decomposer":
            return self._get("bundle").decomposer
        if name == "onnx_generator":
            from ..export.onnx import OnnxGenerator

            gen = OnnxGenerator(spec.path / GENERATOR_ONNX, device=spec.device, threads=self.threads)
            if gen.w_dim != spec.w_dim:
                raise BundleError(f"{gen.path}: takes w of size {gen.w_dim}, the generator has {spec.w_dim}")
            if len(gen.input_names) > 1:
                raise BundleError(f"{gen.path}: exported with noise inputs; the Datasets need noise='const'")
            return gen
        if name == "onnx_view":
            from ..export.onnx import OnnxViewHead

            if VIEW_HEAD_ONNX not in spec.files:
                raise BundleError(f"{spec.path / VIEW_HEAD_ONNX}: backend='onnx' needs it for yaw estimation; run `facedis-aug export {spec.path}`")
            return OnnxViewHead(spec.path / VIEW_HEAD_ONNX, device=spec.device, threads=self.threads)
        if name == "encoder":
            spec.require_encoder()
            return self._get("bundle").encoder
        if name == "onnx_encoder":
            from ..export.encoder_onnx import OnnxEncoder

            spec.require_encoder()
            return OnnxEncoder(spec.path / ENCODER_ONNX, device=spec.device, threads=self.threads)
        raise KeyError(name)

    @torch.no_grad()
    def mapping(self, z: Tensor) -> Tensor:
        """z [B, z_dim] -> w [B, w_dim] on the CPU (always PyTorch: the mapping is a few small matmuls)."""
        G = self._get("generator")
        return G.mapping(z.to(self.spec.device)).float().cpu()

    @torch.no_grad()
    def render(self, w: Tensor) -> Tensor:
        """w [B, d] -> images [B, 3, R, R] in ~[-1, 1], float32 CPU, fixed (const) noise."""
        if w.ndim != 2 or w.shape[1] != self.spec.w_dim:
            raise ValueError(f"w must be [B, {self.spec.w_dim}], got {tuple(w.shape)}")
        if self.spec.backend == "onnx":
            return self._get("onnx_generator")(w)
        G = self._get("generator")
        return G.synthesis(w.to(self.spec.device, torch.float32), noise_mode="const").float().cpu()

    @torch.no_grad()
    def view(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] in [-1, 1] -> [B, 3] (yaw, pitch, roll) degrees, CPU."""
        from ..export.onnx import ViewHead
        from ..ops.resize import resize_square

        if self.spec.backend == "onnx":
            return self._get("onnx_view")(images)
        head = ViewHead(self._get("decomposer"), self.spec.view_mirror_average)
        x = resize_square(images.float(), head.image_size).to(self.spec.device)
        return head(x).float().cpu()

    def encode(self, images: Tensor, refine_steps: int | None = None) -> tuple[Tensor, Tensor]:
        """images [B, 3, H, W] in [-1, 1] -> (w [B, d], L1 of the encoder's own reconstruction [B]), CPU.

        The encoder runs in the backend; the refinement (refine_steps Adam steps, default the
        bundle's) and the L1 always run in PyTorch, because they need the generator's gradients."""
        from ..encode.model import fit_images, refine_latent

        enc = self.spec.require_encoder()
        steps = enc["refine_steps"] if refine_steps is None else int(refine_steps)
        x = images.float().to(self.spec.device)
        with torch.no_grad():
            if self.spec.backend == "onnx":
                w0 = self._get("onnx_encoder")(x.cpu()).to(self.spec.device)
            else:
                w0 = self._get("encoder")(fit_images(x, enc["image_size"]))
        G = self._get("generator")
        w, l1_start, _ = refine_latent(G, x, w0, steps, enc["refine_lr"], enc["refine_reg"], enc["w_std"].to(x.device))
        return w.float().cpu(), l1_start.float().cpu()

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "threads": self.threads, "_pid": None, "_models": {}}

    def __repr__(self) -> str:
        return f"Engine({str(self.spec.path)!r}, backend={self.spec.backend!r})"


def identity_seed(seed: int, k: int) -> int:
    """A 63-bit seed for identity k of a dataset seeded with `seed` (distinct streams per pair)."""
    return derive_seed(seed, k, 0x1D)


def identity_z(seed: int, ks: np.ndarray | list[int], z_dim: int) -> Tensor:
    """z [len(ks), z_dim] for identities ks: each from its own seeded torch.Generator."""
    return seeds_to_z((identity_seed(seed, int(k)) for k in ks), z_dim)


def to_unit_range(images: Tensor) -> Tensor:
    """Model range [-1, 1] -> Dataset range [0, 1], clamped."""
    return ((images + 1.0) * 0.5).clamp_(0.0, 1.0)
