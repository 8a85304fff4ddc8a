"""`facedis-aug`: commands on a bundle folder.

    facedis-aug info BUNDLE                  verify the bundle and print what it holds
    facedis-aug export BUNDLE [--exporter torchscript]   add generator.onnx + view_head.onnx (+ encoder.onnx)
    facedis-aug draw BUNDLE --seed 3 [--out DIR]         manipulation strips as PNGs
    facedis-aug synthesize --bundle B --out OUT --identities N --per-identity K [--format folder|rec|wds]
                [--yaw LO HI] [--size 112 --crop arcface|casia|none] [--from-real DIR]   a synthetic set on disk

Errors (a bad bundle, a missing package) are one line on stderr and exit code 2;
FACEDIS_DEBUG=1 shows the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facedis-aug", description="Work with a facedis-aug bundle (the folder the export stage writes).")
    sub = p.add_subparsers(dest="command", required=True, metavar="{info,export,draw,synthesize}")
    info = sub.add_parser("info", help="verify a bundle and print its contents")
    info.add_argument("bundle")
    ex = sub.add_parser("export", help="add generator.onnx and view_head.onnx to a bundle (checked against PyTorch)")
    ex.add_argument("bundle")
    ex.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                    help="torch ONNX exporter (dynamo: default, ~15 s per model on a small CPU; torchscript: legacy, fast)")  # fmt: skip
    ex.add_argument("--opset", type=int, default=18)
    ex.add_argument("--noise", choices=["const", "input", "none"], default="const")
    ex.add_argument("--no-view-head", action="store_true", help="export the generator only")
    dr = sub.add_parser("draw", help="draw manipulation strips for one seed")
    dr.add_argument("bundle")
    dr.add_argument("--seed", type=int, required=True)
    dr.add_argument("--out", default=None, help="output folder (default: BUNDLE/../strips)")
    sy = sub.add_parser("synthesize", help="write a synthetic face set to disk (image folder, .rec/.idx, WebDataset shards)")
    sy.add_argument("--bundle", required=True)
    sy.add_argument("--out", required=True, help="output folder; re-running the same command resumes it")
    sy.add_argument("--identities", type=int, default=None, help="new identities (not with --from-real)")
    sy.add_argument("--per-identity", type=int, default=8, help="images per identity")
    sy.add_argument("--yaw", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                    help="uniform yaw range in degrees (default: the bundle's measured reach; +-its view range for bundles without one)")
    sy.add_argument("--format", choices=["folder", "rec", "wds"], default="folder")
    sy.add_argument("--crop", choices=["arcface", "casia", "none"], default="none",
                    help="arcface 112x112, casia 112x96, none: a square of --size (default the bundle's resolution)")
    sy.add_argument("--size", type=int, default=None, help="image height in pixels (see --crop)")
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--lighting", type=float, default=0.0, help="std of random light edits (0: none)")
    sy.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    sy.add_argument("--batch", type=int, default=64, help="images per render call and per resumable chunk")
    sy.add_argument("--shard-size", type=int, default=1000, help="images per WebDataset shard")
    sy.add_argument("--from-real", default=None, metavar="DIR",
                    help="write PoseRebalanced's synthetic complement of this real set (folder, .zip or .rec) instead")
    return p


def _info(path: str) -> str:
    from .bundle import ENCODER_ONNX, GENERATOR_ONNX, VIEW_HEAD_ONNX, Bundle

    b = Bundle.load(path)
    m = b.manifest
    lines = [f"bundle {b.path}  (format {m['format']} v{m['format_version']}, facedis_aug {m.get('facedis_aug_version')}, created {m.get('created')})"]
    for name, entry in m["files"].items():
        lines.append(f"  {name:<26} {entry['bytes'] / 1e6:8.2f} MB  sha256 {entry['sha256'][:12]}")
    kinds: dict[str, list[str]] = {}
    for name in b.directions:
        kinds.setdefault(b.kind(name), []).append(name)
    for kind, names in kinds.items():
        lines.append(f"  {kind} directions ({len(names)}): {', '.join(names)}")
    if "yaw" in b.directions:
        try:
            how = "read off edits" if b.info["directions"]["yaw"].get("calibration") == "edits" else "least squares over samples"
            knots = b.calibration_knots("yaw")
            if knots is not None:
                lines.append(f"  yaw calibration ({how}, a measured curve): s {knots[0][0]:+.1f}..{knots[0][-1]:+.1f} turns the face "
                             f"{knots[1][0]:+.1f}..{knots[1][-1]:+.1f} degrees")
            else:
                lines.append(f"  yaw calibration ({how}): s = 1 turns the face by {float(b.s_to_yaw(1.0)) - float(b.s_to_yaw(0.0)):+.1f} degrees")
        except KeyError:
            lines.append("  yaw calibration: missing")
        reach = b.yaw_reach
        lines.append(f"  yaw reach (delivered within 15%): [{reach[0]:+.1f}, {reach[1]:+.1f}] degrees" if reach is not None
                     else "  yaw reach: not measured (a bundle from before it was; held to the view range)")
    has = lambda name: "yes" if name in m["files"] else "no"  # noqa: E731
    lines.append(f"  ONNX: generator {has(GENERATOR_ONNX)}, view head {has(VIEW_HEAD_ONNX)}, encoder {has(ENCODER_ONNX)}")
    lines.append("  encoder (real images): " + (f"yes, max_l1 {b.encoder.meta.get('max_l1', float('nan')):.3f}" if b.has_encoder else "no"))
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> Any:
    if args.command == "info":
        print(_info(args.bundle))
    elif args.command == "export":
        from .export.config import ExportConfig
        from .export.stage import export_bundle_onnx

        cfg = ExportConfig(exporter=args.exporter, opset=args.opset, noise=args.noise, view_head=not args.no_view_head)
        report = export_bundle_onnx(args.bundle, cfg)
        for name, diff in report["max_abs_diff"].items():
            print(f"{name}: max |ONNX Runtime - PyTorch| = {diff:.3g} ({report['seconds'][name]} s)")
        print(f"bundle {args.bundle}: manifest updated")
    elif args.command == "draw":
        from .bundle import draw_strips

        out = Path(args.out) if args.out else Path(args.bundle).resolve().parent / "strips"
        for p in draw_strips(args.bundle, args.seed, out):
            print(p)
    elif args.command == "synthesize":
        print(_synthesize(args))
    return 0


def _synthesize(args: argparse.Namespace) -> str:
    from .augment.synthesize import synthesize
    from .augment.synthetic import SyntheticPoseFaces

    offset = 0
    if args.from_real:
        from .augment.engine import open_bundle
        from .augment.rebalance import PoseRebalanced
        from .data.stream import real_dataset

        if args.identities is not None:
            raise ValueError("--identities and --from-real exclude each other (the real set decides the count)")
        spec = open_bundle(args.bundle, args.backend)
        real = PoseRebalanced(real_dataset(args.from_real, spec.resolution), spec, images_per_identity=args.per_identity,
                              lighting=args.lighting, seed=args.seed, backend=args.backend, batch_size=args.batch, progress=True)
        if real.synthetic is None:
            return f"{args.from_real}: already balanced over the bins; nothing to write"
        ds, offset = real.synthetic, real.num_real_classes
    else:
        if args.identities is None:
            raise ValueError("give --identities N (or --from-real DIR)")
        ds = SyntheticPoseFaces(args.bundle, args.identities, args.per_identity, yaw=tuple(args.yaw) if args.yaw else "uniform",
                                lighting=args.lighting, seed=args.seed, backend=args.backend, batch_size=args.batch)
    r = synthesize(ds, args.out, fmt=args.format, crop=args.crop, size=args.size, chunk=args.batch,
                   shard_size=args.shard_size, label_offset=offset)
    return (f"{r['images']} images ({r['written']} written now, {r['size_hw'][0]}x{r['size_hw'][1]}, {r['format']}) in {r['out']}"
            + (f", {r['images_per_s']} images/s" if r["images_per_s"] else ""))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, KeyError, FileNotFoundError, ImportError, RuntimeError) as e:
        if os.environ.get("FACEDIS_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
