"""Does the view head read the light as yaw? World faces at a fixed true yaw, the light swept left to right.

The same held-out world faces (identity, background, colours) are rendered at true yaw 0 and 30 (pitch and roll
0) with the light's horizontal direction light_x set to -1 .. +1 (the world's convention: > 0 lights from the
image's right); the decomposer's mean yaw and light_x per setting are reported. A view head that ignores the
light gives the same yaw across a row.

    python -m benchmarks.bench_view_light --decomposer RUN/decompose/decomposer.safetensors --name view_light_tiny
"""
from __future__ import annotations

import argparse
import dataclasses

import torch

from benchmarks.common import write_results
from facedis_aug.data.synthetic import SyntheticFaces
from facedis_aug.decompose.model import load_decomposer
from facedis_aug.directions.semantics import SEMANTICS, measure_semantics
from facedis_aug.ops.resize import resize_square

LIGHT_X = (-1.0, -0.5, 0.0, 0.5, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decomposer", required=True)
    ap.add_argument("--faces", type=int, default=128)
    ap.add_argument("--yaws", type=float, nargs="+", default=[0.0, 30.0])
    ap.add_argument("--resolution", type=int, default=32, help="world render size (the training data's)")
    ap.add_argument("--name", default="view_light")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    dec = load_decomposer(args.decomposer)
    world = SyntheticFaces(1, args.resolution, seed=0, num_identities=2000).world
    base = world.sample_params(torch.arange(20_000_000, 20_000_000 + args.faces), pose="uniform")
    iy, ilx = SEMANTICS.index("yaw"), SEMANTICS.index("light_x")
    rows = []
    for yaw in args.yaws:
        row = {"true yaw": yaw}
        for lx in LIGHT_X:
            p = dataclasses.replace(base, yaw=torch.full_like(base.yaw, yaw), pitch=torch.zeros_like(base.pitch),
                                    roll=torch.zeros_like(base.roll),
                                    light_dir=torch.stack([torch.full_like(base.yaw, lx), base.light_dir[:, 1]], -1))
            img = world.render(p)["image"].float().clamp(0, 1) * 2 - 1
            img = resize_square(img, dec.cfg.image_size)
            with torch.no_grad():
                s = measure_semantics(dec, img)
            row[f"yaw @ light_x {lx:+g}"] = round(float(s[:, iy].mean()), 2)
            row[f"read light_x @ {lx:+g}"] = round(float(s[:, ilx].mean()), 3)
        row["yaw swing (left - right light)"] = round(row[f"yaw @ light_x {LIGHT_X[0]:+g}"] - row[f"yaw @ light_x {LIGHT_X[-1]:+g}"], 2)
        rows.append(row)
    write_results(args.name, rows, "View head vs light: mean decomposer yaw of world faces at a fixed yaw, light swept",
                  notes=f"Decomposer `{args.decomposer}`; {args.faces} held-out world faces per cell, rendered at "
                        f"{args.resolution} px; pitch and roll 0; light_y, intensities and everything else as drawn.",
                  extra={"decomposer": args.decomposer}, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
