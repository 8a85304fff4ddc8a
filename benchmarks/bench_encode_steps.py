"""Encoder quality and time against its training steps, read from run folders of the same generator.

Each run's encode stage wrote encode/eval.json (held-out w error relative to the mean-w baseline, image L1 of
generator samples and of world images, with and without refinement) and encode/DONE.json (its seconds). The
runs must share the gan stage (the same gan/gan.safetensors), so only the encoder differs.

    python -m benchmarks.bench_encode_steps --runs RUN_A RUN_B --name encode_steps
"""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import write_results
from facedis_aug.ops.io import read_json, sha256_file
from facedis_aug.recipe import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders with a finished encode stage")
    ap.add_argument("--name", default="encode_steps")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    runs = [Path(r) for r in args.runs]
    gans = {sha256_file(r / "gan" / "gan.safetensors") for r in runs}
    if len(gans) != 1:
        raise SystemExit("the runs have different generators: their encoders cannot be compared")
    rows = []
    for r in runs:
        ev, done = read_json(r / "encode" / "eval.json"), read_json(r / "encode" / "DONE.json")
        rows.append({"run": str(r), "encode steps": load_recipe(r / "recipe.yaml").encode.iterations,
                     "stage s": round(done["seconds"], 1), "w error (held out)": round(ev["w_rel_mse"], 4),
                     "mean-w baseline": round(ev["w_rel_mse_mean_baseline"], 4), "L1 generated": round(ev["l1_gen"], 4),
                     "L1 generated refined": round(ev["l1_gen_refined"], 4), "L1 world": round(ev["l1_data"], 4),
                     "L1 world refined": round(ev["l1_data_refined"], 4), "max_l1": round(ev["max_l1"], 4)})
    write_results(args.name, sorted(rows, key=lambda x: x["encode steps"]), "Encoder quality and time by training steps",
                  notes=f"Runs share the generator (sha256 {gans.pop()[:12]}); numbers from each run's encode/eval.json and "
                        "DONE.json (stage seconds: wall time of that run, 2 threads).", out_dir=args.out_dir)


if __name__ == "__main__":
    main()
