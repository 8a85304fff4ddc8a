"""bench_gan's FLOP count: amortised over the lazy regularisers, per step."""
from dataclasses import replace

import pytest
import torch

from benchmarks.bench_gan import step_flops
from facedis_aug.gan.config import GanConfig

TINY = GanConfig(resolution=32, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8, batch=2,
                 decorr_samples=16, r1_interval=2, pl_interval=3, style_mixing=0.0)  # mixing draws a 2nd mapping pass at random


def test_step_flops_is_per_step_and_the_regularisers_add_their_share():
    torch.manual_seed(0)
    plain = replace(TINY, r1_gamma=0.0, pl_weight=0.0)
    # plain steps only: counted over lcm(2, 3) = 6 or lcm(4, 4) = 4 steps, the same FLOPs per step
    per_step = step_flops(plain)
    assert per_step > 0
    assert step_flops(replace(plain, r1_interval=4, pl_interval=4)) == pytest.approx(per_step)
    # R1 every 2 steps costs more per step than R1 every 4; both more than none
    r1_2, r1_4 = step_flops(replace(TINY, pl_weight=0.0)), step_flops(replace(TINY, pl_weight=0.0, r1_interval=4))
    assert per_step < r1_4 < r1_2
    # the extra of R1 is amortised: every 2 steps adds twice what every 4 adds
    assert r1_2 - per_step == pytest.approx(2 * (r1_4 - per_step), rel=1e-6)
