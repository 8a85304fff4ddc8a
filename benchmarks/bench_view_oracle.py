"""Is the compressed yaw a basin or the objective's optimum? Teach the view, then let go.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_view_oracle [--arms recipe face-ring11] [--teach 1000]
        [--release 250 500 1000 2000] [--where] [--name view_oracle]
    OMP_NUM_THREADS=1 python -m benchmarks.bench_view_oracle --release 250 500 \
        --release-set none --release-set decompose.lr=0.0001 --name view_oracle_objectives
    OMP_NUM_THREADS=1 python -m benchmarks.bench_view_oracle --release 250 500 --set decompose.surface=head --name N

Phase 1 (evaluation-only oracle, never the method): the decomposer trains on the world's CASIA-like
images with the stage's own loss plus a squared error between its view head's (pitch, yaw) and the
world's true ones, weight `--teach-weight` per (30 degrees)^2, for `--teach` steps. Phase 2: from those
weights, the stage's own unsupervised loop (`train_decomposer`, nothing taught) for the `--release`
step counts in turn, scored after each on the held-out world faces of bench_decompose (uniform yaw in
[-90, 90]). If the yaw slope stays near 1 once released, the unsupervised objective keeps the right
scale and the compressed yaw of the plain arms is a basin the frontal start falls into; if it sinks
back to the plain arms' ~0.3 (with the reconstruction PSNR rising), the objective itself prefers the
compressed yaw with maps these nets can draw. `--release-set` releases the same taught weights under
another objective (one flag per objective); `--where` splits, for the taught models, the L1 change of a
smaller turn (yaw x 0.5) into face skin, the rest of the face layer and the background (table + PNG).

Arms: 'recipe' = bench_decompose's world-plain (the tiny recipe's decompose settings, no mutual, no
augmentation); 'face-ring11' = its world-plain-face-ring11. Resumable: runs live in
benchmarks/results/cache/view_oracle/<arm>-<hash>/ (taught/, released*/) with their scores.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmarks.bench_decompose import REPO, arm_config, stable_settings
from benchmarks.common import RESULTS, write_results
from benchmarks.decompose_eval import eval_set, evaluate
from facedis_aug.data.stream import make_source, training_batches
from facedis_aug.decompose import load_decomposer, train_decomposer
from facedis_aug.decompose.losses import decomposition_loss
from facedis_aug.decompose.model import Decomposer, renderer_for, save_decomposer
from facedis_aug.decompose.sources import stream_sampler
from facedis_aug.ops.dataconf import to_dict
from facedis_aug.ops.io import load_safetensors, read_json, write_json
from facedis_aug.ops.resize import resize_square
from facedis_aug.recipe import load_recipe

ARMS = {"recipe": "world-plain", "face-ring11": "world-plain-face-ring11"}  # bench_decompose arm names
METRICS = ("yaw_slope", "yaw_r", "yaw_mae", "yaw_mae_profile", "yaw_slope_15", "psnr", "albedo_spread")  # of evaluate()
COLUMNS = ("arm", "phase", "steps", *METRICS)
QUICK = ["decompose.batch=4"]
LATER_SETTINGS = {"map_cycle": 0.0}  # added after the cached runs, at the value they ran at (kept out of the key)  # --quick's recipe overrides


def base_overrides(args: argparse.Namespace) -> list[str]:
    """Recipe overrides of both phases: --quick's, then --set's."""
    return (QUICK if args.quick else []) + args.set


def teach(cfg: Any, source: Any, path: Path, steps: int, weight: float, seed: int) -> Path:
    """Phase 1: the stage's loss + weight * mean(((view - truth) / 30 deg)^2) over pitch and yaw."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model, renderer = Decomposer(cfg), renderer_for(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc="taught", mininterval=2.0):
        idx = torch.randint(len(source), (cfg.batch,), generator=gen)
        img, lab = source.batch(idx)
        x = resize_square(img.clamp(0, 1) * 2 - 1, cfg.image_size)
        out = decomposition_loss(cfg, model, renderer, x)
        v = out.decomposition.view
        err = ((v[:, 0] - lab["pitch"].float()) / 30.0) ** 2 + ((v[:, 1] - lab["yaw"].float()) / 30.0) ** 2
        loss = out.total + weight * err.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return save_decomposer(model, path)


def scores(model: Any, ev: dict[str, torch.Tensor]) -> dict[str, Any]:
    m = evaluate(model, ev)
    return {k: m[k] for k in METRICS}


@torch.no_grad()
def where(model: Any, ev: dict[str, torch.Tensor], arm: str, scale: float = 0.5) -> tuple[dict[str, Any], torch.Tensor]:
    """Where a smaller turn wins: the L1 of the taught model's reconstruction at its own view and at its own view
    with the yaw times `scale`, on eval faces of true |yaw| in [20, 60], split into the world's face skin, the
    other pixels the face layer covers (opacity > 0.5 in either render: hair, ears, neck) and the rest. Returns
    the row and the mean (compressed - own) L1 map [S, S], faces with yaw < 0 mirrored so that all turn one way."""
    model.eval()
    r = renderer_for(model.cfg)
    sel = ((ev["yaw"].abs() >= 20) & (ev["yaw"].abs() <= 60)).nonzero()[:, 0]
    x, face, yaw = ev["x"][sel], ev["face"][sel], ev["yaw"][sel]
    d = model(x)
    own = model.reconstruct(r, d)
    view = d.view.clone()
    view[:, 1] = view[:, 1] * scale
    small = model.reconstruct(r, d, view=view)
    e_own, e_small = (own.image - x).abs().mean(1), (small.image - x).abs().mean(1)
    covered = ((own.alpha > 0.5) | (small.alpha > 0.5)) & ~face
    rest = ~face & ~covered
    row = {"arm": arm, "faces": int(sel.numel()), "yaw_scale": scale}
    for name, m in (("face_skin", face), ("layer_not_skin", covered), ("rest", rest)):
        n = m.float().sum()
        row[f"{name}_share"] = float(n / m.numel())
        row[f"{name}_l1_own"] = float((e_own * m).sum() / n)
        row[f"{name}_l1_smaller"] = float((e_small * m).sum() / n)
        # the region's part of the image-mean L1 change (smaller turn - own): < 0 where the smaller turn wins
        row[f"{name}_gain"] = float(((e_small - e_own) * m).sum() / m.numel())
    diff = e_small - e_own
    diff = torch.where((yaw < 0)[:, None, None], diff.flip(2), diff)
    return row, diff.mean(0)


def run_arm(arm: str, recipe: Any, args: argparse.Namespace, ev: dict[str, torch.Tensor]) -> tuple[list[dict[str, Any]], Path]:
    """(the arm's rows: taught, then each released objective at each step count; the taught weights' path)."""
    import dataclasses

    def config(r: Any) -> Any:
        base = arm_config(r, ARMS[arm], max(args.release))
        return dataclasses.replace(base, checkpoint_every=min(args.release), snapshot_every=max(args.release))

    cfg = config(recipe)
    # the schedule (how long the release runs, how often it saves) is not part of what was taught
    fixed = dataclasses.replace(cfg, iterations=0, checkpoint_every=1, snapshot_every=1)
    key = json.dumps({"cfg": stable_settings(fixed, LATER_SETTINGS), "data": to_dict(recipe.data.synthetic), "teach": args.teach,
                      "weight": args.teach_weight, "seed": args.seed}, sort_keys=True, default=str)
    folder = Path(args.cache_dir) / f"{arm}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    folder.mkdir(parents=True, exist_ok=True)
    done_path = folder / "scores.json"
    done = read_json(done_path) if done_path.is_file() else {}
    source = make_source(recipe.data, recipe.gan.resolution)
    taught = teach(cfg, source, folder / "taught" / "decomposer.safetensors", args.teach, args.teach_weight, args.seed)
    if "taught" not in done:
        done["taught"] = scores(load_decomposer(taught), ev)
        write_json(done_path, done)
    rows = [{"arm": arm, "phase": "taught (oracle view loss)", "steps": args.teach, **done["taught"]}]
    world = stream_sampler(lambda start: training_batches(source, cfg.batch, seed=args.seed, start_step=start), cfg.image_size)
    # each released objective (--release-set, default: the stage's own) starts from the same taught weights
    for overrides in args.release_set or [[]]:
        overrides = [o for o in overrides if o != "none"]
        tag = " ".join(overrides)
        cfg_rel = config(load_recipe(args.recipe, base_overrides(args) + overrides)) if overrides else cfg
        sub = "released-" + hashlib.sha256(tag.encode()).hexdigest()[:8] if tag else "released"
        for n in sorted(args.release):
            k = f"{tag}:{n}" if tag else str(n)
            if k not in done:
                ckpt = folder / sub / "checkpoint.safetensors"
                if ckpt.is_file() and int(load_safetensors(ckpt)[1]["step"]) > n:  # scores lost (e.g. two runs at once): n steps must be retrained
                    shutil.rmtree(folder / sub)
                path = train_decomposer(dataclasses.replace(cfg_rel, iterations=n), world, folder / sub, seed=args.seed,
                                        init=taught)
                done[k] = scores(load_decomposer(path), ev)
                # merged with what another run may have written meanwhile
                done = {**(read_json(done_path) if done_path.is_file() else {}), **done}
                write_json(done_path, done)
            rows.append({"arm": arm, "phase": f"released ({tag or 'unsupervised'})", "steps": args.teach + n, **done[k]})
    return rows, taught


def where_rows(args: argparse.Namespace, ev: dict[str, torch.Tensor], taught: dict[str, Path]) -> None:
    """`where` for every arm's taught model: a table and a picture (RdBu: blue where the smaller turn wins)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, maps = [], []
    for arm in args.arms:
        row, m = where(load_decomposer(taught[arm]), ev, arm)
        rows.append(row)
        maps.append(m)
    notes = (f"Taught models of this benchmark (oracle view loss, {args.teach} steps). Eval faces with true |yaw| in [20, 60]; "
             "L1 per pixel of the reconstruction at the model's own view and at that view with yaw x 0.5. Regions: "
             "the world's face skin, the other pixels the face layer covers (opacity > 0.5 in either render), the rest. "
             "share: the region's share of the pixels; gain: its part of the image-mean L1 change (smaller turn minus "
             "own; negative = the smaller turn reconstructs the region better).")
    write_results(args.name + "_where", rows, "Where a smaller turn reconstructs better (taught decomposers)", notes=notes,
                  out_dir=args.out_dir)
    lim = max(float(m.abs().max()) for m in maps)
    fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 3.2), squeeze=False)
    for ax, arm, m in zip(axes[0], args.arms, maps):
        im = ax.imshow(m.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{arm}: L1(yaw x 0.5) - L1(own)", fontsize=8)
        ax.axis("off")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.savefig(Path(args.out_dir) / f"{args.name}_where.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "tiny.yaml"))
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--teach", type=int, default=1000, help="steps with the oracle view loss")
    ap.add_argument("--teach-weight", type=float, default=1.0)
    ap.add_argument("--release", type=int, nargs="+", default=[250, 500, 1000, 2000],
                    help="unsupervised steps after teaching, scored after each (the first must divide the others)")
    ap.add_argument("--release-set", nargs="+", action="append", default=None, metavar="KEY=VALUE",
                    help="recipe overrides for the released phase only, e.g. decompose.symmetric=false; "
                         "repeat the flag for several objectives, 'none' for the stage's own beside them")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="recipe overrides for both phases, e.g. decompose.surface=head (they enter the cache key)")
    ap.add_argument("--where", action="store_true", help="also: where a smaller turn reconstructs the taught model's faces better")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-images", type=int, default=512)
    ap.add_argument("--name", default="view_oracle")
    ap.add_argument("--cache-dir", default=str(RESULTS / "cache" / "view_oracle"))
    ap.add_argument("--out-dir", default=str(RESULTS))
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 taught steps, releases of 1 and 2, 16 eval faces")
    args = ap.parse_args(argv)
    if args.quick:
        args.teach, args.release, args.eval_images, args.name = 3, [1, 2], 16, args.name + "_quick"
    if any(n % min(args.release) for n in args.release):
        raise SystemExit(f"--release {args.release}: the first count must divide the others (checkpoints)")
    recipe = load_recipe(args.recipe, base_overrides(args))
    ev = eval_set(args.eval_images, recipe.gan.resolution, recipe.decompose.image_size, seed=recipe.data.synthetic.seed,
                  num_identities=recipe.data.synthetic.num_identities)
    runs = {arm: run_arm(arm, recipe, args, ev) for arm in args.arms}
    rows = [r for arm_rows, _ in runs.values() for r in arm_rows]
    notes = (f"Decomposer: {recipe.decompose.image_size} px, the decompose settings of {Path(args.recipe).name}"
             f"{' with ' + ' '.join(args.set) if args.set else ''} as "
             f"bench_decompose's arms {', '.join(ARMS[a] for a in args.arms)} (no mutual, no augmentation), seed {args.seed}. "
             f"Taught: {args.teach} steps of the stage's loss plus {args.teach_weight} x mean squared (pitch, yaw) error in "
             "units of 30 degrees against the world's truth (an evaluation-only oracle). Released: the stage's own "
             f"unsupervised loop from the taught weights; steps counted from the start. Scores on {ev['yaw'].shape[0]} held-out world faces, "
             "uniform yaw in [-90, 90] (bench_decompose's eval set): yaw slope (1 = right scale), r, MAE, MAE |yaw| > 45, "
             "slope within |yaw| <= 15, reconstruction PSNR, albedo spread. Compare the same arms trained plainly (no "
             "teaching) by bench_decompose for as many steps (decompose_uniform.md has both at 3000). The taught phase "
             "restarts if interrupted; the released ones resume.")
    write_results(args.name, rows, "Teach the view, then let go: basin or optimum?", notes=notes, columns=COLUMNS,
                  out_dir=args.out_dir)
    if args.where:
        where_rows(args, ev, {arm: taught for arm, (_, taught) in runs.items()})
    return rows


if __name__ == "__main__":
    main()
