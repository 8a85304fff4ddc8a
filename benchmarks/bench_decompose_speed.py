"""Stage 2 speed: time per training step at 64 px and the renderer's share of it.

    OMP_NUM_THREADS=2 python -m benchmarks.bench_decompose_speed [--steps 4] [--device cpu]

A step = decomposer forward, the renderer (own + flipped, and with mutual reconstruction the swapped
pair too; a symmetric face layer is drawn once for itself and its mirror), losses, backward and the Adam update. The renderer's time is measured
separately on the same shapes (forward + backward of `Renderer.reconstruct`, the depth maps of a
decomposer at init) and reported as a share of the step. Rows: unsup3d's widths at batch 16, and the
narrow widths proposed for the tiny CPU recipe. On a shared CPU the wall time depends on what else
runs; CPU time (process) is given beside it and the load average is written in the notes.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import torch

from benchmarks.common import write_results

from facedis_aug.decompose import DecomposeConfig, Decomposer, decomposition_loss
from facedis_aug.decompose.model import renderer_for

from facedis_aug.recipe import load_recipe

# the narrow widths of the tiny CPU recipe (read from it, so this table follows the recipe)
_TINY_CFG = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml").decompose
TINY = {k: getattr(_TINY_CFG, k) for k in ("channels", "bottleneck", "head_channels", "conf_channels", "conf_bottleneck")}


def _time(fn, steps: int, device: str) -> tuple[float, float]:
    """Mean (wall, process) seconds of fn() over `steps` calls."""
    wall = cpu = 0.0
    for _ in range(steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return wall / steps, cpu / steps


def measure(name: str, cfg: DecomposeConfig, steps: int, device: str) -> dict:
    torch.manual_seed(0)
    model = Decomposer(cfg).to(device)
    renderer = renderer_for(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    x = torch.rand(cfg.batch, 3, cfg.image_size, cfg.image_size, device=device) * 2 - 1

    def step():
        out = decomposition_loss(cfg, model, renderer, x)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()

    with torch.no_grad():
        d = model(x)
    n_render = 2 if cfg.mutual else 1  # calls per step: own and, with mutual reconstruction, the swapped maps
    # a symmetric face layer is its own mirror: the flip branch is drawn with it once (B images per call), else
    # own + flipped (2B), as the loss does (losses._reconstruction_loss)
    mirrored = not cfg.symmetric

    def render():
        for _ in range(n_render):
            maps = {}
            for k, flip in (("albedo", 3), ("depth", 2), ("alpha", 2), ("light", None), ("view", None), ("background", None)):
                t = getattr(d, k)
                if t is not None:
                    if mirrored:
                        t = torch.cat([t, t if flip is None else t.flip(flip)])
                    maps[k] = t.clone().requires_grad_()
            out = model.reconstruct(renderer, dataclasses.replace(d, **maps))
            (out.image * out.mask[:, None]).sum().backward()

    step()  # warm-up
    render()
    step_wall, step_cpu = _time(step, steps, device)
    render_wall, render_cpu = _time(render, steps, device)
    return {
        "setting": name,
        "batch": cfg.batch,
        "px": cfg.image_size,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "mutual": cfg.mutual,
        "step_s": step_wall,
        "step_cpu_s": step_cpu,
        "render_fwd_bwd_s": render_wall,
        "render_share": render_wall / step_wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tiny-batch", type=int, default=16)
    ap.add_argument("--name", default="decompose_speed")
    ap.add_argument("--recipe-only", action="store_true", help="only the rows of the tiny recipe's whole decompose section")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the recipe's two rows; the fastest is kept")
    args = ap.parse_args()
    rows = [] if args.recipe_only else [
        measure("unsup3d widths", DecomposeConfig(batch=16, perceptual_weight=0.0), args.steps, args.device),
        measure("unsup3d widths, no mutual", DecomposeConfig(batch=16, perceptual_weight=0.0, mutual=False), args.steps, args.device),
        measure("tiny widths " + ",".join(f"{k}={v}" for k, v in TINY.items()),
                DecomposeConfig(batch=args.tiny_batch, perceptual_weight=0.0, **TINY), args.steps, args.device),
        measure(f"tiny recipe as it runs ({_TINY_CFG.image_size} px)",
                DecomposeConfig(batch=args.tiny_batch, perceptual_weight=0.0, image_size=_TINY_CFG.image_size, **TINY),
                args.steps, args.device),
    ]
    recipe = dataclasses.replace(_TINY_CFG, perceptual_weight=0.0)
    pair = [
        # every decompose setting of the recipe (layers, head surface, mutual pairs, view cycle): what the main job runs
        ("tiny recipe's whole decompose section", recipe),
        # the same with the face layer not symmetrised, so the flip branch is drawn apart: the renderer's work of
        # every step before the symmetric layer was drawn once (2026-12-07, twelfth session)
        ("the same, flip branch drawn apart (symmetric: false)", dataclasses.replace(recipe, symmetric=False)),
    ]
    # interleaved rounds (A B A B ...), the fastest of each kept: on a shared CPU one round alone can differ by 1.5x
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, cfg in pair:
            r = measure(name, cfg, args.steps, args.device)
            if name not in best or r["step_s"] < best[name]["step_s"]:
                best[name] = r
    rows += [best[name] for name, _ in pair]
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("n/a",)
    notes = (
        f"Mean of {args.steps} steps after one warm-up (the recipe's two rows: the fastest of {args.rounds} interleaved "
        f"rounds), device {args.device}, {torch.get_num_threads()} torch threads. "
        "No perceptual loss (no local VGG16 weights). The renderer column is its forward + backward on the same "
        "shapes (the model's own image model; B images per call for a symmetric face layer, whose flip branch is the "
        "same render, else 2B; 2 calls with mutual reconstruction), measured separately. "
        f"The CPU is shared with other jobs: 1/5/15-min load average at the end {tuple(round(x, 2) for x in load)}; "
        "wall times on a loaded machine overstate the cost, step_cpu_s is the process CPU time."
    )
    write_results(args.name, rows, "Stage 2 (decompose) time per training step", notes=notes)


if __name__ == "__main__":
    main()
