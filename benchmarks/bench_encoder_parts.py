"""Pieces of benchmarks/bench_encoder.py: data sets (world turn set, real faces), the oracle yaw
direction, the turn itself, identity scores (optional recognizer) and the picture grids."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parent.parent

from benchmarks.pose_regressor import pearson, predict
from facedis_aug.augment.engine import to_unit_range
from facedis_aug.augment.real import pad_square
from facedis_aug.ops.io import save_image_grid
from facedis_aug.ops.linear import edit_latent
from facedis_aug.ops.resize import resize_bilinear

DATA = REPO.parent / "shared" / "data"
TARGETS = (-60.0, -45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0, 60.0)
GRID_TARGETS = (-60.0, -30.0, 0.0, 30.0, 60.0)


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR (dB) of [N, 3, H, W] images in [0, 1]."""
    mse = (a - b).square().mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def render01(eng: Any, w: Tensor, batch: int = 256) -> Tensor:
    return torch.cat([to_unit_range(eng.render(w[i : i + batch])) for i in range(0, w.shape[0], batch)])


def turn(spec: Any, eng: Any, w: Tensor, target: float, d: dict[str, Any] | None = None) -> Tensor:
    """Eq. 4 to `target` degrees and decode: the bundle's v_yaw (d None, as PoseExtrapolate) or direction d."""
    if d is None:
        w2 = spec.edit(w, "yaw", torch.full((w.shape[0],), float(spec.yaw_to_s(target))))
    else:
        w2 = edit_latent(w, d["v"], (target - d["intercept"]) / d["units_per_sigma"], d["sigma"])
    return render01(eng, w2)


@torch.no_grad()
def oracle_direction(bundle: Any, reg: Any, n: int = 1000, seed: int = 700_000) -> dict[str, Any]:
    """Eq. 3 on 2n generated faces with the REGRESSOR's yaw (evaluation only): v, sigma, calibration, r2."""
    from facedis_aug.directions.semantics import univariate_from_samples

    w = bundle.sample_w(2 * n, seed=seed)
    y = torch.cat([predict(reg, bundle.generate(w=w[i : i + 250]).clamp(-1, 1))["yaw"] for i in range(0, 2 * n, 250)])
    out = univariate_from_samples(w, y[:, None], bundle.sample_w(2000, seed=seed + 10 * n), names=("yaw",))
    info = out["info"]["yaw"]
    return {"v": out["directions"]["yaw"], "sigma": info["sigma"], "intercept": info["intercept"],
            "units_per_sigma": info["units_per_sigma"], "r2": info["r2"], "proj_mean": info["proj_mean"]}  # fmt: skip


def world_turn_set(recipe: dict[str, Any], R: int, k: int, targets: tuple[float, ...]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """k held-out images of the generator's world and the world's render of each person at every target.

    Returns src [k, 3, R, R] in [0, 1], truth [k, T, 3, R, R], the sources' true yaw [k], identities [k].
    """
    from facedis_aug.data.synthetic import SyntheticWorld

    syn = ((recipe.get("data") or {}).get("synthetic") or {})
    world = SyntheticWorld(R, int(syn.get("seed", 0)), int(syn.get("num_identities", 1000)), int(syn.get("supersample", 1)))
    start = int(syn.get("num_images", 100_000))  # the first index after the generator's training set
    idx = torch.arange(start, start + k)
    p = world.sample_params(idx, pose=syn.get("pose", "casia"), yaw_range=float(syn.get("yaw_range", 90.0)),
                            frontal_share=float(syn.get("frontal_share", 0.85)), frontal_yaw=float(syn.get("frontal_yaw", 30.0)))  # fmt: skip
    src, truth = [], []
    for j in range(k):
        q = world.identity_params(int(p.identity[j]), [float(p.yaw[j]), *targets], index=int(idx[j]))
        img = world.render(q)["image"]
        src.append(img[0])
        truth.append(img[1:])
    return torch.stack(src), torch.stack(truth), p.yaw.clone(), p.identity.clone()


def yaw_rows(reached: Tensor, truth: Tensor | None, imgs: Tensor | None, src: Tensor | None = None) -> dict[str, Any]:
    """Per asked yaw: mean/std reached, MAE; with truth, L1 (range [-1, 1]) of the turned image and of the
    untouched source to the world's render at that yaw. Summary: slope and corr of reached on asked, MAE."""
    asked = torch.tensor(TARGETS).expand_as(reached)
    rows = []
    for j, t in enumerate(TARGETS):
        r = {"asked": t, "reached mean": float(reached[:, j].mean()), "reached std": float(reached[:, j].std()),
             "MAE": float((reached[:, j] - t).abs().mean())}  # fmt: skip
        if truth is not None and imgs is not None:
            r["L1 to truth"] = float((imgs[:, j] - truth[:, j]).abs().mean() * 2)
            if src is not None:
                r["L1 no turn"] = float((src - truth[:, j]).abs().mean() * 2)
        rows.append(r)
    a, y = asked.flatten().double(), reached.flatten().double()
    slope = float(((a - a.mean()) @ (y - y.mean())) / ((a - a.mean()) @ (a - a.mean())))
    summary = {"slope": slope, "corr": pearson(a, y), "mae": float((y - a).abs().mean())}
    if truth is not None and imgs is not None:
        summary["l1_truth"] = float((imgs - truth).abs().mean() * 2)
        summary["l1_truth_noturn"] = float((src[:, None] - truth).abs().mean() * 2) if src is not None else float("nan")
    return {"per_target": rows, "summary": summary}


def load_real_faces(root: Path, R: int = 32, n_att: int = 40) -> dict[str, dict[str, list]]:
    """{label: {"images": PIL images as found, "square": [3, R, R] in [0, 1] (edge-padded, resized)}}; {} when absent."""
    from PIL import Image

    from facedis_aug.data.folder import pil_to_tensor01, to_rgb

    sets: dict[str, list] = {}
    att = sorted((root / "att_faces").glob("s*/1.pgm"), key=lambda p: int(p.parent.name[1:]))[:n_att]
    if att:
        sets["AT&T faces (grey 92x112)"] = att
    celeba = sorted((root / "celeba_crops64").glob("*.png"))
    if celeba:
        sets["CelebA-style crops (RGB 64)"] = celeba
    out = {}
    for label, paths in sets.items():
        ims = [Image.open(p) for p in paths]
        for im in ims:
            im.load()
        sq = [resize_bilinear(pad_square(pil_to_tensor01(to_rgb(im)))[0], (R, R)) for im in ims]
        out[label] = {"images": ims, "square": sq}
    return out


def _non_faces(n: int, R: int, seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 3, R, R, generator=g)
    blobs = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(R, R), mode="bicubic", align_corners=False).clamp(0, 1)
    yy, xx = torch.meshgrid(torch.arange(R), torch.arange(R), indexing="ij")
    period = torch.randint(2, 9, (n,), generator=g)
    checks = (((yy[None] // period[:, None, None]) + (xx[None] // period[:, None, None])) % 2).float()[:, None].expand(n, 3, R, R)
    return {"uniform noise": noise, "smooth colour blobs": blobs, "checkerboards": checks.contiguous()}


@torch.no_grad()
def face_check_rates(eng: Any, max_l1: float, world: Tensor, real: dict[str, Any], R: int, steps: int) -> dict[str, float]:
    """Share of each set whose encoder-only L1 is within the bundle's max_l1 (what PoseExtrapolate accepts)."""
    sets = {"held-out world faces": world, **{k: torch.stack(v["square"]) for k, v in real.items()}, **_non_faces(64, R)}
    return {k: float((eng.encode(x * 2 - 1, 0)[1] <= max_l1).float().mean()) for k, x in sets.items()}


def identity_scores(path: str | None, src: Tensor, rec: Tensor, turned_by: dict[str, Tensor], truth: Tensor | None,
                    idents: Tensor | None) -> dict[str, Any]:
    """Mean cosine of the recognizer's embeddings (benchmarks/recognizer.py, issue 7), when it exists."""
    try:
        from benchmarks import recognizer as rec_mod
    except ImportError:
        return {"available": False, "note": "not measured: benchmarks/recognizer.py (issue 7) does not exist yet"}
    cache = REPO / "benchmarks" / "results" / "cache"
    # the pose-balance benchmark's oracle (trained on every pose) is the recognizer of record
    found = sorted(cache.rglob("recognizer_oracle*.safetensors")) or sorted(cache.rglob("recognizer*.safetensors"))
    weights = Path(path) if path else (found[0] if found else None)
    if weights is None or not weights.is_file():
        return {"available": False, "note": "not measured: no recognizer weights (give --recognizer PATH)"}
    model = rec_mod.load_recognizer(weights)
    emb = lambda x: rec_mod.embed(model, x)  # noqa: E731  images [B, 3, H, W] in [0, 1] -> unit [B, D]
    e_src = emb(src)
    out: dict[str, Any] = {"available": True, "note": f"recognizer {weights.name}", "recon": float((e_src * emb(rec)).sum(1).mean())}
    if idents is not None:
        other = torch.roll(torch.arange(src.shape[0]), 1)
        diff = idents != idents[other]
        out["impostor"] = float((e_src * e_src[other]).sum(1)[diff].mean())
    per = {name: [float((e_src * emb(imgs[:, j])).sum(1).mean()) for j in range(imgs.shape[1])] for name, imgs in turned_by.items()}
    out["turned_per_target"] = per
    out["turned"] = {name: sum(v) / len(v) for name, v in per.items()}
    if truth is not None:
        out["genuine_truth"] = float(torch.stack([(e_src * emb(truth[:, j])).sum(1) for j in range(truth.shape[1])]).mean())
    return out


def world_grid(src: Tensor, rec: Tensor, truth: Tensor, turned_by: dict[str, Tensor], path: Path, n: int = 6) -> None:
    """Per face three rows: source | the world's truth at GRID_TARGETS; reconstruction | turned with the
    bundle's v_yaw; blank | turned with the oracle v_yaw."""
    cols = [TARGETS.index(t) for t in GRID_TARGETS]
    (bundle_imgs, oracle_imgs) = list(turned_by.values())
    cells = []
    for i in range(min(n, src.shape[0])):
        cells += [src[i], *truth[i, cols]]
        cells += [rec[i], *bundle_imgs[i, cols]]
        cells += [torch.ones_like(src[i]), *oracle_imgs[i, cols]]
    save_image_grid(torch.stack(cells), path, nrow=1 + len(cols), value_range=(0.0, 1.0))


def real_grid(bundle: Any, eng: Any, real: dict[str, Any], oracle: dict[str, Any], reach: list[float], path: Path,
              steps: int, per_set: int = 4, cell: int = 64) -> list[str]:
    """Rows: real faces. Columns: the photo, G(E(x)); PoseExtrapolate itself (the user's path, default
    settings) at the low end, middle and high end of the yaw range it accepts for this bundle, and
    blended over the photo at the high end; then -30 / -15 / +15 / +30 with the evaluation-only oracle
    v_yaw (same encode -> Eq. 4 -> decode, another direction). Returns the column titles."""
    from facedis_aug.augment.transforms import PoseExtrapolate

    spec = eng.spec
    lo, hi = reach
    mid = float(spec.s_to_yaw(spec.yaw_s_mean))
    show = lambda img: resize_bilinear(pad_square(img)[0], (cell, cell))  # noqa: E731
    turners = [PoseExtrapolate(bundle.path, yaw=(t, t)) for t in (lo, mid, hi)]
    turners.append(PoseExtrapolate(bundle.path, yaw=(hi, hi), blend_background=True))
    cells = []
    for faces in real.values():
        for im, x in list(zip(faces["images"], faces["square"]))[:per_set]:
            photo = pad_square(_pil01(im))[0]
            w, _ = eng.encode(x[None] * 2 - 1, steps)
            row = [show(photo), resize_bilinear(render01(eng, w)[0], (cell, cell))]
            row += [show(_pil01(t(im))) for t in turners]
            row += [resize_bilinear(turn(spec, eng, w, t, oracle)[0], (cell, cell)) for t in (-30.0, -15.0, 15.0, 30.0)]
            cells += row
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(torch.stack(cells).clamp(0, 1), path, nrow=10, value_range=(0.0, 1.0))
    return ["photo", "G(E(x))", f"PoseExtrapolate {lo:.0f} deg", f"{mid:.0f} deg", f"{hi:.0f} deg", f"{hi:.0f} deg blended",
            "oracle -30", "oracle -15", "oracle +15", "oracle +30"]


def _pil01(im: Any) -> Tensor:
    from facedis_aug.data.folder import pil_to_tensor01, to_rgb

    return pil_to_tensor01(to_rgb(im))
