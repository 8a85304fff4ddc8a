"""Stage 2 on the harness (renderer-made faces of known view over a still background): what limits the
learned yaw. Trains the tiny decomposer (fixed sigma, flat background, 32 px, batch 16) under a few
settings and reports the yaw slope / r on 256 held-out harness views at several step counts, plus the
correlation of the learned light direction with the true yaw (which the true light does not have).

    OMP_NUM_THREADS=1 python -m benchmarks.bench_harness [--steps 300 500 800]

Arms: the light fixed to the canonical face (unsup3d) or to the camera; "true light" replaces the light
head's output by the harness's own light (an oracle, to show which head steals the turn); relief
residual 0.01 vs 0.02.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


from benchmarks.common import write_results
from facedis_aug.decompose import DecomposeConfig, Decomposer, Renderer, decomposition_loss
from facedis_aug.decompose.harness import HARNESS_GEOMETRY, ViewHarness, view_scores

TINY = dict(image_size=32, channels=16, bottleneck=64, head_channels=32, conf_channels=8, conf_bottleneck=32,
            batch=16, lr=5e-4, perceptual_weight=0.0, mutual=False, yaw_aug=False, confidence="fixed",
            **HARNESS_GEOMETRY)
ARMS = {
    "canonical light, relief 0.02": dict(light_frame="canonical"),
    "canonical light, TRUE light (oracle)": dict(light_frame="canonical", oracle_light=True),
    "camera light, relief 0.02 (default)": dict(light_frame="camera"),
    "camera light, relief 0.01": dict(light_frame="camera", depth_residual=0.01),
}


def run(arm: dict, steps: list[int], seed: int = 0) -> list[dict]:
    arm = dict(arm)
    oracle = arm.pop("oracle_light", False)
    torch.manual_seed(seed)
    cfg = DecomposeConfig(**{**TINY, **arm})
    h = ViewHarness(32, identities=32, seed=seed, background=0.0, light_frame=cfg.light_frame)
    model, renderer = Decomposer(cfg), Renderer(32, cfg.fov)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    xe, te = h.batch(10**6, 256)
    truth_light: dict = {}
    if oracle:
        forward = model.forward

        def with_true_light(x):
            d = forward(x)
            d.light = truth_light["light"]
            return d
        model.forward = with_true_light
    rows, t0 = [], time.perf_counter()
    for step in range(1, max(steps) + 1):
        x, t = h.batch(step - 1, cfg.batch)
        truth_light["light"] = t["light"]
        out = decomposition_loss(cfg, model, renderer, x)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()
        if step in steps:
            model.eval()
            with torch.no_grad():
                s = view_scores(model.estimate_view(xe)["yaw"], te["yaw"])
                dx = model.light_from_raw(model.net_light(xe))[:, 6]
                corr = float(torch.corrcoef(torch.stack([dx, te["yaw"]]))[0, 1])
            model.train()
            rows.append({"steps": step, "yaw slope": round(s["slope"], 3), "yaw r": round(s["r"], 4),
                         "learned light dx vs true yaw (corr)": round(corr, 3), "L1": round(out.terms["l1"], 4),
                         "s": round(time.perf_counter() - t0, 1)})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[300, 500, 800])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--name", default="harness")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args(argv)
    rows = [{"arm": name, **r} for name in args.arms for r in run(ARMS[name], sorted(args.steps))]
    notes = ("Harness: 32 identities of the synthetic world (true canonical albedo, depth, skin mask) drawn by the "
             "project's renderer at yaw U[-60, 60], pitch U[-10, 10], random RGB light, over a flat grey still "
             "background; the harness's light follows the arm's light frame. Scores on 256 held-out views. "
             "The oracle row's light dx is the light head's own (unused) output.")
    write_results(args.name, rows, "Stage 2 on the harness: yaw learned under different light frames and reliefs",
                  notes=notes, out_dir=args.out_dir)
    return rows


if __name__ == "__main__":
    main()
