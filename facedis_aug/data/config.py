"""Data section of a recipe: where the training faces come from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class SyntheticConfig:
    """The built-in procedural face world (`facedis_aug.SyntheticFaces`)."""

    num_images: int = 100_000  # size of the training set drawn from the (endless) world: one epoch
    num_identities: int = 1000  # distinct people drawn from the world
    pose: Literal["uniform", "casia", "fixed"] = "casia"
    yaw_range: float = 90.0  # degrees; |yaw| never exceeds this
    frontal_share: float = 0.85  # casia: share of images with |yaw| < frontal_yaw
    frontal_yaw: float = 30.0  # degrees
    fixed_yaws: list[float] = field(default_factory=lambda: [0.0])  # pose == "fixed"
    seed: int = 0
    supersample: int = 1  # render at R*supersample and average down (anti-aliasing; 1 = fastest)


@dataclass
class DataConfig:
    source: Literal["synthetic", "folder"] = "synthetic"
    path: Optional[str] = None  # folder, .zip, or insightface .rec (+ .idx) of images when source == "folder" (or --data)
    preprocess: Literal["none", "casia", "ffhq"] = "none"
    # images with a side below this are skipped (listed in the run's data_skipped.txt), never upscaled
    # into training faces: a 1x1 image was accepted before (ours)
    min_size: int = 16
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    num_workers: int = 0  # DataLoader workers for image folders
