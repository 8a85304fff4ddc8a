"""A tiny bundle with random networks and planted directions, for tests, benchmarks and demos.

    path = make_tiny_bundle(tmp_path / "bundle", onnx=True)

The networks are untrained (random weights): images are texture, not faces, and the view head's
yaw is meaningless but deterministic. The directions are planted: random unit vectors with the
sigma measured on the generator's own w, and a yaw calibration of `deg_per_sigma` degrees per
unit of s with intercept 0, so tests know the exact answer (w'.v_yaw = yaw / deg_per_sigma * sigma).
With `encoder=True` it also holds a random image -> w encoder (a tiny timm backbone, head scaled so
that different images give different w) whose max_l1 comes from the generator's own samples.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .ops.io import save_safetensors, write_json
from .ops.linear import projection_std

LIGHTS = ("ambient_r", "diffuse_r", "light_x")  # a few light directions for the lighting option


def tiny_generator(resolution: int = 32, w_dim: int = 32, channels: int = 32, seed: int = 0) -> Any:
    from .gan.networks import Generator, GeneratorConfig

    torch.manual_seed(seed)
    G = Generator(GeneratorConfig(resolution=resolution, z_dim=w_dim, w_dim=w_dim, mapping_layers=2,
                                  channel_base=channels * resolution, channel_max=channels))  # fmt: skip
    with torch.no_grad():
        for m in G.synthesis.modules():  # untrained G has zero noise strength; make noise matter
            if hasattr(m, "noise_strength"):
                m.noise_strength.fill_(0.3)
    return G.eval().requires_grad_(False)


def tiny_decomposer(image_size: int = 32, seed: int = 0, rot_range: float = 90.0) -> Any:
    from .decompose.config import DecomposeConfig
    from .decompose.model import Decomposer

    torch.manual_seed(seed)
    cfg = DecomposeConfig(image_size=image_size, channels=8, bottleneck=16, head_channels=8, conf_channels=8, conf_bottleneck=16,
                          rot_range=rot_range, zero_init_heads=False)  # random heads: a yaw that varies from image to image
    return Decomposer(cfg).eval().requires_grad_(False)


def tiny_encoder(G: Any, backbone: str = "test_efficientnet", seed: int = 0, refine_steps: int = 3) -> tuple[Any, float]:
    """(random LatentEncoder for G, max_l1 measured on 64 of G's samples as the encode stage does)."""
    from .encode.config import EncodeConfig
    from .encode.model import LatentEncoder, fit_images, image_l1
    from .encode.train import generator_samples, w_statistics

    cfg = EncodeConfig(backbone=backbone, refine_steps=refine_steps)
    mean, std = w_statistics(G, seed, n=512)
    torch.manual_seed(seed)
    E = LatentEncoder(cfg, mean, std, int(G.synthesis.resolution))
    torch.nn.init.normal_(E.head.weight, std=0.5 / E.head.in_features**0.5)  # image-dependent answers
    E = E.eval().requires_grad_(False)
    x, _ = generator_samples(G, 64, seed + 3)
    with torch.no_grad():
        l1 = image_l1(G, E(fit_images(x, E.image_size)), x)
    return E, float(torch.quantile(l1.double(), cfg.face_quantile)) * cfg.face_margin


def make_tiny_bundle(
    out_dir: str | os.PathLike,
    resolution: int = 32,
    w_dim: int = 32,
    channels: int = 32,
    deg_per_sigma: float = 30.0,
    rot_range: float = 90.0,
    onnx: bool = False,
    exporter: str = "torchscript",
    seed: int = 0,
    encoder: bool = False,
    max_l1: float | None = None,
    yaw_reach: tuple[float, float] | None = None,
    yaw_knots: tuple[list[float], list[float]] | None = None,
) -> Path:
    """Write a verified bundle (plus generator.onnx / view_head.onnx with `onnx`) to out_dir;
    `encoder`: add a random encoder (and encoder.onnx with `onnx`), max_l1 overriding its measured bound;
    `yaw_reach`: a planted measured reach (lo, hi) degrees for the yaw (None: a bundle without one);
    `yaw_knots`: a planted calibration curve (s knots, degree knots) for the yaw (None: the line alone)."""
    from .decompose.model import save_decomposer
    from .bundle import write_bundle
    from .gan.networks import generator_metadata

    out_dir = Path(out_dir)
    G = tiny_generator(resolution, w_dim, channels, seed)
    dec = tiny_decomposer(32 if resolution <= 64 else 64, seed, rot_range)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        w = G.mapping(torch.randn(256, G.z_dim, generator=g))
    names = ("yaw", "pitch", *LIGHTS, "local_000")
    vecs = torch.linalg.qr(torch.randn(w_dim, len(names), generator=g))[0].T  # orthonormal rows
    entries: dict[str, Any] = {}
    for name, v in zip(names, vecs):
        e: dict[str, Any] = {"kind": "local" if name.startswith("local") else "univariate", "sigma": projection_std(w, v)}
        if e["kind"] == "univariate":
            e.update(intercept=0.0, units_per_sigma=deg_per_sigma if name in ("yaw", "pitch") else 1.0, r2=1.0)
        if name == "yaw" and yaw_reach is not None:
            e.update(calibration="edits", reach=[float(yaw_reach[0]), float(yaw_reach[1])])
        if name == "yaw" and yaw_knots is not None:
            e.update(knots={"s": [float(x) for x in yaw_knots[0]], "value": [float(x) for x in yaw_knots[1]]})
        entries[name] = e
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        save_safetensors(t / "g.safetensors", G.state_dict(), generator_metadata(G))
        save_decomposer(dec, t / "d.safetensors")
        save_safetensors(t / "dirs.safetensors", dict(zip(names, vecs.contiguous())))
        write_json(t / "dirs.json", {"directions": entries})
        sources = {"generator.safetensors": t / "g.safetensors", "decomposer.safetensors": t / "d.safetensors",
                   "directions.safetensors": t / "dirs.safetensors", "directions.json": t / "dirs.json"}  # fmt: skip
        if encoder:
            from .encode.model import save_encoder

            E, measured = tiny_encoder(G, seed=seed)
            save_encoder(E, t / "e.safetensors", extra={"max_l1": measured if max_l1 is None else float(max_l1)})
            sources["encoder.safetensors"] = t / "e.safetensors"
        write_bundle(sources, out_dir, recipe={"decompose": {"rot_range": rot_range}, "note": "tiny random test bundle"})
    if onnx:
        from .export.config import ExportConfig
        from .export.stage import export_bundle_onnx

        export_bundle_onnx(out_dir, ExportConfig(exporter=exporter))  # type: ignore[arg-type]
    return out_dir
