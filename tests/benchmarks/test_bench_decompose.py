"""Smoke test of the decomposition benchmark (benchmarks/bench_decompose.py --quick) and known-answer
checks of its ground-truth metrics (benchmarks/decompose_eval.py)."""
import json
import math
from pathlib import Path

import pytest
import torch


from benchmarks import bench_decompose as B
from benchmarks.decompose_eval import _scores, depth_metrics, yaw_response
from facedis_aug.decompose import Renderer


def test_depth_metrics_known_answers():
    torch.manual_seed(0)
    true = 1.0 + 0.05 * torch.rand(2, 16, 16)
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    # SIDE is scale invariant: a depth map off by a constant factor scores 0
    side, _ = depth_metrics(true * 1.7, true, valid, pred_fov=10.0)
    assert side == pytest.approx(0.0, abs=1e-6)
    # a plane against a plane: normals agree (MAD 0) whatever the camera; a tilted plane differs
    flat = torch.ones(2, 16, 16)
    assert depth_metrics(flat, flat * 3.0, valid, pred_fov=10.0)[1] == pytest.approx(0.0, abs=1e-3)
    r = Renderer(16, 10.0)
    u = torch.arange(16.0)[None, None, :].expand(2, 16, 16)
    # the plane z = 1 + a x through the rays: its normal is tilted by atan(a) from the optical axis
    a = math.tan(math.radians(20.0))
    x = (u - r.center) / r.focal
    tilted = 1.0 / (1.0 - a * x)
    mad = depth_metrics(tilted, flat, valid, pred_fov=10.0)[1]
    assert mad == pytest.approx(20.0, abs=0.5)


def test_yaw_scores_known_answers():
    yaw = torch.tensor([-80.0, -50.0, -10.0, 0.0, 10.0, 50.0, 80.0])
    ev = {"yaw": yaw, "pitch": torch.zeros(7), "depth": torch.ones(7, 8, 8), "face": torch.ones(7, 8, 8, dtype=torch.bool)}
    half = _scores(yaw / 2, torch.zeros(7), torch.ones(7, 8, 8), ev["face"], ev, 10.0)
    assert half["yaw_r"] == pytest.approx(1.0) and half["yaw_slope"] == pytest.approx(0.5)
    assert half["yaw_mae"] == pytest.approx(float((yaw / 2).abs().mean()))
    assert half["yaw_mae_profile"] == pytest.approx(float((yaw[yaw.abs() > 45] / 2).abs().mean())) and half["n_profile"] == 4
    flipped = _scores(-yaw, torch.zeros(7), torch.ones(7, 8, 8), ev["face"], ev, 10.0)
    assert flipped["yaw_r"] == pytest.approx(-1.0) and flipped["yaw_slope"] == pytest.approx(-1.0)


def test_yaw_response_known_answers():
    true = torch.tensor([-90.0, -80.0, -5.0, 0.0, 5.0, 14.9, 15.0, 89.0, 90.0])
    # a reading saturating at +-40: the curve says where, the slope alone would not
    r = yaw_response(true.clamp(-40, 40), true, edges=(-90.0, -45.0, 0.0, 15.0, 45.0, 90.0))
    assert r["n"] == [2, 1, 3, 1, 2]  # [0, 15) holds 0, 5, 14.9; 15 goes to the next bin; 90 to the last (closed)
    assert r["mean"] == [-40.0, -5.0, pytest.approx(6.633, abs=1e-3), 15.0, 40.0]
    assert r["true"][0] == -85.0 and r["std"][0] == 0.0 and r["std"][4] == 0.0
    empty = yaw_response(true, true, edges=(-90.0, -60.0, -45.0, 90.0))
    assert empty["n"][1] == 0 and empty["mean"][1] is None and empty["std"][1] is None
    with pytest.raises(ValueError):
        yaw_response(true[:3], true)
    # seeds average bin by bin
    assert B.mean_response([r, {**r, "mean": [m + 2 for m in r["mean"]]}])["mean"][0] == -39.0


def test_arms_keep_their_settings_and_one_of_them_is_the_recipe_now():
    from facedis_aug.recipe import load_recipe

    recipe = load_recipe(Path(B.__file__).resolve().parents[1] / "recipes" / "tiny.yaml")
    # an arm defined before the recipe took SSIM and the +-90 view cycle keeps running without them (its cache key too)
    old = B.arm_config(recipe, "world-pairs-face-ring11-head-warm-r3", 2250)
    assert old.ssim_weight == 0.0 and tuple(old.view_cycle_range) == (20.0, 60.0)
    # the README and tiny.yaml quote this arm at 4500 steps as the recipe's decompose stage
    now = B.arm_config(recipe, "world-pairs-face-ring11-head-warm-r3-ssim10-cycle90", 4500)
    for key in ("iterations", "surface", "surface_warmup", "restarts", "restart_steps", "ssim_weight", "view_cycle",
                "view_cycle_range", "shape_prior_axes", "background_ring", "identity_pairs", "mutual", "mutual_eps",
                "confidence", "lr", "batch", "channels", "bottleneck", "head_channels", "shape_prior", "yaw_aug"):
        assert tuple(getattr(now, key)) == tuple(getattr(recipe.decompose, key)) if isinstance(getattr(now, key), (list, tuple)) \
            else getattr(now, key) == getattr(recipe.decompose, key), key


def test_quick_mode_trains_evaluates_and_resumes(tmp_path):
    argv = ["--quick", "--arms", "world-mutual", "gan-aug", "harness", "world-pairs", "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "out")]
    first = B.main(argv)
    doc = json.loads((tmp_path / "out" / "decompose_quick.json").read_text())
    assert [r["arm"] for r in doc["rows"]] == ["constant (frontal, flat)", "world-mutual", "gan-aug", "harness",
                                            "world-pairs"]
    assert doc["command"] and doc["machine"]["cpu"] and doc["date"]
    assert -1 <= first["results"]["harness"][0]["harness"]["r"] <= 1 and "harness: slope" in doc["notes"]
    for r in doc["rows"]:
        assert r["arm"].startswith("constant") or 0 < r["PSNR dB"] < 100
        assert 0 <= r["yaw MAE"] <= 180 and -1 <= r["yaw r"] <= 1 and r["SIDE"] >= 0 and 0 <= r["MAD deg"] <= 180
    assert doc["rows"][1]["mutual"] is True and doc["rows"][2]["yaw aug"] is True
    assert (tmp_path / "out" / "decompose_quick_gan-aug.png").is_file()
    assert (tmp_path / "out" / "decompose_quick_yaw_response.png").is_file() and "decompose_quick_yaw_response.png" in doc["notes"]
    assert len(doc["results"]["harness"][0]["metrics"]["yaw_response"]["mean"]) == 12
    assert first["eval"]["yaw"].abs().max() <= 90 and (first["eval"]["yaw"].abs() > 45).any()
    # a rerun skips the finished arms and gives the same numbers
    again = B.main(argv)
    assert again["results"]["gan-aug"][0]["metrics"] == first["results"]["gan-aug"][0]["metrics"]
    stats = (next((tmp_path / "cache").glob("gan-aug-*")) / "stats.jsonl").read_text().splitlines()
    assert len(stats) == 3  # trained once: three logged steps, not six
