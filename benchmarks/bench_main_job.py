"""Wall time of the README's main job: `python -m train_gan --recipe recipes/tiny.yaml`, per stage.

    python -m benchmarks.bench_main_job [--recipe recipes/tiny.yaml] [--out DIR] [--reuse RUN --stages gan encode] [--name N] [key=value ...]

Runs the trainer in a fresh run folder as a subprocess (the way a user runs it), then reads each
stage's DONE.json for its seconds. --reuse copies finished stages (and the recipe) from an earlier run
folder of the same recipe, so that only the stages that changed are re-timed; their rows say "reused"
and keep the seconds that run measured. The budget DESIGN.md sets for the tiny recipe is 30 minutes on
2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_results
from facedis_aug.recipe import STAGES

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/tiny.yaml")
    ap.add_argument("--out", default=None, help="run folder (default: a new temporary folder)")
    ap.add_argument("--reuse", default=None, help="earlier run folder of the same recipe to copy --stages from")
    ap.add_argument("--stages", nargs="*", default=["gan", "encode"], help="stages copied from --reuse")
    ap.add_argument("--name", default="main_job")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="main_job_")) / "run"
    reused: list[str] = []
    if args.reuse:
        src = Path(args.reuse)
        if out.exists():
            raise SystemExit(f"--reuse needs a new --out folder, {out} exists")
        out.mkdir(parents=True)
        shutil.copy2(src / "recipe.yaml", out / "recipe.yaml")  # the trainer refuses it if the recipe differs
        for stage in args.stages:
            if not (src / stage / "DONE.json").exists():
                raise SystemExit(f"{src / stage} is not a finished stage")
            shutil.copytree(src / stage, out / stage)
            reused.append(stage)
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "train_gan", "--recipe", args.recipe, "--out", str(out), *args.overrides],
                   cwd=REPO, check=True)
    total = time.time() - t0
    rows = []
    for stage in STAGES:
        done = out / stage / "DONE.json"
        if done.exists():
            name = f"{stage} (reused from {args.reuse})" if stage in reused else stage
            if stage == "decompose" and (out / stage / "side.log").exists():
                name += " (beside gan, in a second process: its seconds overlap gan's)"
            rows.append({"stage": name, "seconds": round(json.loads(done.read_text())["seconds"], 1)})
    if reused:
        fresh = sum(r["seconds"] for r in rows if "reused" not in r["stage"])
        rows.append({"stage": "sum of the stages (reused ones at their earlier time)",
                     "seconds": round(sum(r["seconds"] for r in rows), 1)})
        rows.append({"stage": "re-run stages, process wall time", "seconds": round(total, 1)})
        note = (f" Stages {', '.join(reused)} were copied from {args.reuse} (same recipe) with the seconds that run "
                f"measured; the re-run stages took {fresh:.0f} s by their DONE.json.")
    else:
        rows.append({"stage": "total (process wall time)", "seconds": round(total, 1)})
        note = ""
    write_results(
        args.name, rows, f"README main job: python -m train_gan --recipe {args.recipe}",
        notes=f"Run folder {out}. Budget (DESIGN.md): 30 minutes on 2 CPU cores. Total includes start-up "
        "and the data preview; the environment was already installed." + note,
    )


if __name__ == "__main__":
    main()
