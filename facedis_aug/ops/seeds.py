"""One way to derive seeds and one way to turn seeds into latents, for every stage and the library.

    derive_seed(seed, k, TAG)        -> a 63-bit seed of its own for (seed, k, TAG)
    counter_seed(seed, stream, i)    -> the synthetic world's per-draw seeds (a splitmix64 hash)
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


_MASK64 = (1 << 64) - 1


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def counter_seed(seed: int, stream: int, index: int) -> int:
    """Counter-based 63-bit seed: a hash of (seed, stream, index), so no draw depends on another's order.
    The synthetic world's images are defined by it (changing it would change every world image and every
    benchmark measured on them), hence a function of its own beside `derive_seed`."""
    return _splitmix(_splitmix(_splitmix(seed & _MASK64) ^ stream) ^ (index & _MASK64)) >> 1


def seeds_to_z(seeds: Iterable[int], z_dim: int) -> Tensor:
    """One z [z_dim] per seed, each from its own torch.Generator: [len(seeds), z_dim] float32."""
    return torch.stack([torch.randn(int(z_dim), generator=torch.Generator().manual_seed(int(s))) for s in seeds])
