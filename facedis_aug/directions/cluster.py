"""Ward clustering of localized directions (paper Sec. 4, Fig. 6) and where each component lives.

Distances between latent directions are 1 - |cos(v_i, v_j)|: a direction and its negation move the
same pixels, so they count as identical. Components u_p are laid out as [C, H, W] in C order,
C = 4 (albedo RGB, then depth), the layout of J's rows in `localized.py`.
"""
from __future__ import annotations

import os
from typing import Literal, Sequence

import numpy as np
import torch
from scipy.cluster.hierarchy import dendrogram, fcluster, linkage
from scipy.spatial.distance import squareform

__all__ = [
    "abs_cosine_distance",
    "cluster_directions",
    "plot_dendrogram",
    "region_shares",
    "region_of_component",
    "component_thumbnail",
]

Region = Literal["face", "around", "background"]


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def abs_cosine_distance(V) -> np.ndarray:
    """Square matrix [P, P] of 1 - |cos| between the columns of V [d, P] (zero diagonal, symmetric)."""
    V = _as_numpy(V)
    if V.ndim != 2:
        raise ValueError(f"abs_cosine_distance: V must be [d, P], got shape {V.shape}")
    norms = np.linalg.norm(V, axis=0)
    if (norms <= 0).any():
        raise ValueError("abs_cosine_distance: a column of V is zero")
    Vn = V / norms
    D = 1.0 - np.abs(Vn.T @ Vn)
    D = np.clip(0.5 * (D + D.T), 0.0, 1.0)  # exact symmetry and range despite rounding
    np.fill_diagonal(D, 0.0)
    return D


def cluster_directions(
    V, num_clusters: int | None = None, distance_threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Ward linkage of the columns of V [d, P] over 1 - |cos|; returns (labels [P] in 0..K-1, Z [P-1, 4]).

    Give exactly one of num_clusters (at most that many flat clusters) or distance_threshold (cut
    height in Ward's metric). Labels are numbered by first appearance in column order, so they are
    stable for a given V. With P = 1 the single label is 0 and Z is empty ([0, 4]).
    """
    if (num_clusters is None) == (distance_threshold is None):
        raise ValueError("cluster_directions: give exactly one of num_clusters or distance_threshold")
    if num_clusters is not None and num_clusters < 1:
        raise ValueError(f"cluster_directions: num_clusters must be >= 1, got {num_clusters}")
    D = abs_cosine_distance(V)
    P = D.shape[0]
    if P == 0:
        raise ValueError("cluster_directions: V has no columns")
    if P == 1:
        return np.zeros(1, dtype=np.int64), np.zeros((0, 4))
    # scipy's Ward update (Lance-Williams) accepts any condensed dissimilarity; the paper does the same.
    Z = linkage(squareform(D, checks=False), method="ward")
    if num_clusters is not None:
        raw = fcluster(Z, t=num_clusters, criterion="maxclust")
    else:
        raw = fcluster(Z, t=distance_threshold, criterion="distance")
    remap: dict[int, int] = {}
    labels = np.array([remap.setdefault(int(r), len(remap)) for r in raw], dtype=np.int64)
    return labels, Z


def component_thumbnail(u_p, height: int, width: int, channels: int = 4) -> np.ndarray:
    """uint8 [2H, W, 3] picture of one component: albedo RGB perturbation above depth perturbation.

    Each half is scaled symmetrically by its own max |value| so zero maps to mid-grey (128).
    Stacked vertically so that thumbnails stay narrow under the leaves of a dendrogram.
    """
    u = _as_numpy(u_p).reshape(-1)
    if u.size != channels * height * width:
        raise ValueError(f"component_thumbnail: u_p has {u.size} values, expected {channels}x{height}x{width}")
    u = u.reshape(channels, height, width)

    def to_u8(x: np.ndarray) -> np.ndarray:
        m = np.abs(x).max()
        y = 0.5 + 0.5 * (x / m if m > 0 else x)
        return np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)

    albedo = to_u8(np.moveaxis(u[:3], 0, -1))
    depth = to_u8(u[3])
    return np.concatenate([albedo, np.repeat(depth[..., None], 3, axis=-1)], axis=0)


def plot_dendrogram(
    Z,
    leaf_images: Sequence[np.ndarray] | None,
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    num_clusters: int | None = None,
    title: str = "Ward clustering of localized directions (distance: 1 - |cos|)",
) -> None:
    """Write a dendrogram PNG with each leaf's image [H, W, 3] uint8 drawn under its leaf (Fig. 6).

    leaf_images[i] belongs to original leaf i (the column order given to `cluster_directions`);
    num_clusters colours the branches below the cut that gives that many clusters.
    """
    # a Figure object without pyplot: the user's matplotlib backend and pyplot state stay untouched
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from ..ops.io import atomic_write

    Z = np.asarray(Z, dtype=np.float64)
    n = Z.shape[0] + 1
    if leaf_images is not None and len(leaf_images) != n:
        raise ValueError(f"plot_dendrogram: {len(leaf_images)} leaf images for {n} leaves")
    if labels is not None and len(labels) != n:
        raise ValueError(f"plot_dendrogram: {len(labels)} labels for {n} leaves")
    fig_w = max(6.0, 0.5 * n + 2.0)
    fig = Figure(figsize=(fig_w, 5.5))
    ax = fig.subplots()
    if n >= 2:
        thr = None
        if num_clusters is not None and 1 < num_clusters <= n:
            # colour threshold between the last merge kept and the first merge cut: the first
            # n - k merges (sorted by height) leave k clusters
            heights = np.sort(Z[:, 2])
            idx = n - num_clusters
            thr = float(0.5 * (heights[idx - 1] + heights[idx])) if idx > 0 else float(0.5 * heights[0])
        r = dendrogram(Z, ax=ax, labels=list(labels) if labels is not None else None,
                       color_threshold=thr, leaf_rotation=90.0, leaf_font_size=7)
        order = r["leaves"]
    else:
        order = [0]
        ax.set_xlim(0, 10)
        ax.text(5, 0.5, "a single component: nothing to cluster", ha="center")
    ax.set_ylabel("Ward distance")
    ax.set_title(title, fontsize=10)
    if leaf_images is not None:
        imgs = [np.asarray(im) for im in leaf_images]
        for leaf, img in enumerate(imgs):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"plot_dendrogram: leaf image {leaf} must be uint8 [H, W, 3], got {img.dtype} {img.shape}")
        # Size every thumbnail to ~85% of the leaf spacing (in points) so neighbours do not overlap.
        spacing_pt = fig_w * 72.0 * (fig.subplotpars.right - fig.subplotpars.left) / len(order)
        max_w = max(im.shape[1] for im in imgs)
        zoom = 0.85 * spacing_pt / max_w
        img_h_pt = zoom * max(im.shape[0] for im in imgs)
        for pos, leaf in enumerate(order):
            ab = AnnotationBbox(OffsetImage(imgs[leaf], zoom=zoom), (5.0 + 10.0 * pos, 0.0), xybox=(0, -3),
                                xycoords=("data", "axes fraction"), boxcoords="offset points", frameon=False,
                                box_alignment=(0.5, 1.0), annotation_clip=False)
            ax.add_artist(ab)
        ax.tick_params(axis="x", pad=img_h_pt + 6)  # leaf labels go below the pictures
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")


def region_shares(u_p, face_mask, around_mask) -> dict[str, float]:
    """Share of sum |u_p| (over all channels) that falls in the face, around it, and the background.

    u_p: [S] with S = C * H * W ([C, H, W] layout); masks: [H, W] bool (or 0/1). 'around' counts
    only pixels outside the face mask; 'background' is everything else. Shares sum to 1
    (all zero for an all-zero component).
    """
    face = _as_numpy(face_mask) > 0.5
    around = (_as_numpy(around_mask) > 0.5) & ~face
    if face.ndim != 2 or face.shape != around.shape:
        raise ValueError(f"region_shares: masks must both be [H, W], got {face.shape} and {around.shape}")
    hw = face.size
    u = np.abs(_as_numpy(u_p).reshape(-1))
    if u.size % hw:
        raise ValueError(f"region_shares: u_p has {u.size} values, not a multiple of H*W = {hw}")
    mass = u.reshape(-1, *face.shape).sum(0)
    total = float(mass.sum())
    if total <= 0:
        return {"face": 0.0, "around": 0.0, "background": 0.0}
    f = float(mass[face].sum()) / total
    a = float(mass[around].sum()) / total
    return {"face": f, "around": a, "background": max(0.0, 1.0 - f - a)}


def region_of_component(u_p, face_mask, around_mask) -> Region:
    """'face', 'around' or 'background': the region holding the largest share of |u_p| mass."""
    shares = region_shares(u_p, face_mask, around_mask)
    if sum(shares.values()) == 0:
        return "background"
    return max(("face", "around", "background"), key=lambda k: shares[k])  # ties: face first
