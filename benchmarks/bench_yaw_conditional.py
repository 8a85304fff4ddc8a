"""Conditional yaw edits: does v_yaw turn heads further with the light directions projected out?

InterFaceGAN's conditional manipulation (Shen et al. 2020): remove from v_yaw its components along other
attributes' directions, so that an edit moves the yaw without them. Here the bundle's light directions
(light_x alone, and all 8 light semantics) are projected out of v_yaw; each direction's edit (Eq. 4, its own
sigma_w) is read by the evaluation-only pose regressor, beside the oracle direction (least squares of the
regressor's yaw over w). Evaluation only: nothing here is used by the library.

    python -m benchmarks.bench_yaw_conditional --bundle RUN/export/bundle --name yaw_conditional_tiny
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmarks.bench_table2 import REACH_S, bundle_regressor, measure, oracle_direction, reach_curve
from benchmarks.common import write_results
from facedis_aug.bundle import Bundle
from facedis_aug.ops.linear import projection_std

LIGHTS = ("ambient_r", "ambient_g", "ambient_b", "diffuse_r", "diffuse_g", "diffuse_b", "light_x", "light_y")


def project_out(v: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
    """v [d] minus its part in the span of `others` (each [d]), renormalised to unit length."""
    q, _ = torch.linalg.qr(torch.stack([o / o.norm() for o in others], 1))
    v = v - q @ (q.T @ v)
    return v / v.norm()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--samples", type=int, default=2000, help="generated faces for the oracle and the correlations")
    ap.add_argument("--faces", type=int, default=64, help="faces per edit scale")
    ap.add_argument("--seed", type=int, default=100000)
    ap.add_argument("--regressor", default=None, help="pose regressor weights (default: cached / trained as bench_table2)")
    ap.add_argument("--name", default="yaw_conditional")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    bundle = Bundle.load(args.bundle)
    reg_path, regressor, warn = bundle_regressor(bundle, args.regressor)
    m = measure(bundle, regressor, args.samples, args.seed, 100)
    w, true_yaw = m["w"], m["true_yaw"]
    oracle, _, r2 = oracle_direction(w, true_yaw)
    dirs = {k: v.float() for k, v in bundle.directions.items()}
    v_yaw = dirs["yaw"] / dirs["yaw"].norm()
    arms = {
        "v_yaw (the bundle's)": v_yaw,
        "v_yaw, light_x projected out": project_out(v_yaw, [dirs["light_x"]]),
        "v_yaw, all 8 light directions projected out": project_out(v_yaw, [dirs[k] for k in LIGHTS if k in dirs]),
        "oracle (evaluation only)": oracle,
    }
    rows = []
    for name, v in arms.items():
        proj = (w - w.mean(0)) @ v
        curve, _ = reach_curve(bundle, regressor, v, projection_std(w, v), args.faces, args.seed)
        rows.append({"direction": name, "cos to oracle": round(float(v @ oracle), 3),
                     "r with true yaw": round(float(torch.corrcoef(torch.stack([proj, true_yaw]))[0, 1]), 3),
                     "cos to light_x": round(float(v @ dirs["light_x"] / dirs["light_x"].norm()), 3),
                     **{f"s={s:+g}": round(c, 1) for s, c in zip(REACH_S, curve)}})
    notes = (warn + f"Bundle `{args.bundle}`. Mean true yaw (regressor `{reg_path.name}`) of {args.faces} faces edited by "
             f"Eq. 4 along each unit direction by s sigma_w (columns s=...); the oracle's R^2 {r2:.2f} over {args.samples} "
             f"faces. 'r with true yaw': Pearson r of w.v with the regressor's yaw over those faces. Took "
             f"{time.perf_counter() - t0:.0f} s.")
    write_results(args.name, rows, "Conditional yaw edits: v_yaw with the light directions projected out", notes=notes,
                  extra={"bundle": str(args.bundle), "oracle_r2": r2}, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
