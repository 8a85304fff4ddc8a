"""Does the early training loss tell a start that will lose the yaw? Read from bench_decompose's cached runs.

For every cached run of the named arms (benchmarks/results/cache/decompose/<arm>-<hash>/): its seed, the world
yaw slope and r it ended with (result.json), its mean total loss over a few early step windows (stats.jsonl), and,
for runs with decompose.restarts, each start's score and the start chosen (restarts.json). No training: the
measurement behind decompose.restarts.

    python -m benchmarks.bench_decompose_starts --arms world-pairs-face-ring11 world-pairs-face-ring11-head \
        world-pairs-face-ring11-head-warm world-pairs-face-ring11-head-warm-r3 --name decompose_starts
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import RESULTS, write_results

WINDOWS = ((100, 200), (200, 300), (300, 400), (400, 500))


def window_means(stats: list[dict], windows=WINDOWS, key: str = "total") -> dict[str, float]:
    """Mean of `key` over the logged steps in each [a, b) window (NaN where none was logged)."""
    out = {}
    for a, b in windows:
        xs = [s[key] for s in stats if a <= s["step"] < b and key in s]
        out[f"loss {a}-{b}"] = round(sum(xs) / len(xs), 4) if xs else float("nan")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", nargs="+", required=True)
    ap.add_argument("--steps", type=int, default=None, help="only runs of this many steps")
    ap.add_argument("--cache-dir", default=str(RESULTS / "cache" / "decompose"))
    ap.add_argument("--name", default="decompose_starts")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args(argv)
    rows = []
    for arm in args.arms:
        for d in sorted(Path(args.cache_dir).glob(f"{arm}-*")):
            result = json.loads((d / "result.json").read_text()) if (d / "result.json").is_file() else None
            if result is None or result["arm"] != arm or (args.steps and result["config"]["iterations"] != args.steps):
                continue
            stats = [json.loads(line) for line in (d / "stats.jsonl").read_text().splitlines() if line.strip()]
            row = {"arm": arm, "seed": result["data"]["seed"], "steps": result["config"]["iterations"],
                   "yaw slope": round(result["metrics"]["yaw_slope"], 3), "yaw r": round(result["metrics"]["yaw_r"], 3),
                   **window_means(stats)}
            starts = d / "restarts.json"
            if starts.is_file():
                rec = json.loads(starts.read_text())
                row["start scores"] = " / ".join(f"{x:.4f}" for x in rec["scores"])
                row["chosen"] = rec["chosen"] + 1
            rows.append(row)
    rows.sort(key=lambda r: (args.arms.index(r["arm"]), r["seed"]))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    write_results(args.name, rows, columns=columns, title="Early training loss of decompose runs against the yaw they ended with",
                  notes="loss a-b: mean total loss (stats.jsonl) over the logged steps a <= step < b; with restarts, "
                        "the chosen start's lines. start scores: reconstruction loss of each start on the same fixed "
                        "batches after restart_steps (decompose/train.py:start_score); chosen counts from 1.",
                  out_dir=args.out_dir)


if __name__ == "__main__":
    main()
