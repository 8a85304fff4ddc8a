"""Stage 3 settings (least-squares and localized directions). Owned by the directions stage."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DirectionsConfig:
    num_pairs: int = 1024  # N pairs (w1, w0) for Eq. 2-3; must exceed the latent size d
