"""Stage 2 settings (unsup3d-style decomposition). Owned by the decompose stage; extended there."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DecomposeConfig:
    image_size: int = 64  # the decomposer's input side in pixels
