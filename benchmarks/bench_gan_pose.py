"""Pose coverage of stage-1 generators: does the generator draw the turned heads its data has?

For each run folder, N faces G(w) (seeds 0..N-1, truncation 1) and N of the run's own training
images are read by the evaluation-only pose regressor (benchmarks/pose_regressor.py, trained on the
synthetic world with labels; never used by the method). Reported per run: the yaw histogram's total
variation distance to the data's (10-degree bins over [-90, 90]; target <= 0.15, issue 14), the
share of faces read beyond |yaw| 45 against the data's, yaw and pitch std, the regressor's
reading of the data against the data's true labels (how far to trust the reader), and its **mirror
agreement**: the correlation of its yaw of a face with minus its yaw of the mirrored face. On the world's
faces that is 0.99; on generated faces it says how far they are from anything the regressor (and the
decomposer, trained on the same world) knows how to read: a realism score in the units that matter here.
Beside it a classifier two-sample test (`two_sample_test`): how well a small CNN tells the generated faces
from the training images on held-out ones. Neither it nor the fallback FID sees everything an eye does: a
16/32-channel generator that drew the same blob in the middle of every face scored closer to the data on
both (C2ST 0.956, FID 0.27) than 32/64-channel ones with clear eyes and mouths (0.979-0.98, 0.47-0.54;
benchmarks/results/gan_pose_c16.md): look at gan/snapshots too.
Each run also gets RUN/gan/pose_coverage.json.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_gan_pose --runs runs/tiny [runs/other ...] --name gan_pose
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


from benchmarks.common import RESULTS, write_results
from benchmarks.pose_regressor import get_or_train, load_pose_regressor, mirror_agreement, predict
from facedis_aug.ops.io import JsonlLogger, write_json

BINS = torch.linspace(-90.0, 90.0, 19)  # 10-degree bins
TV_TARGET = 0.15


def histogram(yaw: Tensor) -> Tensor:
    """Share of yaw values [N] per 10-degree bin over [-90, 90] (values outside are clamped in)."""
    idx = torch.bucketize(yaw.clamp(-89.999, 89.999), BINS[1:-1])
    return torch.bincount(idx, minlength=len(BINS) - 1).double() / max(1, yaw.numel())


def total_variation(p: Tensor, q: Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


@torch.no_grad()
def generated_pose(G: Any, regressor: Any, n: int, batch: int = 100) -> dict[str, Tensor]:
    from facedis_aug.gan.networks import generate

    out: dict[str, list[Tensor]] = {"yaw": [], "pitch": [], "yaw_mirror": [], "images": []}
    for i in range(0, n, batch):
        img = generate(G, seeds=range(i, min(i + batch, n))).clamp(-1, 1)
        p = predict(regressor, img)
        for k in ("yaw", "pitch"):
            out[k].append(p[k])
        out["yaw_mirror"].append(predict(regressor, img.flip(-1))["yaw"])
        out["images"].append(img)
    return {k: torch.cat(v) for k, v in out.items()}



@torch.no_grad()
def data_pose(recipe: Any, regressor: Any, n: int) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Regressor reading of n training images of a run's recipe, and their true labels (world only)."""
    from facedis_aug.data.stream import make_source

    source = make_source(recipe.data, recipe.gan.resolution)
    n = min(n, len(source))
    if hasattr(source, "batch"):  # the synthetic world: images with their labels
        images, labels = source.batch(torch.arange(n))
    else:  # an image folder: no labels
        images, labels = torch.stack([source[i][0] for i in range(n)]), None
    x = images * 2 - 1
    p = predict(regressor, x)
    truth = None
    if isinstance(labels, dict) and "yaw" in labels:
        truth = {"yaw": labels["yaw"].float(), "pitch": labels["pitch"].float()}
    return {"yaw": p["yaw"], "pitch": p["pitch"], "yaw_mirror": predict(regressor, x.flip(-1))["yaw"], "images": x}, truth


def gan_stage_seconds(run: Path) -> float | None:
    """Seconds of the gan stage's last finished run, from RUN/log.jsonl (None when it never finished)."""
    log = run / "log.jsonl"
    done = [e for e in (JsonlLogger(log).read() if log.is_file() else []) if e.get("event") == "done"
            and e.get("stage") == "gan"]
    return float(done[-1]["seconds"]) if done else None


def two_sample_test(real: Tensor, fake: Tensor, steps: int = 400, batch: int = 64, seed: int = 0) -> dict[str, float]:
    """Classifier two-sample test (C2ST): a small CNN learns to tell real from generated images [N, 3, R, R] in
    [-1, 1] on the first half of each set (with mirror flips) and is scored on the second half: held-out accuracy
    (0.5: the two sets cannot be told apart; 1: always) and mean cross-entropy in nats (ln 2 = 0.693 at chance).
    Seeded, so two runs score alike. It tells a difference apart, not which difference matters (module doc)."""
    if real.ndim != 4 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"expected real and fake [N, C, R, R] alike, got {tuple(real.shape)} and {tuple(fake.shape)}")
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    n = min(len(real), len(fake)) // 2
    if n < batch:
        raise ValueError(f"need at least {2 * batch} images of each kind, got {len(real)} and {len(fake)}")
    c = real.shape[1]
    with torch.random.fork_rng():  # seeded weights without moving the caller's global generator
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Conv2d(c, 16, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(16, 32, 3, 2, 1),
                            nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x_train, x_test = torch.cat([real[:n], fake[:n]]), torch.cat([real[n : 2 * n], fake[n : 2 * n]])
    y = torch.cat([torch.ones(n), torch.zeros(n)])
    loss_fn = nn.BCEWithLogitsLoss()
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, 2 * n, (batch,), generator=g)
            xb = x_train[idx]
            flip = torch.rand(batch, generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = loss_fn(net(xb).squeeze(1), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        logits = torch.cat([net(x_test[i : i + 256]).squeeze(1) for i in range(0, 2 * n, 256)])
    return {"accuracy": float(((logits > 0).float() == y).float().mean()), "cross_entropy": float(loss_fn(logits, y))}


def final_fid(run: Path) -> tuple[float | None, str | None]:
    """(FID, feature net) of the last metrics line in RUN/gan/stats.jsonl (the gan stage writes one when
    `gan.metrics.enabled`), or (None, None)."""
    stats = run / "gan" / "stats.jsonl"
    lines = [e for e in (JsonlLogger(stats).read() if stats.is_file() else []) if "fid" in e]
    return (float(lines[-1]["fid"]), str(lines[-1].get("feature_net"))) if lines else (None, None)


def coverage(gen: dict[str, Tensor], data: dict[str, Tensor]) -> dict[str, Any]:
    hg, hd = histogram(gen["yaw"]), histogram(data["yaw"])
    return {
        "yaw_tv": total_variation(hg, hd),
        "share_gt45_generated": float((gen["yaw"].abs() > 45).float().mean()),
        "share_gt45_data": float((data["yaw"].abs() > 45).float().mean()),
        "yaw_std_generated": float(gen["yaw"].std()),
        "yaw_std_data": float(data["yaw"].std()),
        "pitch_std_generated": float(gen["pitch"].std()),
        "pitch_std_data": float(data["pitch"].std()),
        "mirror_agreement_generated": mirror_agreement(gen),
        "mirror_agreement_data": mirror_agreement(data),
        "hist_generated": hg.tolist(),
        "hist_data": hd.tolist(),
    }


def histogram_png(path: Path, results: dict[str, dict[str, Any]]) -> None:
    from matplotlib.figure import Figure  # a figure object: the user's pyplot backend is left alone

    fig = Figure(figsize=(3.4 * len(results), 2.8))
    centers = ((BINS[1:] + BINS[:-1]) / 2).numpy()
    for i, (name, r) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), i + 1)
        ax.bar(centers, r["hist_data"], width=9, alpha=0.5, label="training data")
        ax.bar(centers, r["hist_generated"], width=5, alpha=0.7, label="generated")
        ax.set_title(f"{name}: TV {r['yaw_tv']:.2f}", fontsize=8)
        ax.set_xlabel("yaw read by the regressor (deg)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders with gan/gan.safetensors and recipe.yaml")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--regressor", default=None, help="pose regressor weights (default: the cached one, trained when missing)")
    ap.add_argument("--name", default="gan_pose")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args(argv)
    from facedis_aug.gan.networks import load_generator
    from facedis_aug.gan.train import checkpoint_generator
    from facedis_aug.recipe import load_recipe

    t0 = time.perf_counter()
    regressor = None
    rows, results = [], {}
    for run in map(Path, args.runs):
        gen_path = run / "gan" / "gan.safetensors"
        recipe = load_recipe(run / "recipe.yaml")
        if gen_path.is_file():
            G, kimg = load_generator(gen_path), recipe.gan.kimg
        else:  # a run still training: its latest checkpoint's G_ema, labelled with the kimg it has reached
            try:
                G, kimg = checkpoint_generator(run / "gan", recipe.gan)
            except ValueError as e:
                raise SystemExit(f"{gen_path} is missing and {e}: train the gan stage first") from None
        if regressor is None:
            syn = recipe.data.synthetic
            reg_path = Path(args.regressor) if args.regressor else get_or_train(
                recipe.gan.resolution, world_seed=syn.seed, num_identities=syn.num_identities)
            regressor = load_pose_regressor(reg_path)
        gen = generated_pose(G, regressor, args.samples)
        data, truth = data_pose(recipe, regressor, args.samples)
        r = coverage(gen, data)
        r["c2st"] = two_sample_test(data["images"], gen["images"])
        if truth is not None:
            r["regressor_mae_on_data_yaw"] = float((data["yaw"] - truth["yaw"]).abs().mean())
            r["share_gt45_data_true"] = float((truth["yaw"].abs() > 45).float().mean())
        fid, feature_net = final_fid(run)
        r.update(kimg=kimg, samples=args.samples, regressor=str(reg_path), gan_stage_s=gan_stage_seconds(run),
                 channel_base=recipe.gan.channel_base, channel_max=recipe.gan.channel_max, fid=fid, fid_feature_net=feature_net)
        if gen_path.is_file():  # a checkpoint's numbers are not the run's
            write_json(run / "gan" / "pose_coverage.json", r)
        name = run.name
        results[name] = r
        rows.append({"run": name, "kimg": kimg, "channels": f"{recipe.gan.channel_base}/{recipe.gan.channel_max}",
                     "gan stage s": r["gan_stage_s"], "yaw TV": r["yaw_tv"], "TV target": TV_TARGET,
                     "|yaw|>45 generated": r["share_gt45_generated"], "|yaw|>45 data": r["share_gt45_data"],
                     "yaw std gen": r["yaw_std_generated"], "yaw std data": r["yaw_std_data"],
                     "pitch std gen": r["pitch_std_generated"], "pitch std data": r["pitch_std_data"],
                     "mirror agreement gen": r["mirror_agreement_generated"], "mirror agreement data": r["mirror_agreement_data"],
                     "regressor MAE on data": r.get("regressor_mae_on_data_yaw", ""),
                     "C2ST accuracy": r["c2st"]["accuracy"], "C2ST cross-entropy": r["c2st"]["cross_entropy"],
                     "FID (run's own)": "" if fid is None else fid, "FID feature net": feature_net or ""})
    notes = (f"{args.samples} generated faces (seeds 0..{args.samples - 1}, truncation 1) and {args.samples} training images "
             "per run, yaw and pitch read by the evaluation-only pose regressor (benchmarks/pose_regressor.py). yaw TV: "
             "total variation between the two yaw histograms (10-degree bins over [-90, 90]). 'regressor MAE on data': its "
             "yaw error on the training images against their true labels. 'mirror agreement': r of the regressor's yaw of a "
             "face with minus its yaw of the mirrored face (a realism score: how readable the faces are). 'gan stage s': the stage's wall time from "
             "RUN/log.jsonl (machine load as it was then). 'channels': the gan's channel_base / channel_max. 'FID (run's own)': "
             "the last FID the gan stage wrote to RUN/gan/stats.jsonl, labelled with its feature net (fallback nets are "
             "comparable only with each other). 'C2ST': a small CNN trained (400 steps, seeded) to tell the generated "
             f"faces from the training images on {args.samples // 2} of each, scored on the other {args.samples // 2}: held-out "
             "accuracy (0.5 = cannot tell them apart) and cross-entropy (0.693 at chance). Picture: "
             f"{args.name}.png. Took {time.perf_counter() - t0:.0f} s.")
    out = write_results(args.name, rows, "Stage 1 pose coverage: generated yaw against the training data's",
                        notes=notes, extra={"runs": results}, out_dir=args.out_dir)
    histogram_png(Path(out) / f"{args.name}.png", results)


if __name__ == "__main__":
    main()
