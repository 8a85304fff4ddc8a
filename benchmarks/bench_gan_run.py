"""Stage 1 speed over a whole run: s/step as training goes on, read from RUN/gan/stats.jsonl.

bench_gan times a few steps of a fresh model; this reads what a real run logged (every log_kimg:
`s_per_step`, and from 2026-12-07 on the machine's 1-minute load `load1` and the process's
`cpu_s_per_step`), so a slowdown over training shows, and whether the machine was busier then.
Wall time per step includes the snapshot and checkpoint writes that fell in each logging window.

    python -m benchmarks.bench_gan_run --runs RUN [RUN ...] --bins 10 --name NAME
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, write_results


def read_stats(run: Path) -> list[dict[str, Any]]:
    path = run / "gan" / "stats.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (is {run} a run folder with a gan stage?)")
    lines = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:  # a line cut by a crash: say where, keep the rest
            raise SystemExit(f"{path}:{i + 1}: not JSON ({e})") from None
        if "s_per_step" in rec and "kimg" in rec:
            lines.append(rec)
    if not lines:
        raise SystemExit(f"{path}: no training lines with s_per_step")
    return lines


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def last_per_kimg(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A resumed run logs a kimg twice or goes back: keep the last line per kimg, in kimg order."""
    by_kimg = {round(r["kimg"], 4): r for r in lines}
    return [by_kimg[k] for k in sorted(by_kimg)]


def windows(lines: list[dict[str, Any]], bins: int) -> list[dict[str, Any]]:
    """Split the logged lines into `bins` equal kimg windows; mean s/step (and load, CPU s/step) in each
    (the last line per kimg counts)."""
    recs = last_per_kimg(lines)
    top = recs[-1]["kimg"]
    out = []
    for b in range(bins):
        lo, hi = top * b / bins, top * (b + 1) / bins
        sel = [r for r in recs if lo < r["kimg"] <= hi or (b == 0 and r["kimg"] == 0)]
        if not sel:
            continue
        out.append({
            "kimg": f"{lo:.1f}-{hi:.1f}",
            "lines": len(sel),
            "s_per_step": _mean([r["s_per_step"] for r in sel]),
            "cpu_s_per_step": _mean([r.get("cpu_s_per_step") for r in sel]),
            "load1": _mean([r.get("load1") for r in sel]),
        })  # fmt: skip
    return out


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    from matplotlib.figure import Figure  # a figure object: the user's pyplot backend is left alone

    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    for name, recs in results.items():
        ax.plot([r["kimg"] for r in recs], [r["s_per_step"] for r in recs], lw=0.8, label=f"{name} wall")
        if any(r.get("cpu_s_per_step") is not None for r in recs):  # runs logged before 2026-12-07 have none
            ax.plot([r["kimg"] for r in recs], [r.get("cpu_s_per_step") or float("nan") for r in recs], lw=0.8,
                    ls="--", label=f"{name} CPU")
    ax.set_xlabel("kimg", fontsize=8)
    ax.set_ylabel("s per step (logging window)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders holding gan/stats.jsonl")
    ap.add_argument("--bins", type=int, default=10, help="kimg windows per run")
    ap.add_argument("--name", default="gan_run_speed")
    ap.add_argument("--out-dir", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.bins < 1:
        raise SystemExit(f"--bins must be >= 1, got {args.bins}")
    rows, raw = [], {}
    for run in map(Path, args.runs):
        lines = last_per_kimg(read_stats(run))
        raw[run.name] = [{k: r.get(k) for k in ("kimg", "s_per_step", "cpu_s_per_step", "load1")} for r in lines]
        w = windows(lines, args.bins)
        first, last = w[0]["s_per_step"], w[-1]["s_per_step"]
        rows += [{"run": run.name, **r, "vs_first": r["s_per_step"] / first} for r in w]
        rows.append({"run": run.name, "kimg": f"whole run, last/first {last / first:.2f}",
                     "lines": len(lines), "s_per_step": _mean([r["s_per_step"] for r in lines])})
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot(raw, out / f"{args.name}.png")
    notes = ("Mean over the logging windows (each `log_kimg` of training) that fall in each kimg bin; wall s/step "
             "includes the snapshots and checkpoints written in the window. cpu_s_per_step is the training process's "
             "CPU time (all its threads) per step, load1 the machine's 1-minute load average at each log line; both "
             f"are absent (nan) in runs logged before they were added. Picture: {args.name}.png.")
    write_results(args.name, rows, "Stage 1 s/step over a whole run (from gan/stats.jsonl)", notes,
                  extra={"series": raw}, columns=["run", "kimg", "lines", "s_per_step", "vs_first", "cpu_s_per_step", "load1"],
                  out_dir=out)
    return {"rows": rows}


if __name__ == "__main__":
    main()
