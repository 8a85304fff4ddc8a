"""Stage 1 settings (StyleGAN2 + decorrelation loss). Owned by the gan stage; extended there."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GanConfig:
    resolution: int = 32  # output side in pixels (power of two, 32..256)
