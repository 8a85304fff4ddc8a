"""Can a bundle check its own yaw scale without labels? The view cycle on generated faces, against the truth.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_cycle_scale --runs RUN [RUN ...] --table2 NAME [NAME ...]

A bundle's reach is confirmed only where its decomposer reads generated turns within 15% of their true size, and
that scale differs from one decomposer or generator to the next (0.79-1.13 over the six bundles of the twelfth
session). The label-free check tried here: decompose N generated faces, re-render each face layer turned by a known
yaw t over its own background (t = +-10, 20, 30 degrees), and read the turn back with the same view head; the cycle
slope is the least-squares slope of (read - read of the unturned re-render) on t. If the view head's scale error on
generated faces were the same on its own renders, the cycle slope would follow the truth ratio (the decomposer's
calibration over the evaluation regressor's, both in degrees per sigma along v_yaw, from the run's bench_table2 JSON,
paired in the order given) and could correct the calibration without labels.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmarks.common import RESULTS, write_results
from facedis_aug.decompose.model import load_decomposer, renderer_for
from facedis_aug.directions.semantics import sample_w
from facedis_aug.gan.networks import load_generator

TURNS = (-30.0, -20.0, -10.0, 10.0, 20.0, 30.0)


def _slope(x: torch.Tensor, y: torch.Tensor) -> float:
    """Least-squares slope through the origin of y on x."""
    return float((x * y).sum() / (x * x).sum())


@torch.no_grad()
def cycle_slope(run: Path, n: int, seed: int) -> dict[str, float]:
    """The view head's cycle slope on n faces of run's generator (all turns, and |t| <= 10 only)."""
    G = load_generator(run / "gan" / "gan.safetensors").eval()
    dec = load_decomposer(run / "decompose" / "decomposer.safetensors").eval()
    if G.resolution != dec.cfg.image_size:
        raise ValueError(f"{run}: generator {G.resolution} px, decomposer {dec.cfg.image_size} px")
    renderer = renderer_for(dec.cfg)
    img = G.synthesis(sample_w(G, n, seed), noise_mode="const").clamp(-1, 1)
    d = dec(img)
    base = dec.estimate_view(dec.reconstruct(renderer, d).image.clamp(-1, 1))["yaw"]
    xs, ys = [], []
    for t in TURNS:
        view = d.view.clone()
        view[:, 1] = view[:, 1] + t
        read = dec.estimate_view(dec.reconstruct(renderer, d, view=view).image.clamp(-1, 1))["yaw"]
        xs.append(torch.full_like(read, t))
        ys.append(read - base)
    x, y = torch.cat(xs), torch.cat(ys)
    small = x.abs() <= 10
    return {"cycle_slope": _slope(x, y), "cycle_slope_10": _slope(x[small], y[small]),
            "reread_gap_deg": float((base - d.view[:, 1]).abs().mean())}


def truth_ratio(table2: str) -> tuple[float, float, float]:
    """(decomposer calibration, regressor's, their ratio) along v_yaw, degrees per sigma, from a bench_table2 JSON."""
    edit = json.loads((RESULTS / f"{table2}.json").read_text())["edit_response"]["yaw"]
    dec, true = float(edit["bundle_units_per_sigma"]), float(edit["true_per_sigma"])
    return dec, true, dec / true


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders (gan/ and decompose/ inside)")
    ap.add_argument("--table2", nargs="+", required=True, help="bench_table2 result names, one per run, same order")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--name", default="cycle_scale")
    args = ap.parse_args(argv)
    if len(args.runs) != len(args.table2):
        raise SystemExit(f"--runs has {len(args.runs)} folders, --table2 {len(args.table2)} names: pair them one to one")
    rows = []
    for run, t2 in zip(args.runs, args.table2):
        dec, true, ratio = truth_ratio(t2)
        rows.append({"run": run, "table2": t2, "calibration_decomposer": round(dec, 3), "calibration_regressor": round(true, 3),
                     "truth_ratio": round(ratio, 3), **{k: round(v, 3) for k, v in cycle_slope(Path(run), args.samples, args.seed).items()}})
    ratios = torch.tensor([r["truth_ratio"] for r in rows])
    cycles = torch.tensor([r["cycle_slope"] for r in rows])
    corr = float(torch.corrcoef(torch.stack([ratios, cycles]))[0, 1]) if len(rows) > 2 else float("nan")
    notes = (f"{args.samples} generated faces per run (seed {args.seed}), turns {TURNS} degrees added to each face's own "
             "yaw, read back by the same view head; cycle_slope: least-squares slope of the read turn on the asked one "
             "(1 = its own renders read to scale); reread_gap_deg: mean |yaw of the unturned re-render - yaw of the "
             f"face|. truth_ratio: decomposer / regressor calibration along v_yaw. Pearson r(truth_ratio, cycle_slope) "
             f"over the runs: {corr:.2f}.")
    write_results(args.name, rows, "View-cycle scale on generated faces against the bundle's true scale", notes=notes,
                  extra={"corr_truth_ratio_cycle_slope": corr})


if __name__ == "__main__":
    main()
