"""Command line of the trainer. Errors in the recipe or the data are one line on stderr, exit code 2."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    from facedis_aug.recipe import STAGES  # a light module: no torch

    p = argparse.ArgumentParser(
        prog="python -m train_gan",
        description=f"Train the facedis-aug pipeline ({' -> '.join(STAGES)}) from unlabelled faces into a run "
                    "folder; re-running resumes it.",
        epilog="Overrides look like section.key=value (before or after the flags), e.g. gan.kimg=2 "
               f"run.stages=[gan]. Stages: {', '.join(STAGES)}; the bundle is written by export.",
    )
    p.add_argument("--recipe", required=True, help="recipe YAML, e.g. recipes/tiny.yaml")
    p.add_argument("--data", default=None,
                   help="image folder, .zip or insightface .rec (default: the built-in synthetic faces)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<recipe file name>)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # key=value may come before or after --out
    from facedis_aug.ops.dataconf import ConfigError
    from facedis_aug.recipe import load_recipe

    overrides = list(args.overrides)
    if args.data is not None:
        overrides += ["data.source=folder", f"data.path={args.data}"]
    try:
        recipe = load_recipe(args.recipe, overrides)
        from facedis_aug.pipeline import run_pipeline

        out = Path(args.out) if args.out else Path("runs") / Path(args.recipe).stem
        status = run_pipeline(recipe, out)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        if os.environ.get("FACEDIS_DEBUG"):
            raise
        hint = "" if isinstance(e, ConfigError) else "  (FACEDIS_DEBUG=1 shows the traceback)"
        print(f"error: {e}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return 130
    print(f"run folder: {out}  ({', '.join(f'{k}: {v}' for k, v in status.items())})")
    return 0
