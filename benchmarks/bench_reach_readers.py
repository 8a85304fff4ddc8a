"""Who reads the turn right? Faces edited along v_yaw, read by the regressor, the bundle's view head and MediaPipe.

The bundle's calibration comes from its own view head; bench_table2 judges the delivered yaw with the
evaluation-only pose regressor, trained on clean world renders. On generated faces the two disagree by 2-3x on
some bundles. A third reader, MediaPipe's face mesh (evaluation only, in a Python of its own: see
benchmarks/mediapipe_yaw.py; good to about +-45 degrees), reads the same edited faces. Per edit scale s (Eq. 4
along v_yaw, the bundle's sigma): the yaw the calibration asks for, and each reader's mean over the faces it read.

    python -m benchmarks.bench_reach_readers --bundle RUN/export/bundle [--mediapipe-python MP] --name reach_readers
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.bench_table2 import REACH_S, bundle_regressor
from benchmarks.bench_view_real import mediapipe_yaw
from benchmarks.common import write_results
from benchmarks.pose_regressor import predict
from facedis_aug.bundle import Bundle
from facedis_aug.directions.semantics import SEMANTICS, measure_semantics
from facedis_aug.ops.linear import edit_latent


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--faces", type=int, default=64)
    ap.add_argument("--seed", type=int, default=300000)
    ap.add_argument("--regressor", default=None, help="pose regressor weights (default: cached / trained as bench_table2)")
    ap.add_argument("--mediapipe-python", default=None, help="a Python with mediapipe==0.10.21 (skipped without)")
    ap.add_argument("--name", default="reach_readers")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    bundle = Bundle.load(args.bundle)
    reg_path, regressor, warn = bundle_regressor(bundle, args.regressor)
    v, sigma = bundle.directions["yaw"], bundle.sigma("yaw")
    w = bundle.sample_w(args.faces, seed=args.seed)
    s0 = float((w @ v).mean()) / sigma  # the faces' own mean position along v_yaw, in sigma
    rows = []
    for s in REACH_S:
        img = bundle.generate(w=edit_latent(w, v.to(w.device), s, sigma)).clamp(-1, 1)
        row = {"s": s, "asked (calibration)": round(float(bundle.s_to_yaw(s0 + s)), 1),
               "regressor": round(float(predict(regressor, img)["yaw"].mean()), 1),
               "view head": round(float(measure_semantics(bundle.decomposer, img)[:, SEMANTICS.index("yaw")].mean()), 1)}
        if args.mediapipe_python:
            mp = mediapipe_yaw(args.mediapipe_python, to_uint8(img.cpu()))
            ok = ~np.isnan(mp)
            row["MediaPipe"] = round(float(mp[ok].mean()), 1) if ok.any() else float("nan")
            row["MediaPipe faces"] = f"{int(ok.sum())}/{len(mp)}"
        rows.append(row)

    def slope(key: str) -> float:
        ss = np.array([r["s"] for r in rows])
        ys = np.array([r[key] for r in rows], dtype=np.float64)
        ok = ~np.isnan(ys) & (np.abs(ss) <= 2)  # near the faces' own yaw, where every reader is on its home ground
        return float(np.polyfit(ss[ok], ys[ok], 1)[0]) if ok.sum() >= 2 else float("nan")

    readers = ["asked (calibration)", "regressor", "view head"] + (["MediaPipe"] if args.mediapipe_python else [])
    slopes = {k: round(slope(k), 2) for k in readers}
    notes = (warn + f"Bundle `{args.bundle}`; {args.faces} generated faces (seeds from {args.seed}), each edited by Eq. 4 along "
             f"v_yaw by s sigma_w (the faces' own mean is at s = {s0:+.2f}); 'asked': the bundle's calibration at the edited "
             f"position. Readers: the evaluation-only pose regressor `{reg_path.name}`, the bundle's own view head, and "
             + ("MediaPipe's face mesh (mean over the faces it found; upscaled to 256 px by mediapipe_yaw.py). " if args.mediapipe_python
                else "(MediaPipe not run: --mediapipe-python not given). ")
             + f"Degrees per sigma over s = -2..2: {', '.join(f'{k} {v:+.2f}' for k, v in slopes.items())}. "
             f"Took {time.perf_counter() - t0:.0f} s.")
    write_results(args.name, rows, "Who reads the turn right? v_yaw edits read three ways", notes=notes,
                  extra={"bundle": args.bundle, "per_sigma_near_frontal": slopes, "s0": s0}, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
