"""Table 1 of the paper at CPU scale: the decorrelation loss (Eq. 1) on vs off.

    # both arms, one process after the other, then the evaluation (resumes whatever is finished):
    OMP_NUM_THREADS=1 python -m benchmarks.bench_decorr --kimg 8 --seeds 0
    # or the two arms in parallel, then the evaluation:
    OMP_NUM_THREADS=1 python -m benchmarks.bench_decorr --kimg 8 --seeds 0 --arm on --stage train &
    OMP_NUM_THREADS=1 python -m benchmarks.bench_decorr --kimg 8 --seeds 0 --arm off --stage train &
    wait; OMP_NUM_THREADS=1 python -m benchmarks.bench_decorr --kimg 8 --seeds 0 --stage eval

Both arms train the tiny recipe's generator (`recipes/tiny.yaml`, gan section) on the synthetic
world with the same seed (same initial weights, same real batches in the same order) for the same
number of images; the 'off' arm sets `gan.decorr_weight=0`. Runs live in `--work`
(`<work>/<arm>-s<seed>-k<kimg>/`) and resume from their checkpoints when interrupted.

Evaluation of each run's G_ema (`gan.safetensors`):
- W statistics (`decorrelation_stats`) of w = F(z) for `--w-samples` seeded z: mean and max |rho_ij|
  and the coefficient of variation of Var[w_i]; the same for the untrained mapping network (step 0);
- FID and KID against the world's images (the training stream, in [-1, 1]); as a noise floor, the
  FID/KID between two disjoint sets of real images of the same size;
- PPL in W ('end' sampling, epsilon 1e-4).
FID/KID/PPL use local Inception / LPIPS-VGG16 weights when given (--inception-weights,
--lpips-weights); otherwise the labelled offline fallbacks of `facedis_aug.gan.feature_nets`, whose
numbers are not comparable with published FID/PPL. Writes benchmarks/results/<name>.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from benchmarks.common import RESULTS, write_results
from facedis_aug.data.stream import make_source, training_batches
from facedis_aug.gan.config import GanConfig
from facedis_aug.gan.loss import decorrelation_stats
from facedis_aug.gan.metrics import GanMetrics, MetricsConfig, compute_features, fid_from_features, kid_from_features
from facedis_aug.gan.networks import Generator, generate, load_generator
from facedis_aug.ops.io import read_json, write_json
from facedis_aug.recipe import Recipe, load_recipe

ROOT = Path(__file__).resolve().parent.parent
# None: the recipe's decorr_weight (the paper's 1). Eq. 1 sums d (d - 1) = 16256 terms at w_dim 128 (about 3650 at the
# start, by the runs' stats.jsonl), so its weight is a real choice: the "w" arms study it. Weights 0.1, 1 and 10 train
# the same run to 3 digits (table1_k50_weights.md; our reading: Eq. 1 dominates F's gradient and Adam's normalised
# step removes its scale), so the study goes down to 1e-4: the effect sets in between 1e-4 and 1e-2 (|rho| 0.155 /
# 0.112 / 0.088 against 0.189 off and 0.085 from 0.1 on; seed 0)
ARMS = {"off": 0.0, "on": None, "w0.0001": 0.0001, "w0.001": 0.001, "w0.01": 0.01, "w0.1": 0.1, "w10": 10.0}
STAT_KEYS = ("rho_mean", "rho_max", "var_cv")
METRIC_KEYS = ("fid", "kid", "ppl")
POSE_KEYS = ("yaw_tv", "share_gt45_generated")  # issue 14's pose coverage (benchmarks/bench_gan_pose.py)
PAPER = (
    "Paper (Table 1, Inception FID / LPIPS PPL, 25M images): CASIA 96x112 FID 11.85 -> 9.96, "
    "PPL 15.26 -> 12.30; FFHQ 256 FID 25.49 -> 15.57, PPL 34.24 -> 20.23 (without -> with decorrelation)."
)


# ----------------------------------------------------------------------------- helpers


def arm_recipe(recipe_path: str | Path, arm: str, kimg: float, seed: int, overrides: Sequence[str] = ()) -> Recipe:
    """The recipe of one arm: `recipe_path` + overrides, with gan.kimg = `kimg`, run.seed = `seed`
    and, for arm 'off', gan.decorr_weight = 0. Snapshots are moved to the end of the run."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {sorted(ARMS)}, got {arm!r}")
    extra = [f"gan.kimg={kimg}", f"run.seed={seed}"]
    if ARMS[arm] is not None:
        extra.append(f"gan.decorr_weight={ARMS[arm]}")
    recipe = load_recipe(recipe_path, [*overrides, *extra])
    if arm == "on" and not recipe.gan.decorr_weight > 0:
        raise ValueError("arm 'on' needs gan.decorr_weight > 0 in the recipe")
    return recipe


def run_dir(work: Path, arm: str, seed: int, kimg: float) -> Path:
    return work / f"{arm}-s{seed}-k{kimg:g}"


def aggregate(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Mean and sample standard deviation over rows (seeds) of each key: {key: mean, key_std: std}.
    With one row the std is NaN (no spread to speak of)."""
    if not rows:
        raise ValueError("no rows to aggregate")
    out: dict[str, Any] = {}
    for k in keys:
        vals = [float(r[k]) for r in rows]
        out[k] = statistics.fmean(vals)
        out[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else math.nan
    return out


def read_stats(path: Path) -> list[dict[str, Any]]:
    """The periodic training lines of a stats.jsonl (those with W statistics), in order."""
    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r for r in lines if "rho_mean" in r and "kimg" in r]


# ----------------------------------------------------------------------------- training


def train_arm(args: argparse.Namespace, arm: str, seed: int) -> Path:
    from facedis_aug.gan.train import train_gan

    recipe = arm_recipe(args.recipe, arm, args.kimg, seed, args.override)
    cfg: GanConfig = recipe.gan
    source = make_source(recipe.data, cfg.resolution)

    def make_batches(start_step: int, rank: int, world: int):
        return training_batches(source, cfg.batch, seed=seed, start_step=start_step, rank=rank, world_size=world)

    out = run_dir(args.work, arm, seed, args.kimg)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    path = train_gan(cfg, make_batches, out, seed=seed, device=args.device)
    print(f"[{arm} seed {seed}] {path} ({time.time() - t0:.0f} s this call)", flush=True)
    return path


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def w_stats(G: Generator, n: int, seed: int) -> dict[str, float]:
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return decorrelation_stats(G.mapping(z.to(next(G.parameters()).device)))


def initial_generator(recipe: Recipe, seed: int) -> Generator:
    """The untrained generator train_gan starts from (it seeds torch with `seed`, then builds G)."""
    from facedis_aug.gan.train import network_configs

    torch.manual_seed(seed)
    return Generator(network_configs(recipe.gan)[0]).eval()


def pose_coverage(run: Path, recipe: Recipe, samples: int) -> dict[str, Any]:
    """bench_gan_pose's coverage numbers of one arm's G_ema (the evaluation-only regressor), cached in the run."""
    cache = run / f"pose-n{samples}.json"
    if cache.exists():
        return read_json(cache)
    from benchmarks.bench_gan_pose import coverage, data_pose, generated_pose
    from benchmarks.pose_regressor import get_or_train, load_pose_regressor
    from facedis_aug.gan.networks import load_generator

    syn = recipe.data.synthetic
    regressor = load_pose_regressor(get_or_train(recipe.gan.resolution, world_seed=syn.seed,
                                                 num_identities=syn.num_identities))
    data, _ = data_pose(recipe, regressor, samples)
    res = coverage(generated_pose(load_generator(run / "gan.safetensors"), regressor, samples), data)
    write_json(cache, res)
    return res


def evaluate(args: argparse.Namespace) -> None:
    mcfg = MetricsConfig(
        inception_weights=args.inception_weights, lpips_weights=args.lpips_weights, num_images=args.fid_images,
        kid_subsets=100, kid_subset_size=min(1000, args.fid_images), ppl_samples=args.ppl_samples,
        ppl_epsilon=1e-4, ppl_sampling="end", batch_size=32, seed=0,
    )  # fmt: skip
    metrics = GanMetrics(mcfg, device=args.device)
    base = arm_recipe(args.recipe, "on", args.kimg, args.seeds[0], args.override)
    source = make_source(base.data, base.gan.resolution)
    # real images: the world's training images, in a stream order of its own (seed 10**6), first
    # `fid_images` for the reference set and the next `fid_images` for the real-vs-real floor
    tag = f"{args.inception_weights and Path(args.inception_weights).stem or 'fallback'}-{args.lpips_weights and Path(args.lpips_weights).stem or 'fallback'}"
    floor_path = args.work / f"real-vs-real-n{args.fid_images}-{tag}.json"
    reals = None

    def reals_fn():  # real features are computed once, on first need
        nonlocal reals
        if reals is None:
            reals = training_batches(source, 32, seed=10**6)
        return reals

    if floor_path.exists():
        floor = read_json(floor_path)
    else:
        t0 = time.time()
        ref = metrics.real_features(reals_fn())
        floor_feats = compute_features(metrics.feature_net, reals_fn(), args.fid_images, 32, args.device)
        kid_floor, _ = kid_from_features(ref, floor_feats, mcfg.kid_subsets, mcfg.kid_subset_size, 0)
        floor = {"fid": fid_from_features(ref, floor_feats), "kid": kid_floor}
        write_json(floor_path, floor)
        print(f"real features: {time.time() - t0:.0f} s", flush=True)

    rows, per_arm, curves, grids = [], {}, {}, {}
    data_gt45 = None  # the training images' share beyond |yaw| 45, as the regressor reads them
    for seed in args.seeds:
        init = w_stats(initial_generator(base, seed), args.w_samples, 10**6 + seed)
        rows.append({"arm": "init (step 0)", "seed": seed, "kimg": 0.0, **init})
        for arm in args.arms:
            d = run_dir(args.work, arm, seed, args.kimg)
            path = d / "gan.safetensors"
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: train it first (--arm {arm} --seeds {seed} --stage train)")
            G = load_generator(path, device=args.device).eval()
            cache = d / f"eval-n{args.fid_images}-p{args.ppl_samples}-{tag}.json"
            if cache.exists():  # metrics of this exact generator and setting, from an earlier call
                res = read_json(cache)
            else:
                t0 = time.time()
                res = metrics(G, reals_fn())
                print(f"[{arm} seed {seed}] metrics {time.time() - t0:.0f} s", flush=True)
                write_json(cache, res)
            recipe = arm_recipe(args.recipe, arm, args.kimg, seed, args.override)
            pose = pose_coverage(d, recipe, args.pose_samples) if args.pose_samples else {}
            data_gt45 = pose.get("share_gt45_data", data_gt45)
            row = {
                "arm": arm, "seed": seed, "kimg": args.kimg, "decorr_weight": recipe.gan.decorr_weight,
                **w_stats(G, args.w_samples, 10**6 + seed),
                "fid": res["fid"], "kid": res["kid"], "kid_std": res["kid_std"], "ppl": res["ppl"],
                **{k: pose[k] for k in POSE_KEYS if k in pose},
            }  # fmt: skip
            rows.append(row)
            per_arm.setdefault(arm, []).append(row)
            curves[(arm, seed)] = read_stats(d / "stats.jsonl")
            if seed == args.seeds[0]:
                grids[arm] = generate(G, seeds=range(64)).clamp(-1, 1)
            nets = {"feature_net": res["feature_net"], "perceptual_net": res["perceptual_net"]}

    summary = []
    if len(args.seeds) > 1:
        for arm in args.arms:
            keys = (*STAT_KEYS, *METRIC_KEYS, *(POSE_KEYS if args.pose_samples else ()))
            agg = aggregate(per_arm[arm], keys)
            summary.append({"arm": arm, "seeds": len(args.seeds), **agg})
            rows.append({"arm": f"{arm} (mean of {len(args.seeds)} seeds)", "seed": "-", "kimg": args.kimg,
                         **{k: agg[k] for k in keys}})  # fmt: skip
    rows.append({"arm": "real vs real (floor)", "seed": "-", "kimg": "-", "fid": floor["fid"], "kid": floor["kid"]})

    fallback = any(n.startswith("fallback") for n in nets.values())
    args.results.mkdir(parents=True, exist_ok=True)
    png = args.results / f"{args.name}.png"
    plot(png, grids, curves, args)
    notes = _notes(args, rows, nets, fallback, png)
    if args.pose_samples:
        notes += (f"\n- Pose coverage (issue 14): {args.pose_samples} generated faces (seeds 0..{args.pose_samples - 1}) and as "
                  "many training images read by the evaluation-only pose regressor (benchmarks/pose_regressor.py); yaw_tv = "
                  "total variation between their 10-degree yaw histograms over [-90, 90] (target <= 0.15), "
                  f"share_gt45_generated = share read beyond |yaw| 45 (the training images: {data_gt45:.3f}).")
    cols = ["arm", "seed", "kimg", "decorr_weight", "rho_mean", "rho_max", "var_cv", "fid", "kid", "ppl",
            *(POSE_KEYS if args.pose_samples else ())]
    title = (f"Table 1 at CPU scale: decorrelation loss off vs on (tiny 32 px, {args.kimg:g} kimg, seeds "
             f"{', '.join(map(str, args.seeds))}; FID/KID/PPL with {'OFFLINE FALLBACK' if fallback else 'local'} nets)")  # fmt: skip
    write_results(
        args.name, rows, title, notes=notes, columns=cols, out_dir=args.results,
        extra={"metrics_config": vars(mcfg), **nets, "fallback_nets": fallback, "summary": summary,
               "real_vs_real": floor, "w_samples": args.w_samples, "paper": PAPER,
               "curves": {f"{a}-s{s}": c for (a, s), c in curves.items()}},
    )  # fmt: skip


def _notes(args, rows, nets, fallback, png) -> str:
    by = {(r["arm"], r["seed"]): r for r in rows}
    lines = [
        f"- Feature nets: FID/KID `{nets['feature_net']}`, PPL `{nets['perceptual_net']}`."
        + (" These are the offline fallbacks (no local Inception / LPIPS-VGG16 weights on this machine):"
           " the numbers compare the two arms with each other only and are NOT comparable with the paper's"
           " FID/PPL." if fallback else ""),  # fmt: skip
        f"- Setup: recipe `{_rel(args.recipe)}` gan section (32 px, z = w = 128, batch 16), synthetic world, "
        f"{args.kimg:g} kimg per arm ({math.ceil(args.kimg * 1000 / 16 - 1e-6)} steps of batch 16), seeds {list(args.seeds)}; per seed both arms "
        "start from the same weights and see the same real batches in the same order; 'off' sets "
        "gan.decorr_weight=0 (within a step the later random draws differ, since the 'on' arm also draws "
        "the N z of Eq. 1). Overrides: " + (", ".join(args.override) or "none") + ".",
        f"- W statistics: G_ema mapping network on {args.w_samples} seeded z; 'init' is the untrained mapping "
        f"network. FID/KID: {args.fid_images} generated vs {args.fid_images} real images (8-bit quantised, "
        f"KID subsets of {min(1000, args.fid_images)}); 'real vs real' is the same estimate between two disjoint "
        f"real sets, i.e. the floor set by the sample size. PPL: {args.ppl_samples} samples in W, 'end' "
        "sampling, epsilon 1e-4, constant noise.",
        "- Scale: a 32 px generator after a few kimg is far from converged (the paper trains 25000 kimg); "
        "these numbers say how the loss acts early in training at this size, not what Table 1 would be.",
    ]
    for s in args.seeds:
        off, on = by.get(("off", s)), by.get(("on", s))
        if off and on:
            lines.append(
                f"- Seed {s}: mean |rho| {off['rho_mean']:.3f} -> {on['rho_mean']:.3f}, var CV {off['var_cv']:.3f} -> "
                f"{on['var_cv']:.3f}, FID {off['fid']:.2f} -> {on['fid']:.2f}, KID {off['kid']:.4f} -> {on['kid']:.4f}, "
                f"PPL {off['ppl']:.2f} -> {on['ppl']:.2f} (off -> on)."
            )
    lines += [f"- {PAPER}", f"- Figure: `{_rel(png)}` (sample grids of both arms from the same 64 seeds, "
              "and W statistics over training from each run's stats.jsonl, measured on G, not G_ema, with "
              "N = gan.decorr_samples z per point, so noisier than the table's and biased up for mean |rho|: "
              "with N = 256 even independent dimensions give E|rho| ~ 0.05)."]  # fmt: skip
    seeds = " ".join(map(str, args.seeds))
    lines.append(f"- Reproduce (each arm may run as its own process): `OMP_NUM_THREADS=1 python -m benchmarks.bench_decorr "
                 f"--kimg {args.kimg:g} --seeds {seeds} --arm on|off --stage train`, then the same with `--stage eval "
                 f"--fid-images {args.fid_images} --ppl-samples {args.ppl_samples}`; runs and cached metrics live in `{_rel(args.work)}`.")
    verdict = Path(args.verdict_file).read_text().strip() if args.verdict_file else ""
    if verdict:
        lines.append(f"- Verdict: {verdict}")
    return "\n".join(lines)


def _rel(path: str | Path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def plot(path: Path, grids: dict[str, torch.Tensor], curves: dict, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    grid_arms = [a for a in ("off", "on") if a in grids] or list(grids)[:2]
    fig, ax = plt.subplots(2, 3, figsize=(15, 9.5))
    for i, arm in enumerate(grid_arms):
        g = make_grid((grids[arm] + 1) / 2, nrow=8, padding=1, pad_value=1.0).permute(1, 2, 0).numpy()
        ax[0, i].imshow(g.clip(0, 1))
        ax[0, i].set_title(f"decorrelation {arm} (seed {args.seeds[0]}, {args.kimg:g} kimg, G_ema)")
        ax[0, i].axis("off")
    panels = [(ax[0, 2], "loss_decorr", "Eq. 1 loss (logged by the 'on' arm only)"),
              (ax[1, 0], "rho_mean", "mean |rho_ij| of w over training"),
              (ax[1, 1], "rho_max", "max |rho_ij| of w over training"),
              (ax[1, 2], "var_cv", "CV of Var[w_i] over training")]  # fmt: skip
    colors = {"off": "tab:red", "on": "tab:blue", "w0.0001": "tab:pink", "w0.001": "tab:purple", "w0.01": "tab:brown", "w0.1": "tab:orange", "w10": "tab:green"}
    for a, key, title in panels:
        for (arm, seed), recs in sorted(curves.items()):
            pts = [(r["kimg"], r[key]) for r in recs if key in r]
            if pts:
                a.plot(*zip(*pts), color=colors[arm], alpha=1.0 if seed == args.seeds[0] else 0.5,
                       ls="-" if seed == args.seeds[0] else "--", marker="o", ms=2.5, label=f"{arm}, seed {seed}")  # fmt: skip
        a.set_title(title)
        a.set_xlabel("kimg")
        if key == "loss_decorr":
            a.set_yscale("log")
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kimg", type=float, default=2.0, help="training length per arm, thousands of images")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["off", "on"],
                   help="arms: off (weight 0), on (the recipe's weight, the paper's 1), w0.0001 / w0.001 / w0.01 / w0.1 / w10 (weight study)")
    p.add_argument("--arm", choices=sorted(ARMS), default=None, help="train only this arm (one process per arm)")
    p.add_argument("--stage", choices=["train", "eval", "all"], default="all")
    p.add_argument("--work", type=Path, default=RESULTS / "cache" / "table1")
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny.yaml"))
    p.add_argument("--override", nargs="*", default=[], help="extra recipe overrides, section.key=value")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fid-images", type=int, default=1500)
    p.add_argument("--ppl-samples", type=int, default=500)
    p.add_argument("--w-samples", type=int, default=4096)
    p.add_argument("--pose-samples", type=int, default=2000,
                   help="generated and real faces read by the evaluation-only pose regressor (0: no pose columns)")
    p.add_argument("--inception-weights", default=None)
    p.add_argument("--lpips-weights", default=None)
    p.add_argument("--name", default="table1", help="results file stem")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder for <name>.json/.md/.png")
    p.add_argument("--verdict-file", default=None, help="text file with the interpretation written into the notes")
    args = p.parse_args(argv)
    if args.stage in ("train", "all"):
        for seed in args.seeds:
            for arm in ((args.arm,) if args.arm else args.arms):
                train_arm(args, arm, seed)
    if args.stage in ("eval", "all"):
        evaluate(args)


if __name__ == "__main__":
    main()
