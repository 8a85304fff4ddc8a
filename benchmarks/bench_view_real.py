"""The decomposer's view head on real faces, scored against MediaPipe's face-mesh yaw (evaluation only).

    python -m benchmarks.bench_view_real --bundle RUN/export/bundle --mediapipe-python /path/to/venv/bin/python \
        [--data ../shared/data] [--world 256] [--name view_real]

`../shared/data` has no yaw labels, so an external estimator stands in for them: MediaPipe's face
mesh (`mediapipe==0.10.21`, model inside the wheel) run in its own Python by
benchmarks/mediapipe_yaw.py. It is a benchmark requirement, never a dependency of the package.

Rows (one per image set): faces MediaPipe found, the view head's yaw against MediaPipe's: Pearson r,
least-squares slope (1 = the right scale, 0 = a constant), MAE, the MAE of answering 0 for every
face, and flip consistency r(yaw(x), -yaw(flip x)) (necessary, not enough: a head that reads
nothing but symmetry passes it).
- `world`: faces of the bundle's synthetic world (its recipe's seed and identities) with known yaw,
  uniform within +-45, rendered at 64 px (MediaPipe needs the pixels; the view head sees them resized
  to its input): MediaPipe against the truth first (its sign and scale on our faces), then the view
  head against both;
- `att`: the AT&T / ORL set (400 grey faces, 92x112, centre square crop; mild pose);
- `celeba`: the 15 CelebA-style crops.
The view head sees each image as the bundle's users give it: RGB in [-1, 1], resized by
`ops.resize.resize_square` (the decomposer's training resize). Writes results/NAME.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.common import RESULTS, write_results
from benchmarks.bench_table2 import world_settings
from benchmarks.pose_regressor import render_world
from facedis_aug.bundle import Bundle
from facedis_aug.data.folder import prepare_face, to_rgb
from facedis_aug.ops.resize import resize_square

HERE = Path(__file__).resolve().parent
WORLD_START = 900_000  # world images far from any training index


def load_folder(paths: list[Path], size: int) -> np.ndarray:
    """Image files -> uint8 [N, size, size, 3] RGB (centre square crop, LANCZOS)."""
    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(np.asarray(prepare_face(to_rgb(im), "none", size)))
    return np.stack(out)


def mediapipe_yaw(python: str, images: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N] degrees, NaN where MediaPipe found no face."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "images.npy", Path(tmp) / "yaw.json"
        np.save(src, images)
        subprocess.run([python, str(HERE / "mediapipe_yaw.py"), str(src), str(dst)], check=True)
        return np.array([np.nan if v is None else v for v in json.loads(dst.read_text())], dtype=np.float64)


@torch.no_grad()
def view_yaw(bundle: Bundle, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The view head's yaw of images [N, H, W, 3] uint8 and of their mirror images (degrees, [N] each)."""
    dec = bundle.decomposer
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    x = resize_square(x, dec.cfg.image_size)
    return dec.estimate_view(x)["yaw"].double().numpy(), dec.estimate_view(x.flip(3))["yaw"].double().numpy()


def _r(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _slope(pred: np.ndarray, ref: np.ndarray) -> float:
    ref_c = ref - ref.mean()
    return float(ref_c @ (pred - pred.mean()) / max(ref_c @ ref_c, 1e-12))


def scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    return {"r": _r(pred, ref), "slope": _slope(pred, ref), "MAE": float(np.abs(pred - ref).mean()),
            "MAE of 0": float(np.abs(ref).mean())}


def picture(sets: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    from matplotlib.figure import Figure  # a figure object: the user's pyplot backend is left alone

    fig = Figure(figsize=(3.6 * len(sets), 3.3))
    for k, (name, s) in enumerate(sets.items()):
        ax = fig.add_subplot(1, len(sets), k + 1)
        ok = ~np.isnan(s["mp"])
        if "true" in s:
            ax.scatter(s["true"], s["mp"], s=6, c="tab:grey", label="MediaPipe vs truth")
            ax.scatter(s["true"], s["view"], s=6, c="tab:red", label="view head vs truth")
            ax.set_xlabel("true yaw (deg)")
        else:
            ax.scatter(s["mp"][ok], s["view"][ok], s=8, c="tab:red", label="view head")
            ax.set_xlabel("MediaPipe yaw (deg)")
        lim = 60
        ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8, label="y = x")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_ylabel("yaw (deg)")
        ax.set_title(f"{name} (n={int(ok.sum())})", fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--mediapipe-python", required=True, help="a Python with mediapipe==0.10.21 installed")
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--world", type=int, default=256, help="world faces of known yaw (0: skip the world row)")
    ap.add_argument("--world-yaw", type=float, default=45.0, help="world faces' yaw range (MediaPipe is good to ~45)")
    ap.add_argument("--name", default="view_real")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not Path(args.mediapipe_python).exists():
        raise SystemExit(f"{args.mediapipe_python}: no such Python (make one: python3 -m venv V && V/bin/pip install mediapipe==0.10.21)")
    bundle = Bundle.load(args.bundle)
    rows: list[dict[str, Any]] = []
    sets: dict[str, dict[str, np.ndarray]] = {}

    if args.world:
        ws, _ = world_settings(bundle.recipe)
        imgs, lab = render_world(args.world * 4, 64, world_seed=ws["world_seed"], num_identities=ws["num_identities"],
                                 start=WORLD_START)
        keep = (lab[:, 0].abs() <= args.world_yaw).nonzero()[:, 0][: args.world]
        imgs, true = imgs[keep].permute(0, 2, 3, 1).contiguous().numpy(), lab[keep, 0].double().numpy()
        mp = mediapipe_yaw(args.mediapipe_python, imgs)
        view, view_flip = view_yaw(bundle, imgs)
        ok = ~np.isnan(mp)
        rows.append({"set": "world", "reference": "truth", "estimator": "MediaPipe", "faces": f"{ok.sum()}/{len(mp)}",
                     **scores(mp[ok], true[ok]), "flip r": "-"})
        rows.append({"set": "world", "reference": "truth", "estimator": "view head", "faces": f"{len(mp)}/{len(mp)}",
                     **scores(view, true), "flip r": _r(view, -view_flip)})
        rows.append({"set": "world", "reference": "MediaPipe", "estimator": "view head", "faces": f"{ok.sum()}/{len(mp)}",
                     **scores(view[ok], mp[ok]), "flip r": _r(view[ok], -view_flip[ok])})
        sets["world"] = {"mp": mp, "view": view, "true": true}

    real = {"att": sorted((args.data / "att_faces").glob("s*/*.pgm")),
            "celeba": sorted((args.data / "celeba_crops64").glob("*.png"))}
    if not any(real.values()):
        print(f"no real faces under {args.data} (att_faces/, celeba_crops64/): only the world row is measured")
    for name, paths in real.items():
        if not paths:
            continue
        imgs = load_folder(paths, 64)
        mp = mediapipe_yaw(args.mediapipe_python, imgs)
        view, view_flip = view_yaw(bundle, imgs)
        ok = ~np.isnan(mp)
        rows.append({"set": name, "reference": "MediaPipe", "estimator": "view head", "faces": f"{ok.sum()}/{len(mp)}",
                     **(scores(view[ok], mp[ok]) if ok.sum() > 2 else {}), "flip r": _r(view, -view_flip),
                     "MediaPipe yaw range": f"{np.nanmin(mp):+.1f}..{np.nanmax(mp):+.1f}" if ok.any() else "-",
                     "view yaw range": f"{view.min():+.1f}..{view.max():+.1f}"})
        sets[name] = {"mp": mp, "view": view}

    notes = (f"Bundle: {args.bundle}. Yaw from MediaPipe's face mesh (contour points 234/454; benchmarks/mediapipe_yaw.py), "
             "evaluation only. MAE of 0: the error of answering frontal for every face. flip r: Pearson r of yaw(x) "
             "and -yaw(mirror of x).")
    out = write_results(args.name, rows, f"View head on real faces vs MediaPipe yaw ({args.bundle.name})", notes=notes,
                        columns=["set", "reference", "estimator", "faces", "r", "slope", "MAE", "MAE of 0", "flip r",
                                 "MediaPipe yaw range", "view yaw range"], out_dir=args.out_dir)
    picture(sets, out / f"{args.name}.png")
    print(f"wrote {out / args.name}.{{json,md,png}}")


if __name__ == "__main__":
    main()
