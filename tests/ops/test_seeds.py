"""ops.seeds: the seed derivations (the package's and the synthetic world's) and one seed -> z for the whole package."""
from __future__ import annotations

import numpy as np
import torch

from facedis_aug.ops.seeds import _splitmix, counter_seed, derive_seed, seeds_to_z


def test_seeds_to_z_is_per_seed_whatever_the_batch():
    z = seeds_to_z([3, 7, 11], 16)
    assert z.shape == (3, 16) and z.dtype == torch.float32
    torch.testing.assert_close(z[1], torch.randn(16, generator=torch.Generator().manual_seed(7)), rtol=0, atol=0)
    torch.testing.assert_close(seeds_to_z([7], 16)[0], z[1], rtol=0, atol=0)


def test_derive_seed_is_numpy_seedsequence_in_63_bits():
    s = derive_seed(5, 2, 0x1D)
    assert s == int(np.random.SeedSequence([5, 2, 0x1D]).generate_state(1, np.uint64)[0]) >> 1
    assert 0 <= s < 2**63 and derive_seed(5, 3, 0x1D) != s and derive_seed(5, 2, 0x1D) == s


def test_counter_seed_is_splitmix64_and_order_free():
    # splitmix64's published output sequence from state 0 (Steele, Lea, Flood 2014; Vigna's splitmix64.c)
    golden = 0x9E3779B97F4A7C15
    assert _splitmix(0) == 0xE220A8397B1DCDAF and _splitmix(golden) == 0x6E789E6AA1B965F4
    assert _splitmix(2 * golden % 2**64) == 0x06C45D188009454F
    s = counter_seed(7, 2, 123456)
    assert 0 <= s < 2**63 and s == _splitmix(_splitmix(_splitmix(7) ^ 2) ^ 123456) >> 1
    assert len({counter_seed(0, stream, i) for stream in (1, 2, 3) for i in range(100)}) == 300
