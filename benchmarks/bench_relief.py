"""Is the decomposer's yaw compressed because its face is too deep? Relief against the world's truth.

A depth-vs-turn ambiguity would let a face that is too deep explain a turn with less yaw. On held-out
near-frontal world faces (|yaw| <= 20), the relative relief (d - median) / median of the predicted view depth
is regressed on the true one over the face pixels the decomposer covers: a ratio above 1 is a face deeper than
the world's, below 1 a flatter one; beside it the yaw slope and r of bench_decompose's evaluation.

    python -m benchmarks.bench_relief --decomposers D1 D2 ... --name relief
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.common import write_results
from benchmarks.decompose_eval import eval_set, evaluate
from facedis_aug.decompose.model import load_decomposer, renderer_for

FRONTAL = 20.0  # |true yaw| of the faces whose relief is compared


@torch.no_grad()
def relief_ratio(model, ev: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(least-squares ratio, std ratio) of predicted to true relative relief on near-frontal faces."""
    out = model.reconstruct(renderer_for(model.cfg), model(ev["x"]))
    valid = ev["face"] & out.mask & ((out.alpha > 0.5) if out.alpha is not None else True)
    ps, ts = [], []
    for i in torch.nonzero(ev["yaw"].abs() <= FRONTAL).flatten().tolist():
        v = valid[i]
        if v.sum() < 20:  # too little covered skin to speak of relief
            continue
        pd, td = out.depth[i][v].double(), ev["depth"][i][v].double()
        ps.append((pd - pd.median()) / pd.median())
        ts.append((td - td.median()) / td.median())
    p, t = torch.cat(ps), torch.cat(ts)
    return float((p @ t) / (t @ t)), float(p.std() / t.std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decomposers", nargs="+", required=True, help="decomposer.safetensors files")
    ap.add_argument("--eval-images", type=int, default=512)
    ap.add_argument("--name", default="relief")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    ev = eval_set(args.eval_images, 32, 32)
    rows = []
    for path in args.decomposers:
        model = load_decomposer(path).eval()
        ratio, spread = relief_ratio(model, ev)
        m = evaluate(model, ev)
        where = Path(path).parent
        rows.append({"decomposer": where.name if where.name != "decompose" else f"{where.parent.name}/decompose", "relief ratio": round(ratio, 3), "relief std ratio": round(spread, 3),
                     "yaw slope": round(m["yaw_slope"], 3), "yaw r": round(m["yaw_r"], 3),
                     "slope |yaw|<=15": round(m["yaw_slope_15"], 3), "MAD deg": round(m["mad"], 1)})
    write_results(args.name, rows, "Relief of the decomposer's face against the world's, beside its yaw scale",
                  notes=f"{args.eval_images} held-out world faces (32 px, uniform yaw); relief on the {int((ev['yaw'].abs() <= FRONTAL).sum())} "
                        f"with |yaw| <= {FRONTAL:g}. Files: {', '.join(args.decomposers)}.",
                  out_dir=args.out_dir)


if __name__ == "__main__":
    main()
