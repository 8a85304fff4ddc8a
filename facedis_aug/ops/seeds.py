"""One way to derive seeds and one way to turn seeds into latents, for every stage and the library.

    derive_seed(seed, k, TAG)        -> a 63-bit seed of its own for (seed, k, TAG)
    seeds_to_z(seeds, z_dim)         -> z [len(seeds), z_dim], one torch.Generator per seed

`seeds_to_z` gives a face the same z whatever the other seeds or the batch, so `facedis-aug draw
--seed 7`, row 7 of a stage's strips and `Bundle.sample_w(1, seed=7)` are one face.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor


def derive_seed(*parts: int) -> int:
    """A 63-bit seed for the tuple `parts` (numpy's SeedSequence: distinct tuples give independent streams)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]) >> 1


def seeds_to_z(seeds: Iterable[int], z_dim: int) -> Tensor:
    """One z [z_dim] per seed, each from its own torch.Generator: [len(seeds), z_dim] float32."""
    return torch.stack([torch.randn(int(z_dim), generator=torch.Generator().manual_seed(int(s))) for s in seeds])
