"""Pose-balance benchmark (issue 7): does PoseRebalanced make a recognizer better at profile faces?

Four arms train the same recognizer (timm backbone + margin softmax, `benchmarks/recognizer.py`) on
the same schedule and are scored with a CFP-style protocol (`benchmarks/pair_protocol.py`) on
identities of another world seed: 10-fold verification accuracy on frontal-frontal (FF) and
frontal-profile (FP, |yaw| >= 60) pairs.

    (a) real        labelled images of the GAN's own CASIA-like pool (world seed 0), yaw mostly frontal
    (b) classical   (a) + albumentations flips, affine and colour jitter
    (c) rebalanced  (a) + `PoseRebalanced(real, bundle)`: synthetic identities at the yaws the bundle's
                    own decomposer finds missing (no world pose label used)
    (d) oracle      the same image indices (identity, light, background) rendered at uniform yaw

    OMP_NUM_THREADS=1 python -m benchmarks.bench_pose_balance --bundle RUN     # RUN: a train_gan run folder
    OMP_NUM_THREADS=1 python -m benchmarks.bench_pose_balance                  # trains the bundle itself
    python -m benchmarks.bench_pose_balance --quick                             # CI smoke size (seconds)

Everything is cached in --cache-dir (default benchmarks/results/cache/pose_balance[_quick]/): the data
sets, a checkpoint per training arm, `arm_<arm>_seed<k>.json` per finished arm and the recognizer
weights `recognizer_<arm>_seed<k>.safetensors` (the oracle's is what issue 8 loads with
`benchmarks.recognizer.load_recognizer`). Rerunning skips finished arms and resumes a training one;
the table shows every finished arm and seed in the cache. To measure a new bundle (e.g. after a
decomposer fix) keep (a), (b), (d) and redo (c): `--forget-rebalanced --bundle NEW_RUN_OR_BUNDLE`.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent

from benchmarks import pose_balance_data as PD
from benchmarks.common import RESULTS
from benchmarks.pair_protocol import PROTOCOLS, kfold_accuracy, make_pairs, pair_scores
from benchmarks.pose_balance_report import ARMS, jsonable, pair_stats, report
from benchmarks.recognizer import RecognizerConfig, TrainConfig, embed, save_recognizer, train_recognizer
from facedis_aug.data.synthetic import SyntheticWorld
from facedis_aug.ops.io import load_safetensors, read_json, save_safetensors, write_json



@dataclass
class Settings:
    """Everything the numbers depend on (the cache refuses a mismatch). Sizes in images / steps."""

    resolution: int = 32  # px of every image (the tiny recipe's generator size)
    world_seed: int = 0  # the tiny recipe's world: seed 0, 2000 identities, pose casia
    world_ids: int = 2000
    world_images: int = 100_000  # the tiny recipe's data set: images 0..world_images-1 of that world
    nuisance: str = "per_image"  # clothes and background: "per_image" (redrawn) or "identity" (the world's)
    train_ids: int = 500  # recognizer classes: identities 0..train_ids-1 of that world
    per_id: int = 16  # their first per_id images in the GAN's data order
    test_seed: int = 1  # another world seed: other people
    test_ids: int = 600
    test_frontal: int = 4  # images per test identity with |yaw| <= 15
    test_profile: int = 4  # and with 60 <= |yaw| <= 90
    folds: int = 10
    pairs_per_fold: int = 300  # positives per fold and protocol (as many negatives)
    arch: str = "resnet10t"
    input_size: int = 32
    embedding_dim: int = 128
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=3000, batch=128))
    max_synthetic_ratio: float = 1.0  # arm (c): at most this many synthetic images per real one
    syn_per_id: int = 16  # arm (c): images per synthetic identity
    reg_images: int = 24000  # evaluation-only pose regressor (measures the synthetic images' yaw)
    reg_steps: int = 2500
    quick: bool = False


QUICK = dict(world_ids=24, train_ids=24, per_id=4, test_ids=20, test_frontal=2, test_profile=2, folds=2, pairs_per_fold=20,
             embedding_dim=32, train=TrainConfig(steps=6, batch=32, warmup=2, checkpoint_every=3), syn_per_id=4,
             reg_images=64, reg_steps=3, quick=True)  # fmt: skip


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------- cache
class Cache:
    """The cache folder: settings.json (checked), data_*.safetensors, arm_*.json, weights."""

    def __init__(self, root: Path, settings: Settings):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        path, mine = root / "settings.json", jsonable(asdict(settings))
        if path.is_file():
            old = read_json(path)
            diff = sorted(k for k in set(old) | set(mine) if k != "bundle" and old.get(k) != mine.get(k))
            if diff:
                raise SystemExit(f"{path}: this cache was made with other settings ({', '.join(diff)}); use another --cache-dir or delete it")
            self.settings_json = old
        else:
            write_json(path, mine)
            self.settings_json = mine

    def bundle_id(self, bundle_id: str) -> None:
        """Record the bundle of arm (c); refuse a different one later (its numbers would mix)."""
        old = self.settings_json.get("bundle")
        if old is not None and old != bundle_id:
            raise SystemExit(f"{self.root}: arm (c) data was made with bundle {old}, not {bundle_id}; use another --cache-dir or delete it")
        self.settings_json["bundle"] = bundle_id
        write_json(self.root / "settings.json", self.settings_json)

    def forget_rebalanced(self) -> None:
        """Drop arm (c)'s data, results, weights and bundle id, so another bundle can be measured
        while the other arms stay cached (their numbers do not depend on the bundle)."""
        for pattern in ("data_rebalanced.safetensors", "arm_rebalanced_seed*.json", "ckpt_rebalanced_*", "recognizer_rebalanced_*"):
            for path in self.root.glob(pattern):
                path.unlink()
        self.settings_json.pop("bundle", None)
        write_json(self.root / "settings.json", self.settings_json)

    def data(self, name: str, build) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """data_<name>.safetensors, built by build() -> (tensors, meta) when missing (with build_s)."""
        path = self.root / f"data_{name}.safetensors"
        if path.is_file():
            return load_safetensors(path)
        t0 = time.perf_counter()
        tensors, meta = build()
        meta["build_s"] = time.perf_counter() - t0
        save_safetensors(path, tensors, meta)
        log(f"[data] {name}: {len(tensors['labels'])} images in {meta['build_s']:.0f} s -> {path.name}")
        return tensors, meta


# ---------------------------------------------------------------------------------- bundle
def bundle_train_seconds(run: Path) -> float | None:
    """Sum of the 'done' seconds in a train_gan run's log.jsonl (None when unreadable)."""
    import json

    try:
        events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    except OSError:
        return None
    secs = [float(e["seconds"]) for e in events if e.get("event") == "done" and "seconds" in e]
    return sum(secs) if secs else None


def gan_images(cache: Cache, s: Settings) -> Path:
    """The real arm's images as a flat PNG folder (no labels): what the bundle's GAN trains on."""
    real, _ = real_data(cache, s)
    return PD.export_pngs(real["images"], real["indices"], cache.root / "gan_images")


def resolve_bundle(arg: str | None, cache: Cache, s: Settings, train: bool = True) -> tuple[Path, dict[str, Any]]:
    """The bundle folder of arm (c): quick -> a random-weight tiny bundle; --bundle a bundle or a
    train_gan run folder (trained / resumed with the tiny recipe when it has no bundle yet);
    neither -> a run folder in the cache, trained here. A run trained here learns from the real
    arm's images only (`--data` the PNG folder; with nuisance "identity", the recipe's own world,
    of which the real arm is a subset). train=False: FileNotFoundError instead of training.
    Returns (path, info for the report)."""
    if s.quick and arg is None:
        from facedis_aug.testing import make_tiny_bundle

        path = cache.root / "tiny_bundle"
        if not (path / "manifest.json").is_file():
            make_tiny_bundle(path, resolution=s.resolution)
        return path, {"kind": "random-weight tiny bundle (make_tiny_bundle): a smoke test, not a measurement"}
    p = Path(arg) if arg else cache.root / "gan_run"
    if (p / "manifest.json").is_file():
        return p, {"kind": "bundle folder", "path": str(p)}
    bundle = p / "export" / "bundle"
    if not (bundle / "manifest.json").is_file():
        if not train:
            raise FileNotFoundError(bundle)
        cmd = [sys.executable, "-m", "train_gan", "--recipe", str(REPO / "recipes" / "tiny.yaml"), "--out", str(p)]
        if s.nuisance == "per_image":
            cmd += ["--data", str(gan_images(cache, s))]
        log(f"[bundle] none at {bundle}; running {' '.join(cmd)} (resumable)")
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), MKL_NUM_THREADS=os.environ.get("MKL_NUM_THREADS", "1"))
        subprocess.run(cmd, cwd=REPO, env=env, check=True)
    return bundle, {"kind": "train_gan run (recipes/tiny.yaml)", "path": str(p), "train_s": bundle_train_seconds(p)}


def world_check(recipe: dict[str, Any] | None, cache: Cache, s: Settings) -> str:
    """'' when the bundle's GAN trained on the real arm's images (or, nuisance "identity", on the
    world they are a subset of), else a warning for the report."""
    data = (recipe or {}).get("data") or {}
    if s.nuisance == "per_image":
        folder = (cache.root / "gan_images").resolve()
        if data.get("source") == "folder" and data.get("path") and Path(data["path"]).resolve() == folder:
            return ""
        return (f"WARNING: the bundle's GAN did not train on the real arm's images (data.source {data.get('source')!r}, "
                f"path {data.get('path')!r}; expected the folder {folder}). ")  # fmt: skip
    syn = data.get("synthetic") or {}
    want = {"source": "synthetic", "seed": s.world_seed, "num_identities": s.world_ids, "num_images": s.world_images, "pose": "casia",
            "frontal_share": 0.85, "frontal_yaw": 30.0, "yaw_range": 90.0}  # fmt: skip
    got = {"source": data.get("source")} | {k: syn.get(k) for k in want if k != "source"}
    diff = [f"{k} {got[k]!r} (real arm: {v!r})" for k, v in want.items() if got[k] != v]
    return "" if not diff else "WARNING: the bundle's GAN did not train on the real arm's world: " + ", ".join(diff) + ". "


# ---------------------------------------------------------------------------------- data of the arms
def real_data(cache: Cache, s: Settings) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    def build():
        world = SyntheticWorld(s.resolution, s.world_seed, s.world_ids)
        idx, ident = PD.pool_indices(world, s.train_ids, s.per_id, max_index=s.world_images)
        d = PD.render_set(world, idx, ident, "casia", s.nuisance == "per_image")
        return {**d, "indices": idx}, {"num_classes": s.train_ids}

    return cache.data("real", build)


def oracle_data(cache: Cache, s: Settings) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    def build():
        real, _ = real_data(cache, s)
        world = SyntheticWorld(s.resolution, s.world_seed, s.world_ids)
        d = PD.render_set(world, real["indices"], real["labels"], "uniform", s.nuisance == "per_image")
        return {**d, "indices": real["indices"]}, {"num_classes": s.train_ids}

    return cache.data("oracle", build)


def regressor_path(cache: Cache, s: Settings) -> Path:
    """The evaluation-only pose regressor (benchmarks/pose_regressor.py), trained on uniform-yaw
    images of the training world; quick mode trains a throwaway one in the cache folder."""
    from benchmarks import pose_regressor as PR

    if s.quick:
        path = cache.root / "pose_regressor_quick.safetensors"
        if not path.is_file():
            PR.train_pose_regressor(s.resolution, s.reg_images, s.reg_steps, 0, path, world_seed=s.world_seed,
                                    num_identities=s.world_ids, width=4, eval_images=8, log=None)  # fmt: skip
        return path
    return PR.get_or_train(s.resolution, s.reg_images, s.reg_steps, 0, world_seed=s.world_seed, num_identities=s.world_ids, log=log)


def rebalanced_data(cache: Cache, s: Settings, bundle: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Real set + PoseRebalanced's synthetic part (rendered once). Tensors add yaw_bundle (the
    bundle's estimate for real images, used for the selection), yaw_claimed (the target yaw of each
    synthetic image) and yaw_measured (the evaluation-only regressor's reading of it); NaN elsewhere."""
    from benchmarks import pose_regressor as PR
    from facedis_aug.augment import PoseRebalanced

    def build():
        real, _ = real_data(cache, s)
        n = len(real["labels"])
        # the report's 15-degree bins, as far as the bundle's measured reach goes (PoseRebalanced refuses bins
        # beyond it: the synthetic faces there would not have their bin's yaw)
        from facedis_aug.augment.engine import open_bundle

        blo, bhi = open_bundle(bundle).yaw_bounds
        inside = [float(e) for e in PD.YAW_EDGES if blo < e < bhi]
        edges = [blo, *inside, bhi] if inside else [blo, bhi]
        ds = PoseRebalanced(PD.TensorFaces(real["images"], real["labels"]), bundle, target="uniform", bins=edges,
                            images_per_identity=s.syn_per_id,
                            max_synthetic=int(s.max_synthetic_ratio * n), seed=0, num_real_classes=s.train_ids)  # fmt: skip
        images, labels = [], []
        for i in range(n, len(ds), 256):
            items = ds.__getitems__(list(range(i, min(i + 256, len(ds)))))
            images.append(torch.stack([x for x, _ in items]))
            labels += [int(y) for _, y in items]
        m = ds.num_synthetic
        syn = torch.cat(images) if images else torch.zeros(0, 3, s.resolution, s.resolution)
        if syn.shape[-1] != s.resolution:
            syn = torch.nn.functional.interpolate(syn, size=(s.resolution,) * 2, mode="bilinear", antialias=True).clamp(0, 1)
        nan = lambda k: torch.full((k,), float("nan"))  # noqa: E731
        claimed = torch.tensor(ds.synthetic.yaws() if m else [], dtype=torch.float32)
        reg = PR.load_pose_regressor(regressor_path(cache, s))
        measured = PR.predict(reg, syn * 2 - 1)["yaw"] if m else nan(0)
        est = torch.tensor(ds.real_yaw, dtype=torch.float32)
        tensors = {
            "images": torch.cat([real["images"], (syn * 255).round().to(torch.uint8)]),
            "labels": torch.cat([real["labels"], torch.tensor(labels, dtype=torch.long)]),
            "yaw": torch.cat([real["yaw"], nan(m)]),
            "yaw_bundle": torch.cat([est, nan(m)]), "yaw_claimed": torch.cat([nan(n), claimed]),
            "yaw_measured": torch.cat([nan(n), measured]),
        }  # fmt: skip
        diag = {
            "bundle_vs_true_yaw_real_r": PR.pearson(est, real["yaw"]), "bundle_vs_true_yaw_real_mae": float((est - real["yaw"]).abs().mean()),
            "claimed_vs_measured_yaw_syn_r": PR.pearson(claimed, measured) if m > 2 else float("nan"),
            "claimed_vs_measured_yaw_syn_mae": float((claimed - measured).abs().mean()) if m else float("nan"),
            "regressor": str(regressor_path(cache, s)), "regressor_heldout_mae": reg.meta.get("heldout_mae"),
        }  # fmt: skip
        return tensors, {"num_classes": ds.num_classes, "n_real": n, "n_synthetic": m, "repr": repr(ds), "diagnostics": diag,
                         "bundle_histogram_before": ds.histogram_before(), "bundle_histogram_after": ds.histogram_after()}  # fmt: skip

    if not (cache.root / "data_rebalanced.safetensors").is_file():
        regressor_path(cache, s)  # trained (once) before the clock of the arm's data starts: evaluation only
    return cache.data("rebalanced", build)


def test_data(cache: Cache, s: Settings) -> dict[str, torch.Tensor]:
    def build():
        world = SyntheticWorld(s.resolution, s.test_seed, s.test_ids)
        d = PD.render_test_set(world, s.test_ids, s.test_frontal, s.test_profile, per_image=s.nuisance == "per_image")
        return d, {"num_classes": s.test_ids}

    return cache.data("test", build)[0]


def classical_augment(batch: np.ndarray, seed: int) -> np.ndarray:
    """Arm (b): albumentations on uint8 [B, H, W, 3]: horizontal flip, small affine (scale,
    shift, rotation), colour jitter; seeded per batch."""
    import albumentations as A
    import cv2

    t = A.Compose([
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.06, 0.06), rotate=(-12, 12), border_mode=cv2.BORDER_REFLECT_101, p=0.8),
        A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.04, p=0.8),
    ], seed=seed % 2**32)  # fmt: skip
    return np.stack([t(image=x)["image"] for x in batch])


# ---------------------------------------------------------------------------------- one arm
def arm_histograms(arm: str, d: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Yaw histograms of an arm's training data (world truth; arm (c)'s synthetic part by the
    bundle's claim and by the regressor's measurement)."""
    if arm != "rebalanced":
        h = PD.histogram(d["yaw"])
        return {"true": h, "headline": h}
    real = d["yaw"][torch.isfinite(d["yaw"])]
    syn_c, syn_m = d["yaw_claimed"], d["yaw_measured"]
    syn_c, syn_m = syn_c[torch.isfinite(syn_c)], syn_m[torch.isfinite(syn_m)]
    claimed, measured = PD.histogram(torch.cat([real, syn_c])), PD.histogram(torch.cat([real, syn_m]))
    return {"real_true": PD.histogram(real), "synthetic_claimed": PD.histogram(syn_c), "synthetic_measured": PD.histogram(syn_m),
            "claimed": claimed, "measured": measured, "headline": measured}  # fmt: skip


def run_arm(arm: str, seed: int, cache: Cache, s: Settings, test: dict[str, torch.Tensor], pairs: dict, bundle: Path | None) -> dict[str, Any]:
    out = cache.root / f"arm_{arm}_seed{seed}.json"
    if out.is_file():
        log(f"[{arm} seed {seed}] finished earlier: {out.name} (skipped)")
        return {**read_json(out), "skipped": True}
    log(f"[{arm} seed {seed}] {ARMS[arm]}")
    t0 = time.perf_counter()
    if arm in ("real", "classical"):
        d, meta = real_data(cache, s)
    elif arm == "oracle":
        d, meta = oracle_data(cache, s)
    else:
        d, meta = rebalanced_data(cache, s, bundle)
    data_s = time.perf_counter() - t0
    cfg = RecognizerConfig(s.arch, s.input_size, s.embedding_dim)
    ckpt = cache.root / f"ckpt_{arm}_seed{seed}.safetensors"
    model, stats = train_recognizer(d["images"], d["labels"], int(meta["num_classes"]), cfg, s.train, seed,
                                    augment=classical_augment if arm == "classical" else None, checkpoint=ckpt, log=log)  # fmt: skip
    weights = save_recognizer(model, cache.root / f"recognizer_{arm}_seed{seed}.safetensors",
                              {"arm": arm, "seed": seed, "settings": jsonable(asdict(s)), "train": stats})  # fmt: skip
    t1 = time.perf_counter()
    emb = embed(model, test["images"])
    acc = {p: kfold_accuracy(pair_scores(emb, pairs[p]), pairs[p]["same"], pairs[p]["fold"]) for p in PROTOCOLS}
    eval_s = time.perf_counter() - t1
    res = {
        "arm": arm, "seed": seed, "label": ARMS[arm], "accuracy": acc, "train": stats, "weights": str(weights),
        "num_images": len(d["labels"]), "num_classes": int(meta["num_classes"]), "n_synthetic": int(meta.get("n_synthetic", 0)),
        "histograms": arm_histograms(arm, d), "data_build_s": float(meta["build_s"]), "data_load_s": data_s,
        "train_s": stats["train_s"], "eval_s": eval_s, "load_average_at_end": list(os.getloadavg()),
        "rebalanced": {k: meta[k] for k in ("diagnostics", "bundle_histogram_before", "bundle_histogram_after", "repr")} if arm == "rebalanced" else None,
    }  # fmt: skip
    write_json(out, res)
    ckpt.unlink(missing_ok=True)
    log(f"[{arm} seed {seed}] FF {acc['FF']['mean']:.4f} +- {acc['FF']['std']:.4f}  FP {acc['FP']['mean']:.4f} +- {acc['FP']['std']:.4f}")
    return {**res, "skipped": False}


# ---------------------------------------------------------------------------------- main
def open_bundle_checked(arg: str | None, cache: Cache, s: Settings, train: bool = True) -> tuple[Path, dict[str, Any]]:
    """resolve_bundle, then record its id in the cache (refusing another bundle) and check its data."""
    from facedis_aug.bundle import Bundle

    bundle, info = resolve_bundle(arg, cache, s, train)
    b = Bundle.load(bundle)
    files = b.manifest["files"]
    cache.bundle_id(f"{files['generator.safetensors']['sha256'][:16]}/{files['decomposer.safetensors']['sha256'][:16]}")
    info["id"] = cache.settings_json["bundle"]
    entry = b.info["directions"]["yaw"]
    info["yaw_calibration"] = {"intercept_deg": float(entry.get("intercept", 0.0)), "deg_per_sigma": float(entry["units_per_sigma"])}
    info["world_check"] = "" if s.quick else world_check(b.recipe, cache, s)
    return bundle, info


def synthetic_summary(cache: Cache, info: dict[str, Any], out_png: Path) -> dict[str, Any] | None:
    """Arm (c)'s synthetic images: a grid of 32 (claimed / regressor yaw over each) and the share
    whose claimed yaw needs |s| > 10 sigma along v_yaw under the bundle's calibration (past which
    turned faces break up); None before arm (c) has data."""
    path = cache.root / "data_rebalanced.safetensors"
    if not path.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facedis_aug.ops.io import atomic_write

    t, _ = load_safetensors(path)
    syn = torch.flatten(torch.nonzero(torch.isfinite(t["yaw_claimed"])))
    out: dict[str, Any] = {"n": len(syn)}
    cal = info.get("yaw_calibration")
    if cal and len(syn):
        s_abs = ((t["yaw_claimed"][syn] - cal["intercept_deg"]) / cal["deg_per_sigma"]).abs()
        out["share_abs_s_gt_10"] = float((s_abs > 10).float().mean())
        out["median_abs_s"] = float(s_abs.median())
    if len(syn):
        pick = syn[torch.linspace(0, len(syn) - 1, 32).long()]
        fig, axes = plt.subplots(4, 8, figsize=(8, 4.6))
        for ax, i in zip(axes.ravel(), pick.tolist()):
            ax.imshow(t["images"][i].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(f"{t['yaw_claimed'][i]:+.0f} / {t['yaw_measured'][i]:+.0f}", fontsize=7)
            ax.axis("off")
        fig.suptitle("arm (c) synthetic images: claimed yaw / yaw read by the evaluation-only regressor (deg)", fontsize=8)
        fig.tight_layout()
        with atomic_write(out_png, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)
        out["png"] = out_png.name
    return out


def finished_arms(cache: Cache, res: dict[str, dict[int, dict]]) -> dict[str, dict[int, dict]]:
    """res plus every other finished arm / seed in the cache (the table shows all of them)."""
    out = {a: dict(v) for a, v in res.items()}
    for path in sorted(cache.root.glob("arm_*_seed*.json")):
        r = read_json(path)
        if r.get("arm") in ARMS:
            out.setdefault(r["arm"], {}).setdefault(int(r["seed"]), {**r, "skipped": True})
    return {a: dict(sorted(out[a].items())) for a in ARMS if a in out}


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny everything, random-weight bundle: a smoke test (seconds)")
    ap.add_argument("--bundle", default=None, help="a bundle folder or a train_gan run folder (default: train one in the cache)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="recognizer seeds (2-3 where affordable)")
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--steps", type=int, default=None, help="training steps per arm")
    ap.add_argument("--train-ids", type=int, default=None)
    ap.add_argument("--per-id", type=int, default=None)
    ap.add_argument("--test-ids", type=int, default=None)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out-dir", default=None, help="results folder (default benchmarks/results; quick: the cache folder)")
    ap.add_argument("--name", default=None, help="results file name (default pose_balance[_quick])")
    ap.add_argument("--forget-rebalanced", action="store_true", help="drop arm (c)'s cached data and results first (to measure a new bundle)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    s = Settings(**QUICK) if args.quick else Settings()
    for key in ("steps",):
        if getattr(args, key) is not None:
            s.train = TrainConfig(**{**asdict(s.train), key: getattr(args, key)})
    for key in ("train_ids", "per_id", "test_ids"):
        if getattr(args, key) is not None:
            setattr(s, key, getattr(args, key))
    return args, s


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run (or resume) the benchmark; returns {"out_dir", "name", "results", "skipped": [arm/seed]}."""
    args, s = parse(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    name = args.name or ("pose_balance_quick" if s.quick else "pose_balance")
    cache = Cache(Path(args.cache_dir) if args.cache_dir else RESULTS / "cache" / name, s)
    out_dir = Path(args.out_dir) if args.out_dir else (cache.root if s.quick else RESULTS)
    if args.forget_rebalanced:
        cache.forget_rebalanced()
    test = test_data(cache, s)
    pairs = make_pairs(test["labels"], test["is_profile"], s.folds, s.pairs_per_fold, seed=0)
    pstats = pair_stats(test, pairs)
    res: dict[str, dict[int, dict]] = {}
    bundle, bundle_info = None, {}
    order = [a for a in ("real", "classical", "oracle", "rebalanced") if a in args.arms]  # the bundle may need training: last
    for arm in order:
        for seed in args.seeds:
            if arm == "rebalanced" and bundle is None and not (cache.root / f"arm_{arm}_seed{seed}.json").is_file():
                bundle, bundle_info = open_bundle_checked(args.bundle, cache, s)
            res.setdefault(arm, {})[seed] = run_arm(arm, seed, cache, s, test, pairs, bundle)
    if not bundle_info and any(cache.root.glob("arm_rebalanced_seed*.json")):
        try:  # the report names the bundle of arm (c) even when that arm finished in an earlier invocation
            bundle_info = open_bundle_checked(args.bundle, cache, s, train=False)[1]
        except (FileNotFoundError, SystemExit) as e:
            bundle_info = {"kind": f"not found now ({type(e).__name__}: {e})", "id": cache.settings_json.get("bundle")}
    bundle_info["synthetic"] = synthetic_summary(cache, bundle_info, out_dir / f"{name}_synthetic.png")
    report(finished_arms(cache, res), s, pstats, bundle_info, name, out_dir, time.perf_counter() - t0)
    skipped = [f"{a}/{k}" for a in res for k in res[a] if res[a][k].get("skipped")]
    return {"out_dir": out_dir, "name": name, "results": res, "skipped": skipped, "pairs": pstats, "test": test, "pair_sets": pairs}


if __name__ == "__main__":
    main()
