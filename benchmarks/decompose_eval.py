"""Ground-truth evaluation of a decomposer on the synthetic world (the metrics of issue 4's table).

    ev = eval_set(num_images=512, resolution=32, size=32)       # held-out world faces, uniform yaw +-90
    m = evaluate(model, ev)                                      # dict of the metrics below
    decomposition_picture(model, ev, "out.png")                  # input, recon, albedo, depth, relit, rotated

Metrics, each measured against the world's own labels and maps:
- yaw / pitch MAE (degrees) over all faces, yaw MAE over |yaw| > 45 (profiles), yaw r (Pearson) and
  yaw slope (least-squares slope of predicted on true yaw: 1 means the right scale, 0 a constant);
- yaw response: the mean (and std) predicted yaw in 15-degree bins of true yaw (where a compressed reading
  saturates: the slope alone does not say whether the whole range or only the profiles are read short);
- albedo spread: the std of the canonical albedo over the images, on the face (0: one albedo for all);
- depth SIDE (unsup3d's scale-invariant depth error, sqrt(mean(e^2) - mean(e)^2) with e = log
  predicted - log true view depth, on the face skin the decomposer covers) and normal MAD (mean
  angle in degrees between the normals of the predicted and true view depth maps, same pixels).
The world's camera has a wider field of view (2 atan(0.12) = 13.7 degrees) than the decomposer's
default 10: each depth map gets the normals of its own camera.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from facedis_aug.data.synthetic import SyntheticFaces
from facedis_aug.data import world_geometry as WG
from facedis_aug.decompose import Decomposer, Renderer
from facedis_aug.decompose.harness import view_scores
from facedis_aug.decompose.model import renderer_for
from facedis_aug.ops import save_image_grid

WORLD_FOV = math.degrees(2 * math.atan(WG.TAN_HALF_FOV))
PROFILE = 45.0  # |yaw| above this counts as a profile
YAW_EDGES = tuple(float(e) for e in range(-90, 91, 15))  # the response curve's bins of true yaw
HELD_OUT = 10_000_000  # first image index of the evaluation faces (training never reaches it)


@torch.no_grad()
def eval_set(num_images: int = 512, resolution: int = 32, size: int = 32, seed: int = 0, num_identities: int = 2000,
             yaw_range: float = 90.0) -> dict[str, Tensor]:
    """Held-out world faces with uniform yaw: 'x' [N, 3, size, size] in [-1, 1] (rendered at
    `resolution`, the training data's, then resized to the decomposer's `size`), 'yaw', 'pitch' [N]
    degrees, 'depth' [N, size, size] true view depth and 'face' [N, size, size] bool skin mask."""
    ds = SyntheticFaces(HELD_OUT + num_images, resolution, seed=seed, num_identities=num_identities, pose="uniform",
                        yaw_range=yaw_range)
    maps = SyntheticFaces(HELD_OUT + num_images, size, seed=seed, num_identities=num_identities, pose="uniform",
                          yaw_range=yaw_range)
    xs, depth, face, yaw, pitch = [], [], [], [], []
    for i in range(HELD_OUT, HELD_OUT + num_images, 128):
        idx = torch.arange(i, min(i + 128, HELD_OUT + num_images))
        img, lab = ds.batch(idx)
        if resolution != size:
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out = maps.world.render(maps.params(idx), with_view_maps=True)
        xs.append(img.clamp(0, 1) * 2 - 1)
        depth.append(out["view_depth"].float())
        face.append(out["view_mask"].bool())
        yaw.append(lab["yaw"])
        pitch.append(lab["pitch"])
    return {"x": torch.cat(xs), "depth": torch.cat(depth), "face": torch.cat(face), "yaw": torch.cat(yaw),
            "pitch": torch.cat(pitch)}


def _pearson(a: Tensor, b: Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp(min=1e-12))


def _slope(pred: Tensor, true: Tensor) -> float:
    return view_scores(pred, true)["slope"]


def _angles(n1: Tensor, n2: Tensor) -> Tensor:
    """Angle in degrees between unit normal maps [B, 3, H, W] -> [B, H, W]."""
    return torch.rad2deg(torch.acos((n1 * n2).sum(1).clamp(-1.0, 1.0)))


def depth_metrics(pred: Tensor, true: Tensor, valid: Tensor, pred_fov: float) -> tuple[float, float]:
    """(SIDE, MAD in degrees) of view depth pred vs true [B, S, S] (any units) over valid [B, S, S];
    the one-pixel border is left out (its normals are copies)."""
    s = pred.shape[-1]
    valid = valid.clone()
    valid[:, :1], valid[:, -1:], valid[:, :, :1], valid[:, :, -1:] = False, False, False, False
    e = torch.log(pred.clamp(min=1e-6)) - torch.log(true.clamp(min=1e-6))
    sides = []
    for i in range(pred.shape[0]):
        m = valid[i]
        if int(m.sum()) >= 4:
            ei = e[i][m].double()
            sides.append(float(torch.sqrt((ei**2).mean() - ei.mean() ** 2)))
    ang = _angles(Renderer(s, pred_fov).normals(pred), Renderer(s, WORLD_FOV).normals(true))
    side = sum(sides) / max(1, len(sides))
    mad = float(ang[valid].mean()) if valid.any() else float("nan")
    return side, mad


@torch.no_grad()
def evaluate(model: Decomposer, ev: dict[str, Tensor], batch: int = 128) -> dict[str, Any]:
    """The metrics of the module doc for `model` (eval mode) on `ev` from `eval_set`."""
    model.eval()
    cfg = model.cfg
    r = renderer_for(cfg)
    yaw, pitch, vdepth, covered, psnr, albedo, alpha = [], [], [], [], [], [], []
    for i in range(0, ev["x"].shape[0], batch):
        d = model(ev["x"][i:i + batch])
        out = model.reconstruct(r, d)
        yaw.append(d.view[:, 1])
        pitch.append(d.view[:, 0])
        vdepth.append(out.depth)
        # layered: the face is where it is drawn with some opacity (the background layer has no depth)
        covered.append(out.mask if out.alpha is None else out.mask & (out.alpha > 0.5))
        psnr.append(_psnr(out.image, ev["x"][i:i + batch]))
        albedo.append(d.albedo)
        alpha.append(d.alpha if d.alpha is not None else torch.ones_like(d.albedo[:, 0]))
    yaw, pitch, vdepth, covered = torch.cat(yaw), torch.cat(pitch), torch.cat(vdepth), torch.cat(covered)
    scores = _scores(yaw, pitch, vdepth, ev["face"] & covered, ev, cfg.fov)
    scores["psnr"] = float(torch.cat(psnr).mean())
    scores["albedo_spread"] = albedo_spread(torch.cat(albedo), torch.cat(alpha))
    return scores


def albedo_spread(albedo: Tensor, alpha: Tensor) -> float:
    """How much the canonical albedo [N, 3, S, S] differs between images: the std over images, averaged
    over channels and over the pixels that are face (mean opacity [N, S, S] > 0.5). Near 0: one albedo
    for every face (identity carried elsewhere, e.g. by a coloured light)."""
    face = alpha.mean(0) > 0.5
    return float(albedo.std(0).mean(0)[face].mean()) if face.any() else float("nan")


def _psnr(recon: Tensor, target: Tensor) -> Tensor:
    """[B] PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = ((recon.clamp(-1, 1) - target) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return 10 * torch.log10(4.0 / mse)


def constant_baseline(ev: dict[str, Tensor], fov: float = 10.0) -> dict[str, Any]:
    """The same metrics for 'every face frontal, flat depth' (what an untrained decomposer says)."""
    n, s = ev["yaw"].shape[0], ev["depth"].shape[-1]
    zero = torch.zeros(n)
    return _scores(zero, zero, torch.ones(n, s, s), ev["face"], ev, fov)


def _scores(yaw: Tensor, pitch: Tensor, vdepth: Tensor, valid: Tensor, ev: dict[str, Tensor], fov: float) -> dict[str, Any]:
    ty, tp = ev["yaw"], ev["pitch"]
    prof = ty.abs() > PROFILE
    within = ty.abs() <= 60.0
    side, mad = depth_metrics(vdepth, ev["depth"], valid, fov)
    return {
        "yaw_mae": float((yaw - ty).abs().mean()),
        "yaw_mae_profile": float((yaw - ty)[prof].abs().mean()) if prof.any() else float("nan"),
        "pitch_mae": float((pitch - tp).abs().mean()),
        "yaw_r": _pearson(yaw, ty) if yaw.std() > 0 else 0.0,
        "yaw_slope": _slope(yaw, ty),
        "yaw_r_60": _pearson(yaw[within], ty[within]) if yaw[within].std() > 0 else 0.0,
        "yaw_slope_60": _slope(yaw[within], ty[within]),
        # the response is compressive when the slope falls as the band widens
        "yaw_slope_30": _slope(yaw[ty.abs() <= 30.0], ty[ty.abs() <= 30.0]),
        "yaw_slope_15": _slope(yaw[ty.abs() <= 15.0], ty[ty.abs() <= 15.0]),
        "pitch_r": _pearson(pitch, tp) if pitch.std() > 0 else 0.0,
        "yaw_response": yaw_response(yaw, ty),
        "side": side,
        "mad": mad,
        "n": int(ty.shape[0]),
        "n_profile": int(prof.sum()),
    }


def yaw_response(pred: Tensor, true: Tensor, edges: tuple[float, ...] = YAW_EDGES) -> dict[str, list]:
    """Predicted yaw [N] against true yaw [N] per bin of true yaw (bins [edges[k], edges[k + 1]), the last one closed):
    dict(edges, true (bin mean), mean and std of the prediction, n); empty bins give None."""
    if pred.shape != true.shape or pred.ndim != 1:
        raise ValueError(f"pred and true must be [N] alike, got {tuple(pred.shape)} and {tuple(true.shape)}")
    out: dict[str, list] = {"edges": list(edges), "true": [], "mean": [], "std": [], "n": []}
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        sel = (true >= lo) & ((true <= hi) if k == len(edges) - 2 else (true < hi))
        n = int(sel.sum())
        out["n"].append(n)
        for key, val in (("true", true[sel].mean() if n else None), ("mean", pred[sel].mean() if n else None),
                         ("std", pred[sel].std(unbiased=False) if n else None)):
            out[key].append(None if val is None else round(float(val), 3))
    return out


def yaw_response_png(curves: dict[str, dict[str, list]], path: str | Path) -> Path:
    """One line per name: the mean predicted yaw (+- std band) against the bins' mean true yaw, with the
    identity line (a reading to the right scale) for reference."""
    from matplotlib.figure import Figure  # a figure object: the user's pyplot backend is left alone

    fig = Figure(figsize=(4.6, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([-90, 90], [-90, 90], color="0.6", lw=1, ls="--", label="true yaw")
    for name, c in curves.items():
        keep = [i for i, m in enumerate(c["mean"]) if m is not None]
        x = [c["true"][i] for i in keep]
        m = [c["mean"][i] for i in keep]
        sd = [c["std"][i] for i in keep]
        line, = ax.plot(x, m, marker="o", ms=3, lw=1.2, label=name)
        ax.fill_between(x, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("true yaw (deg)", fontsize=8)
    ax.set_ylabel("decomposer's yaw (deg), mean +- std per bin", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


@torch.no_grad()
def decomposition_picture(model: Decomposer, ev: dict[str, Tensor], path: str | Path, n: int = 6) -> Path:
    """Rows: n eval faces spread over the yaw range. Columns: input, reconstruction, albedo, shaded
    depth, (layered: face opacity, background layer), relit from the left and from the right, then the
    face rotated to -60, -30, 0, +30, +60 (layered: over its still background)."""
    model.eval()
    cfg = model.cfg
    r = renderer_for(cfg)
    order = torch.argsort(ev["yaw"])
    pick = order[torch.linspace(0, len(order) - 1, n).round().long()]
    x = ev["x"][pick]
    d = model(x)
    bg = -torch.ones_like(x)

    def shown(out):  # a layered render is whole (face over its background); a single mesh shows its cover
        return (out.image if out.alpha is not None else torch.where(out.mask[:, None], out.image, bg)).clamp(-1, 1)

    grey = torch.zeros_like(d.albedo)
    side_light = lambda dx: torch.tensor([[0.25] * 3 + [0.8] * 3 + [dx, -0.2]]).expand(n, 8)  # noqa: E731
    layered = d.alpha is not None
    cols = [x, shown(model.reconstruct(r, d)), d.albedo, r.shade(grey, d.depth, side_light(-0.7)).clamp(-1, 1)]
    if layered:  # the face layer's opacity and the still background layer
        cols += [d.alpha[:, None].expand(-1, 3, -1, -1) * 2 - 1, d.background]
    for dx in (-1.0, 1.0):
        relit = d.light.clone()
        relit[:, 6] = dx
        cols.append(shown(model.reconstruct(r, d, light=relit)))
    for yaw in (-60.0, -30.0, 0.0, 30.0, 60.0):
        view = d.view.clone() if layered else torch.zeros(n, 6)
        view[:, 1] = yaw
        cols.append(shown(model.reconstruct(r, d, view=view)))
    grid = torch.stack(cols, 1).flatten(0, 1)
    if grid.shape[-1] < 64:  # tiny faces: show each pixel as a block
        grid = F.interpolate(grid, scale_factor=64 // grid.shape[-1], mode="nearest")
    path = Path(path)
    save_image_grid(grid, path, nrow=len(cols))
    return path
