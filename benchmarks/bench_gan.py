"""Stage 1 speed: training s/step (amortised over the lazy regularisers) and generator images/s.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_gan [--quick] [--device cpu|cuda]
    OMP_NUM_THREADS=1 python -m benchmarks.bench_gan --recipe recipes/tiny.yaml --precisions fp32 bf16 --name NAME [key=value ...]

With --recipe, the recipe's own gan config is timed once per precision (and a 1024^2 matmul's GFLOP/s
in each dtype beside it): whether bf16 pays depends on the CPU (emulated without AVX512_BF16/AMX).
It also counts the step's matmul/convolution FLOPs and how close to that matmul speed the step runs:
near the matmul's speed, kernel work has little left to give and only fewer FLOPs per image help.

Each configuration trains a few steps through the real `train_gan` (random-disc data) with
R1 every 2 and path length every 3 steps, so that one short run holds a plain step, an R1 step
and a path-length step; the amortised cost at the intervals (stylegan2-ada's R1 16, PL 4; with
--recipe the recipe's own) is
    t_plain + (t_r1 - t_plain) / r1_interval + (t_pl - t_plain) / pl_interval.
Step 0 (warm-up) is discarded. The CPU may be shared: the load average is written with the table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from benchmarks.common import write_results
from facedis_aug.gan.config import GanConfig
from facedis_aug.gan.networks import generate, load_generator
from facedis_aug.gan.train import train_gan

# name -> (config, training steps incl. warm-up, inference batch)
CONFIGS = {
    "tiny-32 (64-128 ch, z=w=128)": (GanConfig(resolution=32, z_dim=128, w_dim=128, channel_base=2048, channel_max=128, batch=16, decorr_samples=256), 8, 64),
    "32 (128 ch, z=w=512)": (GanConfig(resolution=32, channel_base=4096, channel_max=128, batch=16, decorr_samples=1024), 8, 64),
    "64 (64-128 ch, z=w=256)": (GanConfig(resolution=64, z_dim=256, w_dim=256, channel_base=4096, channel_max=128, batch=16, decorr_samples=512), 4, 32),
    "128 paper CASIA (128-512 ch)": (GanConfig(resolution=128, channel_base=16384, channel_max=512, batch=8), 4, 8),
    "256 paper FFHQ (64-512 ch)": (GanConfig(resolution=256, channel_base=16384, channel_max=512, batch=4), 4, 4),
}


def discs(batch: int, res: int):
    def make(start: int, rank: int, world: int):
        step = start
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing="ij")
        while True:
            g = torch.Generator().manual_seed(step)
            c, r = torch.rand(batch, 2, generator=g) - 0.5, torch.rand(batch, generator=g) * 0.3 + 0.2
            m = (((xx - c[:, 0, None, None]) ** 2 + (yy - c[:, 1, None, None]) ** 2) < r[:, None, None] ** 2).float()[:, None]
            yield (torch.rand(batch, 3, 1, 1, generator=g) * 2 - 1) * m - 0.5 * (1 - m)
            step += 1

    return make


def bench(name: str, cfg: GanConfig, steps: int, infer_batch: int, device: str, r1_every: int = 16,
          pl_every: int = 4) -> dict:
    """Times `steps` training steps of cfg (R1 every 2, PL every 3: see the module doc) and amortises them
    at the given intervals (the built-in configs: stylegan2-ada's 16 and 4; --recipe: the recipe's own)."""
    cfg = replace(cfg, kimg=steps * cfg.batch / 1000, r1_interval=2, pl_interval=3, log_kimg=cfg.batch / 1000,
                  snapshot_kimg=1e6, checkpoint_kimg=1e6, snapshot_images=4)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = train_gan(cfg, discs(cfg.batch, cfg.resolution), tmp, seed=0, device=device)
        lines = [json.loads(x) for x in (Path(tmp) / "stats.jsonl").read_text().splitlines()]
        t = {rec["step"] - 1: rec["s_per_step"] for rec in lines if "s_per_step" in rec}  # keyed by step index
        G = load_generator(path, device=device)
    plain = statistics.median([t[s] for s in t if s > 0 and s % 2 and s % 3])
    r1 = statistics.median([t[s] for s in t if s > 0 and s % 2 == 0 and s % 3])
    pl = statistics.median([t[s] for s in t if s > 0 and s % 3 == 0 and s % 2])
    amortised = plain + (r1 - plain) / r1_every + (pl - plain) / pl_every
    ips = None  # infer_batch 0: training only (bench_gan_reference times inference its own way)
    with torch.no_grad():
        if infer_batch > 0:
            generate(G, seeds=range(infer_batch))  # warm-up
            n, t0 = 0, time.perf_counter()
            while n < 2 or time.perf_counter() - t0 < 3.0:
                generate(G, seeds=range(n * infer_batch, (n + 1) * infer_batch))
                n += 1
            ips = n * infer_batch / (time.perf_counter() - t0)
    return {
        "config": name, "res": cfg.resolution, "batch": cfg.batch, "G_params_M": sum(p.numel() for p in G.parameters()) / 1e6,
        "r1_every": r1_every, "pl_every": pl_every, "s_per_step_plain": plain, "s_per_step_r1": r1, "s_per_step_pl": pl, "s_per_step_amortised": amortised,
        "train_img_per_s": cfg.batch / amortised, "infer_img_per_s": ips,
    }  # fmt: skip


def matmul_gflops(dtype: torch.dtype, n: int = 1024, seconds: float = 2.0) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    k, t0 = 0, time.perf_counter()
    while k < 2 or time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
    return 2 * n**3 * k / (time.perf_counter() - t0) / 1e9


class _CountFlops(TorchDispatchMode):
    """torch's FLOP formulas (flop_registry) summed over every op dispatched. torch's FlopCounterMode
    tracks modules with backward hooks, which R1's and path length's autograd.grad refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def step_flops(cfg: GanConfig) -> float:
    """Matmul and convolution FLOPs (forward and backward, by torch's FLOP formulas) of one training
    step amortised over the lazy regularisers: runs of n and 2n steps, n = lcm(R1, PL interval),
    differenced, so the once-per-run work (snapshots, the last log line) drops out. Elementwise work
    is not counted, so FLOPs / time is a lower bound on how busy the cores were."""
    n = math.lcm(cfg.r1_interval, cfg.pl_interval)
    totals = []
    for steps in (n, 2 * n):
        c = replace(cfg, kimg=steps * cfg.batch / 1000, log_kimg=1e6, snapshot_kimg=1e6, checkpoint_kimg=1e6,
                    snapshot_images=4, precision="fp32")  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp, _CountFlops() as counter:
            train_gan(c, discs(c.batch, c.resolution), tmp, seed=0, device="cpu")
        totals.append(counter.total)
    return (totals[1] - totals[0]) / n


def recipe_rows(recipe: str, precisions: list[str], steps: int, device: str,
                overrides: tuple[str, ...] = ()) -> list[dict]:
    from facedis_aug.recipe import load_recipe

    cfg = load_recipe(recipe, [*overrides, "gan.metrics.enabled=false"]).gan
    flops = step_flops(cfg)
    rows = []
    for prec in precisions:
        name = f"{recipe} gan" + "".join(f" {o}" for o in overrides) + f", {prec}"
        row = bench(name, replace(cfg, precision=prec), steps, 64, device, cfg.r1_interval, cfg.pl_interval)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(prec)
        row["matmul_1024_gflops"] = matmul_gflops(dtype) if dtype is not None and device == "cpu" else None
        row["s_per_100kimg"] = row["s_per_step_amortised"] / cfg.batch * 1e5
        # how close the step runs to the cores' matmul speed: near 1, only fewer FLOPs make it faster
        row["gflop_per_step"] = flops / 1e9
        row["achieved_gflops"] = flops / row["s_per_step_amortised"] / 1e9
        if row["matmul_1024_gflops"]:
            row["share_of_matmul_gflops"] = row["achieved_gflops"] / row["matmul_1024_gflops"]
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="only the 32 and 64 px configurations")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default=None, help="comma-separated resolutions to run, e.g. 32,64")
    ap.add_argument("--recipe", default=None, help="time this recipe's gan config instead of the built-in ones")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="with --recipe")
    ap.add_argument("--steps", type=int, default=8, help="with --recipe: training steps incl. warm-up")
    ap.add_argument("--name", default=None)
    ap.add_argument("overrides", nargs="*", help="with --recipe: key=value overrides of the recipe, e.g. gan.channel_max=32")
    args = ap.parse_args()
    if args.overrides and not args.recipe:
        ap.error("key=value overrides need --recipe")
    if args.recipe:
        load0 = os.getloadavg()
        rows = recipe_rows(args.recipe, args.precisions, args.steps, args.device, tuple(args.overrides))
        notes = (f"The recipe's gan config (FID off) per precision; amortised step as above at the recipe's lazy "
                 f"intervals (R1 every {rows[0]['r1_every']}, PL every {rows[0]['pl_every']}), "
                 f"medians after one warm-up step; s_per_100kimg = amortised / batch * 1e5 on this many threads. "
                 f"gflop_per_step: matmul and convolution FLOPs of an amortised step (torch's FLOP formulas, forward "
                 f"and backward, elementwise work not counted); achieved_gflops = that / the amortised step; "
                 f"share_of_matmul_gflops = achieved / a 1024^2 matmul's GFLOP/s in the same dtype and threads. "
                 f"Load average before/after: {load0[0]:.1f} / {os.getloadavg()[0]:.1f}.")
        write_results(args.name or "gan_speed_recipe", rows, f"Stage 1 speed of {args.recipe} per precision", notes=notes)
        return
    only = {int(r) for r in args.only.split(",")} if args.only else None
    load0 = os.getloadavg()
    rows = []
    for name, (cfg, steps, ib) in CONFIGS.items():
        if (args.quick and cfg.resolution > 64) or (only and cfg.resolution not in only):
            continue
        rows.append(bench(name, cfg, steps, ib, args.device))
        print(rows[-1], flush=True)
        _write(rows, load0, os.getloadavg(), args.device, "gan_speed" + ("_" + "_".join(map(str, sorted(only))) if only else ""))  # after every row: a killed run keeps what it measured


def _write(rows: list[dict], load0, load1, device: str, name: str) -> None:
    notes = (
        f"Device: {device}, fp32. Amortised = plain + (R1 step - plain)/16 + (PL step - plain)/4, medians of a few steps "
        f"after one warm-up step, decorrelation loss on. Load average before/after: {load0[0]:.1f} / {load1[0]:.1f} "
        f"on {os.cpu_count()} cores: the CPU was shared with other jobs, so these are upper bounds. "
        "Reference (DESIGN.md): stylegan2-ada pure-PyTorch path, 2 threads, batch 16: 0.88 s/step at 32 px / 128 ch."
    )
    write_results(name, rows, "Stage 1 (StyleGAN2) training and inference speed", notes=notes)


if __name__ == "__main__":
    main()
