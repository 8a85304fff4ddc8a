"""Stage 4: ONNX export and the bundle folder.

    run/export/
      generator.onnx, view_head.onnx     (export.onnx: true)
      encoder.onnx                       (export.onnx and export.encoder, when the encode stage ran)
      export_report.json                 exporter, opset, max |ONNX - PyTorch| per model
      bundle/                            what the user ships (see facedis_aug.bundle)

`export_bundle_onnx(bundle_dir)` does the same for an existing bundle (`facedis-aug export BUNDLE`).
Each ONNX file is compared with PyTorch right after export; a difference above
`export.tolerance` is an error, never a warning.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from ..bundle import (DECOMPOSER, DIRECTIONS_JSON, ENCODER, ENCODER_ONNX, GENERATOR, GENERATOR_ONNX, MANIFEST, VIEW_HEAD_ONNX, Bundle,
                      BundleError, write_bundle)
from ..ops.io import atomic_write, read_json, sha256_file, write_json
from .config import ExportConfig
from .onnx import export_generator, export_view_head, max_abs_difference



def add_to_bundle(bundle_dir: str | os.PathLike, files: Mapping[str, str | os.PathLike]) -> Path:
    """Copy `files` (bundle name -> source path) into a verified bundle and re-hash the manifest.

    The bundle is verified first (a corrupt bundle is not extended); the manifest is rewritten
    atomically, last, so an interrupted call leaves the old manifest, which then fails on the
    changed files rather than vouching for them.
    """
    bundle_dir = Path(bundle_dir)
    Bundle.load(bundle_dir)  # raises BundleError on a missing / corrupt / wrong-version bundle
    manifest = read_json(bundle_dir / MANIFEST)
    for name, src in files.items():
        if "/" in name or name == MANIFEST:
            raise BundleError(f"{name}: not a valid bundle file name")
        src, dst = Path(src), bundle_dir / name
        if not src.is_file():
            raise BundleError(f"{name}: source file {src} not found")
        if src.resolve() != dst.resolve():
            with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
        manifest["files"][name] = {"sha256": sha256_file(dst), "bytes": dst.stat().st_size}
    write_json(bundle_dir / MANIFEST, manifest)
    return bundle_dir


def export_models(G: Any, decomposer: Any, out_dir: str | os.PathLike, cfg: ExportConfig, encoder: Any = None,
                  mirror_average: bool = False) -> dict[str, Any]:
    """Export generator (and view head, and encoder when given) ONNX files into out_dir and check them against PyTorch.
    mirror_average: the view head reads the mirrored image too (export.onnx.ViewHead), as the bundle's directions did.

    Returns a report: exporter, opset, noise, files, max_abs_diff per model, seconds per model.
    Raises ValueError when a difference exceeds cfg.tolerance.
    """
    out_dir = Path(out_dir)
    report: dict[str, Any] = {"exporter": cfg.exporter, "opset": cfg.opset, "noise": cfg.noise, "check_batch": cfg.check_batch,
                              "tolerance": cfg.tolerance, "files": {}, "max_abs_diff": {}, "seconds": {}}  # fmt: skip
    jobs = [(GENERATOR_ONNX, G, lambda p: export_generator(G, p, noise=cfg.noise, exporter=cfg.exporter, opset=cfg.opset))]
    if cfg.view_head:
        jobs.append((VIEW_HEAD_ONNX, decomposer, lambda p: export_view_head(decomposer, p, exporter=cfg.exporter, opset=cfg.opset,
                                                                          mirror_average=mirror_average)))
    if encoder is not None and cfg.encoder:
        from .encoder_onnx import export_encoder

        jobs.append((ENCODER_ONNX, encoder, lambda p: export_encoder(encoder, p, exporter=cfg.exporter, opset=cfg.opset)))
    for name, module, fn in jobs:
        t0 = time.time()
        path = fn(out_dir / name)
        if module is encoder:
            from .encoder_onnx import encoder_max_abs_difference

            diff = encoder_max_abs_difference(module, path, batch=cfg.check_batch)
        else:
            diff = max_abs_difference(module, path, batch=cfg.check_batch, noise=cfg.noise if module is G else "const",
                                      mirror_average=mirror_average)
        report["files"][name] = str(path)
        report["max_abs_diff"][name] = diff
        report["seconds"][name] = round(time.time() - t0, 2)
        if not diff <= cfg.tolerance:
            raise ValueError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} > export.tolerance {cfg.tolerance:g}")
    return report


def export_bundle_onnx(bundle_dir: str | os.PathLike, cfg: ExportConfig | None = None) -> dict[str, Any]:
    """Add generator.onnx (+ view_head.onnx, + encoder.onnx when the bundle has an encoder) to an
    existing bundle, checked, manifest re-hashed."""
    cfg = cfg or ExportConfig()
    bundle = Bundle.load(bundle_dir, device="cpu")
    encoder = bundle.encoder if cfg.encoder and bundle.has_encoder else None
    report = export_models(bundle.generator, bundle.decomposer if cfg.view_head else None, bundle.path, cfg, encoder,
                           mirror_average=bundle.mirror_average)
    add_to_bundle(bundle.path, {name: bundle.path / name for name in report["files"]})
    write_json(bundle.path / "export_report.json", report)
    return report


def run_export_stage(sources: Mapping[str, str | os.PathLike], cfg: ExportConfig, out_dir: str | os.PathLike,
                     recipe: Any = None) -> dict[str, Any]:
    """The export stage from files: write out_dir/bundle/ from `sources` (bundle file name -> path:
    the generator, decomposer and directions, and the encoder when there is one), with the ONNX files
    when cfg.onnx is on; `recipe` (a dict) goes into the manifest."""
    from ..decompose.model import load_decomposer
    from ..encode.model import load_encoder
    from ..gan.networks import load_generator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = {k: Path(v) for k, v in sources.items()}
    outputs: dict[str, Any] = {}
    extra: dict[str, Path] = {}
    if cfg.onnx:
        # exported on the CPU: the graph is device-independent and the check runs on ONNX's CPU provider
        with torch.no_grad():
            G = load_generator(sources[GENERATOR], device="cpu")
            dec = load_decomposer(sources[DECOMPOSER], device="cpu") if cfg.view_head else None
            E = load_encoder(sources[ENCODER], device="cpu") if ENCODER in sources and cfg.encoder else None
            reading = read_json(sources[DIRECTIONS_JSON]).get("reading") if DIRECTIONS_JSON in sources else None
            report = export_models(G, dec, out, cfg, E, mirror_average=reading == "mirror-average")
        write_json(out / "export_report.json", report)
        extra = {name: Path(p) for name, p in report["files"].items()}
        outputs.update({f"max_abs_diff_{k.split('.')[0]}": v for k, v in report["max_abs_diff"].items()})
        outputs["export_report"] = "export_report.json"
    bundle_dir = out / "bundle"
    write_bundle({**sources, **extra}, bundle_dir, recipe=recipe)
    Bundle.load(bundle_dir)  # the folder we hand over must verify
    outputs["bundle"] = "bundle"
    outputs["bundle_files"] = sorted(read_json(bundle_dir / MANIFEST)["files"])
    return outputs
