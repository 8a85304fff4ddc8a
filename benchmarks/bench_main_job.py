"""Wall time of the README's main job: `python -m train_gan --recipe recipes/tiny.yaml`, per stage.

    python benchmarks/bench_main_job.py [--recipe recipes/tiny.yaml] [--out DIR] [key=value ...]

Runs the trainer in a fresh run folder as a subprocess (the way a user runs it), then reads each
stage's DONE.json for its seconds. The budget DESIGN.md sets for the tiny recipe is 30 minutes on
2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_results  # noqa: E402
from facedis_aug.recipe import STAGES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/tiny.yaml")
    ap.add_argument("--out", default=None, help="run folder (default: a new temporary folder)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="main_job_")) / "run"
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "train_gan", "--recipe", args.recipe, "--out", str(out), *args.overrides],
                   cwd=REPO, check=True)
    total = time.time() - t0
    rows = []
    for stage in STAGES:
        done = out / stage / "DONE.json"
        if done.exists():
            rows.append({"stage": stage, "seconds": round(json.loads(done.read_text())["seconds"], 1)})
    rows.append({"stage": "total (process wall time)", "seconds": round(total, 1)})
    write_results(
        "main_job", rows, f"README main job: python -m train_gan --recipe {args.recipe}",
        notes=f"Run folder {out}. Budget (DESIGN.md): 30 minutes on 2 CPU cores. Total includes start-up "
        "and the data preview; the environment was already installed.",
    )


if __name__ == "__main__":
    main()
