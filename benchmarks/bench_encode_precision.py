"""Encoder stage in fp32 and in CPU bf16 autocast, same generator, same steps: time and held-out quality.

    python -m benchmarks.bench_encode_precision --gan RUN/gan/gan.safetensors [--iterations 300] [--recipe recipes/tiny.yaml]

Each arm trains the recipe's encoder (its encode section, `iterations` overridden) from scratch in a
fresh folder and reads its eval.json (fp32 in both arms): relative w error on held-out generator
samples (1 = the mean-w baseline) and image L1 with and without refinement. The arms run one after
the other, twice (fp32, bf16, fp32, bf16); the faster run of each arm is kept for the time, the
quality is the same in both rounds (seeded).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.common import write_results
from facedis_aug.encode.train import train_encoder
from facedis_aug.gan.networks import load_generator
from facedis_aug.recipe import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gan", required=True, type=Path, help="a trained gan.safetensors")
    ap.add_argument("--recipe", default="recipes/tiny.yaml")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--name", default="encode_precision")
    args = ap.parse_args()
    cfg = replace(load_recipe(args.recipe).encode, iterations=args.iterations, snapshot_every=10**9, checkpoint_every=10**9)
    G = load_generator(args.gan)
    load0 = os.getloadavg()
    rows: dict[str, dict] = {}
    for rnd in range(args.rounds):
        for prec in ("fp32", "bf16"):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                train_encoder(replace(cfg, precision=prec), G, tmp, seed=0)
                seconds = time.perf_counter() - t0
                ev = json.loads((Path(tmp) / "eval.json").read_text())
                steps = [json.loads(x) for x in (Path(tmp) / "stats.jsonl").read_text().splitlines()]
            train_s = steps[-1]["sec"] / max(1, steps[-1]["step"])  # training loop only, per step
            row = {"precision": prec, "iterations": args.iterations, "stage_s": round(seconds, 1), "s_per_step": train_s,
                   "w_rel_mse": ev["w_rel_mse"], "w_rel_mse_mean_baseline": ev["w_rel_mse_mean_baseline"],
                   "l1_gen": ev["l1_gen"], "l1_gen_refined": ev["l1_gen_refined"], "round": rnd}  # fmt: skip
            print(row, flush=True)
            if prec not in rows or row["s_per_step"] < rows[prec]["s_per_step"]:
                rows[prec] = row
    out = list(rows.values())
    out[1]["speedup"] = out[0]["s_per_step"] / out[1]["s_per_step"]
    notes = (f"Generator {args.gan}; encode settings of {args.recipe} (backbone {cfg.backbone}, batch {cfg.batch}, lr {cfg.lr}). "
             f"Fastest of {args.rounds} rounds per arm. Load average before / after: {load0[0]:.2f} / {os.getloadavg()[0]:.2f} "
             f"on {os.cpu_count()} cores.")  # fmt: skip
    write_results(args.name, out, "Encoder stage: fp32 against CPU bf16 autocast", notes=notes)


if __name__ == "__main__":
    main()
