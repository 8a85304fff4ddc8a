"""Stage 2 settings (unsup3d-style decomposition, paper Sec. 3.2 and 3.4).

Each field names where its default comes from: "unsup3d" = Wu, Rupprecht and Vedaldi, CVPR 2020
(settings only, see DESIGN.md), "paper" = Zheng et al. CVPR 2021, "ours" = a choice of this project.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class DecomposeConfig:
    image_size: int = 64  # the decomposer's input side in pixels (paper Sec. 4: generations resized to 64)
    # training images: the stage-1 generator's samples with their w (paper), or the recipe's data
    # itself (folder or synthetic world; no w, so no yaw augmentation) (ours)
    source: Literal["generator", "data"] = "generator"

    # --- camera and geometry ---
    fov: float = 10.0  # perspective field of view in degrees (unsup3d)
    min_depth: float = 0.9  # canonical depth range, world units (unsup3d)
    max_depth: float = 1.1
    rot_range: float = 90.0  # |yaw| limit in degrees (ours: profiles need 90; unsup3d uses 60)
    pitch_range: float = 60.0  # |pitch| limit in degrees (unsup3d)
    roll_range: float = 60.0  # |roll| limit in degrees (unsup3d)
    xy_translation_range: float = 0.1  # |tx|, |ty| limit in world units; tz is fixed at 0 (unsup3d)
    # convex start for the depth (ours; unsup3d has none): an ellipsoid of this relief (world units)
    # and these semi-axes (fractions of the half image) is added to the depth net's raw output, which
    # learns the residual. It breaks the hollow-face ambiguity (a concave face turned by -yaw looks
    # like a convex one turned by +yaw: without it the tiny runs learned yaw with the wrong sign) and
    # gives yaw a first-order effect on the image from the first step. 0 turns it off.
    shape_prior: float = 0.05
    shape_prior_axes: tuple[float, float] = (0.6, 0.8)  # (horizontal, vertical) semi-axes

    # --- network widths (unsup3d's at the defaults; narrow them for CPU recipes) ---
    # the view and light heads' last layer starts at zero (ours): the canonical frame starts frontal and
    # the light neutral. From a random start the frame drifted to a constant tilted pose (measured:
    # pitch -43 degrees after 500 steps) that the symmetry loss does not undo.
    zero_init_heads: bool = True
    channels: int = 64  # base channels of the albedo and depth encoder-decoders (unsup3d)
    bottleneck: int = 256  # their bottleneck size (unsup3d)
    head_channels: int = 32  # base channels of the view and light encoders (unsup3d)
    conf_channels: int = 64  # base channels of the confidence nets (unsup3d)
    conf_bottleneck: int = 128  # their bottleneck size (unsup3d)

    # --- optimisation ---
    batch: int = 64  # images per step (unsup3d)
    iterations: int = 75000  # steps; ~30 epochs of 160k images at batch 64 (unsup3d's schedule)
    lr: float = 1e-4  # Adam learning rate (unsup3d)

    # --- losses ---
    flip_weight: float = 0.5  # weight of the horizontally flipped (symmetry) branch (unsup3d)
    # flip symmetry fixes the canonical yaw and roll but not the pitch: any tilted frame is as
    # symmetric. This weight times (batch-mean pitch / 10 degrees)^2 pins the canonical pitch to the
    # data's mean pitch (ours; measured: with mutual reconstruction the frame drifted to +15 degrees
    # without it). 0 turns it off (unsup3d).
    pitch_gauge: float = 1.0
    perceptual_weight: float = 1.0  # VGG16 relu3_3 perceptual loss weight (unsup3d); 0 turns it off
    vgg_weights: Optional[str] = None  # local VGG16 weights file; absent: perceptual loss skipped (ours)
    mutual: bool = True  # mutual reconstruction on/off (paper Sec. 3.2)
    mutual_eps: float = 0.5  # weight of the swapped reconstruction: 0.5 CASIA, 0.1 FFHQ (paper Sec. 4.2)

    # --- yaw augmentation (paper Sec. 3.4) ---
    yaw_aug: bool = True  # train on G(w') extrapolated along v_yaw (needs w and a generator)
    aug_every: int = 10  # re-estimate v_yaw every this many steps (paper)
    aug_momentum: float = 0.995  # moving-average momentum of v_yaw (paper)
    aug_range: float = 10.0  # s ~ U[-aug_range, aug_range] in Eq. 4 (paper)
    aug_share: float = 0.25  # share of each batch replaced by augmented samples (ours; paper silent)
    aug_buffer: int = 4096  # recent (w, yaw) pairs kept for the least-squares fit; must exceed dim(w) (ours)

    # --- bookkeeping ---
    log_every: int = 10  # steps between stats.jsonl lines
    snapshot_every: int = 1000  # steps between PNG snapshots
    checkpoint_every: int = 1000  # steps between resumable checkpoints

    def __post_init__(self) -> None:
        s = self.image_size
        if s < 16 or s & (s - 1):
            raise ValueError(f"image_size must be a power of two >= 16, got {s}")
        if not 0.0 < self.fov < 90.0:
            raise ValueError(f"fov must be in (0, 90) degrees, got {self.fov}")
        if not 0.0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        for name in ("rot_range", "pitch_range", "roll_range"):
            if not 0.0 <= getattr(self, name) <= 90.0:
                raise ValueError(f"{name} must be in [0, 90] degrees, got {getattr(self, name)}")
        for name in ("channels", "bottleneck", "head_channels", "conf_channels", "conf_bottleneck",
                     "batch", "aug_every", "aug_buffer", "log_every", "snapshot_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.shape_prior < 0 or self.shape_prior >= (self.max_depth - self.min_depth) / 2:
            raise ValueError(f"shape_prior must be in [0, (max_depth - min_depth) / 2), got {self.shape_prior}")
        if len(self.shape_prior_axes) != 2 or not all(0.0 < a <= 1.5 for a in self.shape_prior_axes):
            raise ValueError(f"shape_prior_axes must be two semi-axes in (0, 1.5], got {self.shape_prior_axes}")
        if self.pitch_gauge < 0:
            raise ValueError(f"pitch_gauge must be >= 0, got {self.pitch_gauge}")
        for name in ("mutual_eps", "aug_momentum", "aug_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mutual and self.batch < 2:
            raise ValueError("mutual reconstruction needs batch >= 2 (partners come from the batch)")
