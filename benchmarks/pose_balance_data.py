"""Data of the pose-balance benchmark: recognition sets from the synthetic world, and yaw histograms.

    idx, ident = pool_indices(world, num_ids=500, per_id=16)        # the GAN's own images, labelled
    real = render_set(world, idx, ident, pose="casia")               # arm (a): CASIA-like yaw
    oracle = render_set(world, idx, ident, pose="uniform")           # arm (d): same images, uniform yaw
    export_pngs(real["images"], idx, "gan_images/")                  # what the bundle's GAN trains on
    test = render_test_set(test_world, num_ids=600, frontal=4, profile=4)

A set is a dict of tensors: "images" uint8 [N, 3, R, R], "labels" long [N], "yaw" float [N]
degrees (the world's truth; NaN where unknown). By default clothes and background are redrawn per
image (`per_image_nuisance`): the world ties them to the identity, which lets a recognizer verify
faces by their backdrop alone (measured: 0.99 FP accuracy, 0.66 once the backdrop changes). The world's pose labels are used here only to
build the real/oracle/test images and to draw histograms, never to pick arm (c)'s synthetic data.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from facedis_aug.data.synthetic import SyntheticWorld

YAW_EDGES = np.linspace(-90.0, 90.0, 13)  # 12 bins of 15 degrees, for every reported histogram
# identity attributes of the world that photos do not tie to a person (clothes, background): with
# per_image_nuisance they are redrawn per image, so a recognizer cannot match faces by the backdrop
NUISANCE = ("cloth_r", "cloth_g", "cloth_b", "stripes", "stripe_f", "bg1_r", "bg1_g", "bg1_b", "bg2_r", "bg2_g", "bg2_b",
            "bg_angle", "bg_grad", "bg_fx", "bg_fy", "bg_tex", "blob_x", "blob_y", "blob_r", "blob_amp")  # fmt: skip
FRONTAL_MAX = 15.0  # test frontal images: |yaw| <= 15 degrees
PROFILE_MIN, PROFILE_MAX = 60.0, 90.0  # test profile images: 60 <= |yaw| <= 90 (CFP-style)


def pool_indices(world: SyntheticWorld, num_ids: int, per_id: int, chunk: int = 4096, max_index: int = 10_000_000) -> tuple[Tensor, Tensor]:
    """The first `per_id` image indices (in index order) of each identity 0..num_ids-1 of `world`'s
    CASIA-like stream (the image set `SyntheticFaces(seed=world.seed, num_identities=...)` yields).
    Returns (indices [num_ids * per_id], identity [same]) sorted by identity."""
    if not 1 <= num_ids <= world.num_identities:
        raise ValueError(f"num_ids must be in [1, {world.num_identities}], got {num_ids}")
    found: dict[int, list[int]] = {k: [] for k in range(num_ids)}
    need, start = num_ids, 0
    while need and start < max_index:
        idx = torch.arange(start, min(start + chunk, max_index))
        ident = world.sample_params(idx, pose="casia").identity.tolist()
        for i, k in zip(idx.tolist(), ident):
            if k < num_ids and len(found[k]) < per_id:
                found[k].append(i)
                need -= len(found[k]) == per_id
        start += chunk
    if need:
        raise RuntimeError(f"pool_indices: fewer than {per_id} images for {need} identities in {max_index} indices")
    return torch.tensor([i for k in range(num_ids) for i in found[k]]), torch.arange(num_ids).repeat_interleave(per_id)


def per_image_nuisance(world: SyntheticWorld, params: Any) -> Any:
    """params with the NUISANCE columns of id_code redrawn per image (seeded by world seed and image
    index, so the same index always gets the same clothes and background)."""
    from facedis_aug.data import world_geometry as geom

    cols = [i for i, (name, _, _) in enumerate(geom.ID_SPEC) if name in NUISANCE]
    code = params.id_code.clone()
    for r, index in enumerate(params.index.tolist()):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([world.seed, index, 0xB6]).generate_state(1)[0]))
        code[r, cols] = torch.rand(len(cols), generator=g, dtype=torch.float64)
    return dataclasses.replace(params, id_code=code)


def _render(world: SyntheticWorld, params: Any, chunk: int = 512) -> Tensor:
    out = [world.render(params.select(slice(i, i + chunk)))["image"] for i in range(0, len(params), chunk)]
    return (torch.cat(out) * 255).round().to(torch.uint8)


def render_set(world: SyntheticWorld, indices: Tensor, labels: Tensor, pose: str, per_image: bool = True) -> dict[str, Tensor]:
    """Images `indices` of the world at `pose` ("casia" or "uniform": same identity, light and
    background per index, only the yaw differs) with class `labels`; per_image: `per_image_nuisance`."""
    p = world.sample_params(indices, pose=pose)
    p = per_image_nuisance(world, p) if per_image else p
    return {"images": _render(world, p), "labels": labels.long(), "yaw": p.yaw.float()}


def render_test_set(world: SyntheticWorld, num_ids: int, frontal: int, profile: int, seed: int = 0, per_image: bool = True) -> dict[str, Tensor]:
    """Per identity `frontal` images with |yaw| <= FRONTAL_MAX and `profile` images with
    PROFILE_MIN <= |yaw| <= PROFILE_MAX (random side), each with its own light, background and noise.
    Adds "is_profile" bool [N]. Identities 0..num_ids-1 of `world` (use a seed not used in training)."""
    per = frontal + profile
    ids = torch.arange(num_ids).repeat_interleave(per)
    idx = torch.arange(num_ids * per)
    p = world.sample_params(idx, pose="uniform", identities=ids)
    rng = np.random.default_rng([seed, world.seed, 0x7E57])
    is_prof = np.tile(np.r_[np.zeros(frontal, bool), np.ones(profile, bool)], num_ids)
    mag = np.where(is_prof, rng.uniform(PROFILE_MIN, PROFILE_MAX, len(idx)), rng.uniform(0.0, FRONTAL_MAX, len(idx)))
    yaw = torch.tensor(mag * rng.choice([-1.0, 1.0], len(idx)), dtype=torch.float32)
    p = dataclasses.replace(p, yaw=yaw)
    p = per_image_nuisance(world, p) if per_image else p
    return {"images": _render(world, p), "labels": ids, "yaw": yaw, "is_profile": torch.from_numpy(is_prof)}


def export_pngs(images: Tensor, indices: Tensor, folder: Any) -> Any:
    """Write images uint8 [N, 3, R, R] as a flat folder of PNGs named by world image index (no
    labels: the bundle's GAN trains on it with `train_gan --data`). A DONE file marks completion."""
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    if (folder / "DONE").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for x, i in zip(images, indices.tolist()):
        Image.fromarray(x.permute(1, 2, 0).numpy()).save(folder / f"img_{i:08d}.png")
    (folder / "DONE").write_text(f"{len(images)} images\n")
    return folder


class TensorFaces(Dataset):
    """A labelled set as a Dataset: item i -> (image float [3, R, R] in [0, 1], label int)."""

    def __init__(self, images: Tensor, labels: Tensor):
        self.images, self.targets = images, labels.tolist()
        self.classes = sorted(set(self.targets))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i].float() / 255.0, self.targets[i]


# ---------------------------------------------------------------------------------- histograms
def histogram(yaw: Any, edges: np.ndarray = YAW_EDGES) -> dict[str, Any]:
    """Yaw histogram [K] over `edges` (values clipped into range) with its entropy (bits, and
    normalised by log2 K), total-variation distance to uniform, and share with |yaw| >= 60."""
    y = np.asarray(yaw, dtype=np.float64)
    y = y[np.isfinite(y)]
    counts = np.histogram(np.clip(y, edges[0], edges[-1]), bins=edges)[0]
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    h = float(-(nz * np.log2(nz)).sum())
    k = len(counts)
    return {"edges": edges.tolist(), "counts": counts.tolist(), "n": int(counts.sum()), "entropy_bits": h,
            "entropy_norm": h / np.log2(k), "tv_to_uniform": float(0.5 * np.abs(p - 1.0 / k).sum()),
            "share_abs_ge_60": float((np.abs(y) >= PROFILE_MIN).mean()) if len(y) else 0.0}  # fmt: skip


def save_histogram_png(path: Any, panels: list[dict[str, Any]]) -> None:
    """One panel per arm: panels = [{"title", "parts": [(label, counts [K], colour)], "outline":
    optional (label, counts [K])}]; bars are stacked shares of the arm's images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facedis_aug.ops.io import atomic_write

    centres, width = (YAW_EDGES[:-1] + YAW_EDGES[1:]) / 2, np.diff(YAW_EDGES) * 0.9
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), sharey=True)
    for ax, panel in zip(np.atleast_1d(axes), panels):
        total = max(sum(int(np.sum(c)) for _, c, _ in panel["parts"]), 1)
        bottom = np.zeros(len(centres))
        for label, counts, colour in panel["parts"]:
            share = np.asarray(counts) / total
            ax.bar(centres, share, width=width, bottom=bottom, color=colour, label=label)
            bottom += share
        if panel.get("outline"):
            label, counts = panel["outline"]
            ax.step(YAW_EDGES, np.r_[counts, counts[-1]] / total, where="post", color="k", lw=1, ls="--", label=label)
        ax.axhline(1.0 / len(centres), color="grey", lw=0.8, ls=":")
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xlabel("yaw (degrees)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
    np.atleast_1d(axes)[0].set_ylabel("share of training images", fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
