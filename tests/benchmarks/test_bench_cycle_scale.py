import json
import math

import pytest
import torch

from benchmarks import bench_cycle_scale
from facedis_aug.decompose.config import DecomposeConfig
from facedis_aug.decompose.model import Decomposer, save_decomposer
from facedis_aug.gan.networks import generator_metadata
from facedis_aug.ops import save_safetensors
from facedis_aug.testing import tiny_decomposer, tiny_generator


def test_slope_through_the_origin_known_answer():
    x = torch.tensor([-2.0, -1.0, 1.0, 2.0])
    assert bench_cycle_scale._slope(x, 0.8 * x) == pytest.approx(0.8)
    # noise symmetric in x leaves the slope where it is
    assert bench_cycle_scale._slope(x, 0.8 * x + torch.tensor([0.3, -0.3, -0.3, 0.3])) == pytest.approx(0.8)


def test_truth_ratio_reads_the_table2_calibrations(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_cycle_scale, "RESULTS", tmp_path)
    (tmp_path / "t2.json").write_text(json.dumps({"edit_response": {"yaw": {"bundle_units_per_sigma": 6.0, "true_per_sigma": 7.5}}}))
    assert bench_cycle_scale.truth_ratio("t2") == (6.0, 7.5, pytest.approx(0.8))


def _run(tmp_path, decomposer):
    G = tiny_generator(32, w_dim=16, channels=8)
    (tmp_path / "gan").mkdir(parents=True)
    (tmp_path / "decompose").mkdir(parents=True)
    save_safetensors(tmp_path / "gan" / "gan.safetensors", G.state_dict(), generator_metadata(G))
    save_decomposer(decomposer, tmp_path / "decompose" / "decomposer.safetensors")
    return tmp_path


def test_a_view_head_that_reads_nothing_has_cycle_slope_zero(tmp_path):
    # zero-initialised heads read every image as frontal: every turn is read back as 0
    torch.manual_seed(0)
    dec = Decomposer(DecomposeConfig(image_size=32, channels=8, bottleneck=16, head_channels=8, conf_channels=8,
                                     conf_bottleneck=16, zero_init_heads=True))
    out = bench_cycle_scale.cycle_slope(_run(tmp_path, dec), n=8, seed=0)
    assert out["cycle_slope"] == 0.0 and out["cycle_slope_10"] == 0.0 and out["reread_gap_deg"] == 0.0


def test_a_random_view_head_gives_a_finite_slope_and_mismatched_sizes_are_refused(tmp_path):
    out = bench_cycle_scale.cycle_slope(_run(tmp_path / "a", tiny_decomposer(32)), n=8, seed=0)
    assert all(math.isfinite(v) for v in out.values()) and out["cycle_slope"] != 0.0
    with pytest.raises(ValueError, match="px"):
        bench_cycle_scale.cycle_slope(_run(tmp_path / "b", tiny_decomposer(64)), n=8, seed=0)
