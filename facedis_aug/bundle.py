"""The bundle: the folder a user ships to the training cluster.

    bundle/
      generator.safetensors     copy of the stage-1 gan.safetensors
      decomposer.safetensors    copy of the stage-2 decomposer (pose of real images, pictures)
      directions.safetensors    named unit directions [d] (the univariate semantics, local_000, ...)
      directions.json           per direction: kind, sigma, R^2, calibration / ||u_p||, cluster, region
      generator.onnx            optional, listed in the manifest when present
      view_head.onnx            optional: the decomposer's view head
      encoder.safetensors       optional: image -> w encoder, for turning real images
      encoder.onnx              optional: the encoder in ONNX
      manifest.json             format_version, sha256 + size of every file, the recipe, created date,
                                and a copy of the yaw calibration and its measured reach (from directions.json)

    b = Bundle.load("bundle/")
    w = b.sample_w(8, seed=0)
    imgs = b.generate(w=b.edit(w, "yaw", b.yaw_to_s(45.0)))
    w = b.encode(photos * 2 - 1)                    # real images [B, 3, H, W] in [-1, 1] -> w (needs the encoder)

`Bundle.load` refuses a bundle with a missing file, a hash mismatch or an unknown format version
with one `BundleError` that names the file. Models load lazily on first use. The optional files may
be absent: bundles written before the encoder existed load, and only `encoder` / `encode` say
that the file is missing.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from .ops.io import atomic_write, load_safetensors, path_inside, read_json, sha256_file, write_json
from .ops.linear import edit_latent, s_to_value, value_to_s
from .ops.seeds import seeds_to_z

FORMAT = "facedis_aug.bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# the one table of bundle file names (the export stage, the augment engine and the CLI read it here)
GENERATOR, DECOMPOSER = "generator.safetensors", "decomposer.safetensors"
DIRECTIONS, DIRECTIONS_JSON = "directions.safetensors", "directions.json"
ENCODER = "encoder.safetensors"
GENERATOR_ONNX, VIEW_HEAD_ONNX, ENCODER_ONNX = "generator.onnx", "view_head.onnx", "encoder.onnx"
REQUIRED_FILES = (GENERATOR, DECOMPOSER, DIRECTIONS, DIRECTIONS_JSON)
OPTIONAL_FILES = (GENERATOR_ONNX, VIEW_HEAD_ONNX, ENCODER, ENCODER_ONNX)


class BundleError(ValueError):
    """A bundle folder is incomplete, corrupt or of an unknown format. The message names the file."""


def _copy_atomic(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def _recipe_dict(recipe: Any) -> dict[str, Any] | None:
    if recipe is None or isinstance(recipe, Mapping):
        return dict(recipe) if recipe is not None else None
    if hasattr(recipe, "to_dict"):
        return recipe.to_dict()
    raise TypeError(f"recipe must be a Recipe, a dict or None, got {type(recipe).__name__}")


def write_bundle(
    sources: Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    recipe: Any = None,
) -> Path:
    """Assemble a bundle in `out_dir` from `sources` (bundle file name -> path, every REQUIRED_FILES
    entry and any OPTIONAL_FILES) and return its path. Where a run folder keeps these files is the
    pipeline's business (the export stage gathers them). Files are copied atomically; the manifest is
    written last, so a crash never leaves a folder that verifies.
    """
    out_dir = Path(out_dir)
    if not isinstance(sources, Mapping):
        raise TypeError(f"sources must map bundle file names to paths, got {type(sources).__name__}")
    sources = {k: Path(v) for k, v in sources.items()}
    unknown = sorted(set(sources) - set(REQUIRED_FILES) - set(OPTIONAL_FILES))
    if unknown:
        raise BundleError(f"{unknown[0]}: not a bundle file; expected {', '.join(REQUIRED_FILES + OPTIONAL_FILES)}")
    for name in REQUIRED_FILES:
        if name not in sources:
            raise BundleError(f"{name}: no source given for this required bundle file")
    for name, src in sources.items():
        if not src.is_file():
            raise BundleError(f"{name}: source file {src} not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = out_dir / MANIFEST
    if stale.exists():
        stale.unlink()  # the old manifest must not vouch for half-copied files
    files = {}
    for name, src in sources.items():
        dst = out_dir / name
        if src.resolve() != dst.resolve():
            _copy_atomic(src, dst)
        files[name] = {"sha256": sha256_file(dst), "bytes": dst.stat().st_size}
    from ._version import __version__

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "facedis_aug_version": __version__,
        "files": files,
        "recipe": _recipe_dict(recipe),
    }
    yaw = _yaw_summary(out_dir / DIRECTIONS_JSON)
    if yaw is not None:
        manifest["yaw"] = yaw
    write_json(out_dir / MANIFEST, manifest)
    return out_dir


def _reach(entry: Mapping[str, Any]) -> tuple[float, float] | None:
    r = entry.get("reach")
    if r is None:
        return None
    lo, hi = (float(x) for x in r)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= 0.0 <= hi):
        raise BundleError(f"{DIRECTIONS_JSON}: reach must be [lo <= 0, hi >= 0] degrees, got {list(r)}")
    return lo, hi


def _knots(entry: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    """A direction's monotone calibration curve (directions.reach), checked: None when it has none."""
    k = entry.get("knots")
    if k is None:
        return None
    try:
        ks, kv = [float(x) for x in k["s"]], [float(x) for x in k["value"]]
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(f"{DIRECTIONS_JSON}: knots must be {{'s': [...], 'value': [...]}} numbers, got {k!r}") from err
    ds, dv = [b - a for a, b in zip(ks, ks[1:])], [b - a for a, b in zip(kv, kv[1:])]
    if (len(ks) != len(kv) or len(ks) < 2 or not all(map(math.isfinite, ks + kv)) or not all(d > 0 for d in ds)
            or not (all(d > 0 for d in dv) or all(d < 0 for d in dv))):
        raise BundleError(f"{DIRECTIONS_JSON}: knots must be >= 2 finite points, s ascending, values strictly monotone; got {k!r}")
    return ks, kv


def _yaw_summary(directions_json: Path) -> dict[str, Any] | None:
    """The manifest's copy of the yaw calibration and reach (DESIGN.md): what a user reads first."""
    e = read_json(directions_json).get("directions", {}).get("yaw")
    if not e or "units_per_sigma" not in e:
        return None
    out = {k: e[k] for k in ("intercept", "units_per_sigma", "calibration", "knots", "reach") if k in e}
    out.setdefault("calibration", "least squares over samples (Eq. 3)")
    return out


def _load_generator(path: Path, device: str) -> Any:
    from .gan.networks import load_generator

    return load_generator(path, device=device)


def _load_decomposer(path: Path, device: str) -> Any:
    from .decompose.model import load_decomposer

    return load_decomposer(path, device=device)


def _load_encoder(path: Path, device: str) -> Any:
    from .encode.model import load_encoder

    return load_encoder(path, device=device)


def _generate(G: Any, **kwargs: Any) -> Tensor:
    from .gan.networks import generate

    return generate(G, **kwargs)


class Bundle:
    """A verified bundle folder. Use `Bundle.load(path)`."""

    def __init__(self, path: Path, manifest: dict[str, Any], info: dict[str, Any], directions: dict[str, Tensor], device: str):
        self.path = path
        self.manifest = manifest
        self.info = info  # directions.json
        self._directions = directions
        self.device = device
        self._G: Any = None
        self._D: Any = None
        self._E: Any = None

    # ------------------------------------------------------------------ loading and verification
    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", verify: bool = True) -> "Bundle":
        """Read and verify a bundle folder. verify=False skips the sha256 pass (files must still exist)."""
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"{path}: not a bundle folder (no such directory)")
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"{mpath}: manifest missing; this folder is not a (complete) bundle")
        try:
            manifest = read_json(mpath)
        except (ValueError, OSError) as e:
            raise BundleError(f"{mpath}: unreadable manifest ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BundleError(f"{mpath}: not a facedis_aug bundle manifest (format {manifest.get('format') if isinstance(manifest, dict) else None!r})")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(f"{mpath}: bundle format_version {version!r} is not supported (this facedis_aug reads {FORMAT_VERSION})")
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise BundleError(f"{mpath}: manifest has no 'files' table")
        for name in REQUIRED_FILES:
            if name not in files:
                raise BundleError(f"{path / name}: required file not listed in the manifest")
        for name, entry in files.items():
            try:
                fpath = path_inside(path, name)
            except ValueError as e:
                raise BundleError(f"{mpath}: manifest entry refused: {e}") from None
            if not fpath.is_file():
                raise BundleError(f"{fpath}: listed in the manifest but missing")
            if verify:
                want = entry.get("sha256") if isinstance(entry, dict) else None
                if want is None or sha256_file(fpath) != want:
                    raise BundleError(f"{fpath}: sha256 does not match the manifest (file changed or corrupt)")
        info, directions = _read_directions(path)
        try:
            _reach(info["directions"].get("yaw", {}))
            _knots(info["directions"].get("yaw", {}))
        except BundleError as e:
            raise BundleError(f"{path / DIRECTIONS_JSON}: {str(e).split(': ', 1)[1]}") from None
        return cls(path, manifest, info, directions, device)

    @property
    def recipe(self) -> dict[str, Any] | None:
        return self.manifest.get("recipe")

    @property
    def files(self) -> dict[str, Path]:
        return {name: self.path / name for name in self.manifest["files"]}

    @property
    def onnx_path(self) -> Path | None:
        """Path of generator.onnx when the bundle has one."""
        return self.path / GENERATOR_ONNX if GENERATOR_ONNX in self.manifest["files"] else None

    @property
    def generator(self) -> Any:
        if self._G is None:
            self._G = _load_generator(self.path / GENERATOR, self.device)
        return self._G

    @property
    def decomposer(self) -> Any:
        if self._D is None:
            self._D = _load_decomposer(self.path / DECOMPOSER, self.device)
        return self._D

    @property
    def has_encoder(self) -> bool:
        return ENCODER in self.manifest["files"]

    @property
    def encoder(self) -> Any:
        """The image -> w encoder (facedis_aug.encode.model.LatentEncoder); BundleError when the bundle has none."""
        if not self.has_encoder:
            raise BundleError(
                f"{self.path / ENCODER}: this bundle has no encoder (written before the encode stage, or without it); "
                "run the 'encode' stage and export again to turn real images"
            )
        if self._E is None:
            self._E = _load_encoder(self.path / ENCODER, self.device)
        return self._E

    def encode(self, images: Tensor, refine_steps: int | None = None) -> Tensor:
        """Latents w [B, d] of images [B, 3, H, W] in [-1, 1] (resized as needed): the encoder's answer
        refined by `refine_steps` Adam steps on the image L1 (None = the encoder's default, 0 = none)."""
        from .encode.model import encode_images

        w, _ = encode_images(self.encoder, self.generator, images.to(self.device), refine_steps)
        return w

    # ------------------------------------------------------------------ directions
    @property
    def directions(self) -> dict[str, Tensor]:
        """Name -> unit direction [d] (float32, CPU). A copy: editing it does not change the bundle."""
        return {k: v.clone() for k, v in self._directions.items()}

    def kind(self, name: str) -> str:
        return self._entry(name).get("kind", "univariate")

    def sigma(self, name: str) -> float:
        """sigma_w of Eq. 4: the std of w.v over samples of F(z)."""
        return float(self._entry(name)["sigma"])

    def _entry(self, name: str) -> dict[str, Any]:
        if name not in self._directions:
            raise KeyError(f"no direction named {name!r}; the bundle has {', '.join(self._directions)}")
        return self.info["directions"][name]

    def edit(self, w: Tensor, name: str, s: float | Tensor) -> Tensor:
        """Eq. 4 along the named direction with its stored sigma: w [B, d] -> w' [B, d]; s in units of sigma."""
        sigma = self.sigma(name)  # raises KeyError naming the known directions
        return edit_latent(w, self._directions[name].to(w.device, w.dtype), s, sigma)

    def value_to_s(self, name: str, value: float | Tensor) -> float | Tensor:
        """Edit scale s that moves a univariate semantic to `value` (its units, e.g. degrees): through the
        measured monotone curve where the directions stage stored one ('knots', yaw), else the linear model of
        Eq. 2, s = (value - intercept) / units_per_sigma."""
        e = self._calibration(name)
        return value_to_s(value, e["intercept"], e["units_per_sigma"], _knots(e))

    def s_to_value(self, name: str, s: float | Tensor) -> float | Tensor:
        """The semantic value (its units) that edit(w, name, s) produces (inverse of `value_to_s`)."""
        e = self._calibration(name)
        return s_to_value(s, e["intercept"], e["units_per_sigma"], _knots(e))

    def calibration_knots(self, name: str) -> tuple[list[float], list[float]] | None:
        """(s, value) knots of the named direction's measured calibration curve, None when it has the line only."""
        return _knots(self._calibration(name))

    def calibrations(self) -> dict[str, tuple[float, float]]:
        """Name -> (intercept, units_per_sigma) of every univariate semantic with a usable (finite,
        non-zero) calibration: the linear model of Eq. 2 that value_to_s / s_to_value use."""
        out = {}
        for name, e in self.info["directions"].items():
            if name in self._directions and e.get("kind", "univariate") == "univariate" and "units_per_sigma" in e:
                k = float(e["units_per_sigma"])
                if k != 0.0 and math.isfinite(k):
                    out[name] = (float(e.get("intercept", 0.0)), k)
        return out

    def yaw_to_s(self, deg: float | Tensor) -> float | Tensor:
        """s for a target yaw in degrees (positive = face turned to the image's left)."""
        return self.value_to_s("yaw", deg)

    def s_to_yaw(self, s: float | Tensor) -> float | Tensor:
        return self.s_to_value("yaw", s)

    @property
    def mirror_average(self) -> bool:
        """Whether the directions were fitted and calibrated with the decomposer reading each face and its
        mirror (directions.json "reading"); the bundle's view head then reads real images the same way."""
        return self.info.get("reading") == "mirror-average"

    @property
    def yaw_reach(self) -> tuple[float, float] | None:
        """(lo, hi) degrees: the yaws an edit along v_yaw delivers within 15% of the calibration (measured by
        the directions stage, directions.reach); None for bundles written before it was measured."""
        return _reach(self.info["directions"].get("yaw", {}))

    def _calibration(self, name: str) -> dict[str, Any]:
        e = self._entry(name)
        if e.get("kind") != "univariate" or "units_per_sigma" not in e:
            raise KeyError(f"{name!r} has no calibration (only univariate semantics do)")
        return e

    # ------------------------------------------------------------------ sampling
    def sample_w(self, n: int, seed: int = 0) -> Tensor:
        """w = F(z) [n, d] for the seeds seed, seed + 1, ..., seed + n - 1 (same faces as generate(seeds=...))."""
        G = self.generator
        z = seeds_to_z(range(int(seed), int(seed) + int(n)), int(G.z_dim))
        with torch.no_grad():
            return G.mapping(z.to(self.device))

    def generate(
        self,
        w: Tensor | None = None,
        seeds: Sequence[int] | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ) -> Tensor:
        """Images [B, 3, R, R] in [-1, 1] from w [B, d] or from seeds (one face per seed)."""
        with torch.no_grad():
            return _generate(self.generator, w=w, seeds=seeds, truncation_psi=truncation_psi, noise_mode=noise_mode)

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, directions={len(self._directions)}, onnx={self.onnx_path is not None}, encoder={self.has_encoder})"


def _read_directions(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    jpath, tpath = path / DIRECTIONS_JSON, path / DIRECTIONS
    try:
        info = read_json(jpath)
    except (ValueError, OSError) as e:
        raise BundleError(f"{jpath}: unreadable ({e})") from None
    if not isinstance(info, dict) or not isinstance(info.get("directions"), dict):
        raise BundleError(f"{jpath}: no 'directions' table")
    try:
        tensors, _ = load_safetensors(tpath)
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise BundleError(f"{tpath}: unreadable ({type(e).__name__}: {e})") from None
    directions = {}
    for name, v in tensors.items():
        entry = info["directions"].get(name)
        if not isinstance(entry, dict) or "sigma" not in entry:
            raise BundleError(f"{jpath}: no entry with sigma for direction {name!r}")
        if v.ndim != 1 or abs(float(v.float().norm()) - 1.0) > 1e-3:
            raise BundleError(f"{tpath}: direction {name!r} is not a unit vector [d]")
        directions[name] = v.float()
    dims = {v.shape[0] for v in directions.values()}
    if len(dims) > 1:
        raise BundleError(f"{tpath}: directions of different sizes {sorted(dims)}")
    # keep the order of directions.json (univariate semantics first, then local_000, ...)
    order = [n for n in info["directions"] if n in directions]
    return info, {n: directions[n] for n in order}


def draw_strips(
    bundle_path: str | os.PathLike,
    seed: int,
    out_dir: str | os.PathLike,
    names: Sequence[str] | None = None,
    s_values: Sequence[float] | None = None,
    device: str = "cpu",
) -> list[Path]:
    """Draw manipulation strips of a bundle for one seed: `strips_univariate_seed<seed>.png` and
    `strips_local_seed<seed>.png` (or one `strips_seed<seed>.png` when `names` is given). Returns the paths."""
    from .directions.pictures import DEFAULT_S, strips_png

    bundle = Bundle.load(bundle_path, device=device)
    w = bundle.sample_w(1, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dirs = bundle.directions
    if names is not None:
        missing = [n for n in names if n not in dirs]
        if missing:
            raise KeyError(f"unknown direction(s) {missing}; the bundle has {sorted(dirs)}")
        groups = {f"strips_seed{seed}.png": list(names)}
    else:
        groups = {
            f"strips_univariate_seed{seed}.png": [n for n in dirs if bundle.kind(n) == "univariate"],
            f"strips_local_seed{seed}.png": [n for n in dirs if bundle.kind(n) == "local"],
        }
    paths = []
    for fname, group in groups.items():
        if group:
            sig = {n: bundle.sigma(n) for n in group}
            paths.append(strips_png(bundle, w, {n: dirs[n] for n in group}, sig, out_dir / fname,
                                    DEFAULT_S if s_values is None else s_values))
    return paths
