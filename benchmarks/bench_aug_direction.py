"""How well does the yaw augmentation (paper Sec. 3.4) aim? Cosine of its v_yaw to a reference v_yaw.

    python -m benchmarks.bench_aug_direction --reference RUN/directions/directions.safetensors \
        CHECKPOINT [CHECKPOINT ...] [--name aug_direction]

Each CHECKPOINT is a stage-2 checkpoint (`decompose/checkpoint.safetensors` of a run, or a cached
bench_decompose arm) whose yaw augmentation state holds the moving-average v_yaw it turned the
generator's faces along at the end of training. The reference is a bundle's v_yaw fitted on many more
pairs (the directions stage) for the same generator. A cosine near 1 says the augmentation turned heads
along the generator's yaw; near 0, along some other mix of semantics. No training, seconds.
"""
from __future__ import annotations

import argparse
from pathlib import Path


from benchmarks.common import write_results
from facedis_aug.ops import load_safetensors


def cosine_rows(reference: Path, checkpoints: list[Path]) -> list[dict]:
    ref, _ = load_safetensors(reference)
    if "yaw" not in ref:
        raise SystemExit(f"{reference}: no 'yaw' direction")
    v_ref = ref["yaw"].double()
    rows = []
    for ck in checkpoints:
        tensors, meta = load_safetensors(ck)
        aug = meta.get("aug") or {}
        if "aug.v" not in tensors:
            rows.append({"checkpoint": str(ck), "step": meta.get("step"), "v_yaw updates": aug.get("updates", 0),
                         "cosine to reference": None})
            continue
        v = tensors["aug.v"].double()
        cos = float(v @ v_ref / (v.norm() * v_ref.norm()))
        rows.append({"checkpoint": str(ck), "step": meta.get("step"), "v_yaw updates": aug.get("updates"),
                     "sigma_w": round(float(aug.get("sigma", 0.0)), 4), "cosine to reference": round(cos, 4)})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--reference", type=Path, required=True, help="directions.safetensors with a 'yaw' direction")
    ap.add_argument("--name", default="aug_direction")
    args = ap.parse_args(argv)
    rows = cosine_rows(args.reference, args.checkpoints)
    write_results(args.name, rows, "Yaw augmentation (Sec. 3.4): its final v_yaw against a reference v_yaw",
                  notes=f"Reference: {args.reference} ('yaw'). Cosine of the augmentation's moving-average v_yaw "
                  "(stored in each stage-2 checkpoint) to it; the sign is kept (both point towards increasing yaw).")


if __name__ == "__main__":
    main()
