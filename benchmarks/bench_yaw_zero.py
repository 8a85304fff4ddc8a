"""Where is 'frontal' along v_yaw? The bundle's view head, the evaluation regressor and the image's own mirror
symmetry, side by side.

Near frontal the bundle's view head and the regressor disagree by 4-5 degrees on the main job's edits
(table2_tiny_v12.md), so the bundle's promise fails there whatever its slope. A third witness needs no
reader: a frontal face is (nearly) its own mirror image. For faces edited along v_yaw over the bundle's
edit grid this measures, per position, both readers' mean yaw (each reading a face and its mirror, as the
bundle reads) and the mean mirror asymmetry |x - flip(x)| of the image's centre; per face, the position of
least asymmetry (parabola through the three lowest) and what each reader says there. On world faces (one
identity and light swept in yaw) the same asymmetry minimum is checked against the truth (0): how far light,
hair and background pull it.

    python -m benchmarks.bench_yaw_zero --bundle RUN/export/bundle [--faces 128] --name yaw_zero_NAME
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import Tensor

from benchmarks.bench_table2 import bundle_regressor, world_settings
from benchmarks.common import write_results
from benchmarks.pose_regressor import predict
from facedis_aug.bundle import Bundle
from facedis_aug.data.synthetic import SyntheticWorld
from facedis_aug.directions.reach import least_position as least
from facedis_aug.directions.reach import mirror_asymmetry as asymmetry
from facedis_aug.directions.semantics import SEMANTICS, measure_semantics
from facedis_aug.ops.linear import edit_latent

WORLD_YAWS = np.arange(-24.0, 25.0, 3.0)


def _readers(bundle: Bundle, regressor, img: Tensor) -> tuple[np.ndarray, np.ndarray]:
    own = measure_semantics(bundle.decomposer, img, True)[:, SEMANTICS.index("yaw")].double().numpy()
    y, y_m = predict(regressor, img)["yaw"], predict(regressor, img.flip(-1))["yaw"]
    return own, ((y - y_m) / 2).double().numpy()


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--faces", type=int, default=128, help="generated faces edited along v_yaw")
    ap.add_argument("--world", type=int, default=48, help="world identities swept in yaw")
    ap.add_argument("--seed", type=int, default=100000, help="first seed of the sampled w (bench_table2's)")
    ap.add_argument("--regressor", default=None)
    ap.add_argument("--name", default="yaw_zero")
    args = ap.parse_args()
    b = Bundle.load(args.bundle)
    _, regressor, warn = bundle_regressor(b, args.regressor)
    ws, _ = world_settings(b.recipe or {})
    res = int(b.generator.resolution)

    world = SyntheticWorld(resolution=res, seed=ws["world_seed"], num_identities=ws["num_identities"], supersample=ws["supersample"])
    asym_w, own0, reg0 = [], [], []
    mid = len(WORLD_YAWS) // 2
    for i in range(args.world):
        img = world.render(world.identity_params(i, list(WORLD_YAWS), index=i))["image"] * 2 - 1
        asym_w.append(asymmetry(img).double().numpy())
        o, r = _readers(b, regressor, img)
        own0.append(o[mid])
        reg0.append(r[mid])
    wmin = least(WORLD_YAWS, np.stack(asym_w, 1))

    e = b.info["directions"]["yaw"]
    v, sigma = b.directions["yaw"], b.sigma("yaw")
    pos = np.asarray((e.get("edit_check") or {}).get("curve", {}).get("s")
                     or [float(e.get("proj_mean", 0.0)) / sigma + o for o in range(-10, 11)], dtype=np.float64)
    w = b.sample_w(args.faces, seed=args.seed)
    own, reg, asym = [], [], []
    for s in pos:
        img = b.generate(w=edit_latent(w, v.to(w.device), float(s), sigma)).clamp(-1, 1)
        o, r = _readers(b, regressor, img)
        own.append(o)
        reg.append(r)
        asym.append(asymmetry(img).double().numpy())
    own, reg, asym = np.stack(own), np.stack(reg), np.stack(asym)
    gmin = least(pos, asym)
    at = lambda X: np.array([np.interp(gmin[n], pos, X[:, n]) for n in range(X.shape[1])])  # noqa: E731
    rows = [{"position s": round(float(s), 3), "asked (bundle calibration)": round(float(b.s_to_yaw(float(s))), 2),
             "view head": round(float(own[k].mean()), 2), "regressor": round(float(reg[k].mean()), 2),
             "asymmetry": round(float(asym[k].mean()), 4)} for k, s in enumerate(pos)]  # fmt: skip

    def crossing(m: np.ndarray) -> float | None:
        i = np.flatnonzero(np.sign(m[:-1]) != np.sign(m[1:]))
        if len(i) != 1:
            return None
        j = int(i[0])
        return float(pos[j] + (pos[j + 1] - pos[j]) * m[j] / (m[j] - m[j + 1]))

    summary = {
        "world_asymmetry_least_yaw_mean": float(wmin.mean()), "world_asymmetry_least_yaw_sd": float(wmin.std()),
        "world_view_head_at_true_0": float(np.mean(own0)), "world_regressor_at_true_0": float(np.mean(reg0)),
        "gen_asymmetry_least_s_mean": float(gmin.mean()), "gen_asymmetry_least_s_sd": float(gmin.std()),
        "gen_view_head_at_least_asymmetry": float(at(own).mean()), "gen_regressor_at_least_asymmetry": float(at(reg).mean()),
        "gen_calibration_at_least_asymmetry": float(b.s_to_yaw(float(gmin.mean()))),
        "gen_view_head_zero_s": crossing(own.mean(1)), "gen_regressor_zero_s": crossing(reg.mean(1)),
        "gen_asymmetry_least_s_of_mean": float(least(pos, asym.mean(1)[:, None])[0]),
    }  # fmt: skip
    notes = (f"Bundle {args.bundle}: {args.faces} faces (w seeds {args.seed}..) edited along v_yaw to each position s of its edit "
             f"grid; readers mirror-averaged; asymmetry = mean |x - flip(x)| over the central {res - 2 * round(res * 0.1875)} px. "
             f"World: {args.world} identities, each with one light and image code, rendered at yaw {WORLD_YAWS[0]:g}..{WORLD_YAWS[-1]:g} "
             f"step 3; least asymmetry per identity by a parabola. Summary: "
             + ", ".join(f"{k} {v:+.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())
             + (f". {warn}" if warn else ""))
    write_results(args.name, rows, "Where frontal is along v_yaw: view head, regressor and mirror symmetry", notes=notes,
                  extra={"summary": summary})


if __name__ == "__main__":
    main()
