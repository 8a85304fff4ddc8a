"""benchmarks/bench_view_oracle.py: the teach-then-release loop end to end (quick size, resumable) and the
bookkeeping of `where` (region gains that add up to the image's, nothing at all when the turn is kept)."""
import json

import pytest
import torch

from benchmarks import bench_view_oracle as V
from facedis_aug.testing import tiny_decomposer


def _eval(n=12, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    yaw = torch.linspace(-60, 60, n)
    face = torch.zeros(n, size, size, dtype=torch.bool)
    face[:, 10:22, 11:21] = True
    return {"x": torch.rand(n, 3, size, size, generator=g) * 2 - 1, "yaw": yaw, "face": face}


def test_where_gains_add_up_and_vanish_when_the_turn_is_kept():
    model, ev = tiny_decomposer(32, seed=1), _eval()
    kept, kept_map = V.where(model, ev, "t", scale=1.0)
    assert kept["faces"] == int(((ev["yaw"].abs() >= 20) & (ev["yaw"].abs() <= 60)).sum())
    assert all(kept[f"{r}_gain"] == 0.0 for r in ("face_skin", "layer_not_skin", "rest")) and kept_map.abs().max() == 0
    row, m = V.where(model, ev, "t", scale=0.5)
    assert sum(row[f"{r}_share"] for r in ("face_skin", "layer_not_skin", "rest")) == pytest.approx(1.0)
    total = sum(row[f"{r}_gain"] for r in ("face_skin", "layer_not_skin", "rest"))
    assert total == pytest.approx(float(m.mean()), abs=1e-6)  # mirroring the map keeps its mean
    assert abs(total) > 0 and m.shape == (32, 32)
    for r in ("face_skin", "layer_not_skin", "rest"):
        assert row[f"{r}_l1_smaller"] - row[f"{r}_l1_own"] == pytest.approx(row[f"{r}_gain"] / row[f"{r}_share"], rel=1e-4, abs=1e-7)


def test_quick_mode_teaches_releases_and_resumes(tmp_path):
    argv = ["--quick", "--arms", "recipe", "--where", "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path / "out")]
    first = V.main(argv)
    assert [(r["phase"], r["steps"]) for r in first] == [
        ("taught (oracle view loss)", 3), ("released (unsupervised)", 4), ("released (unsupervised)", 5)]
    doc = json.loads((tmp_path / "out" / "view_oracle_quick.json").read_text())
    assert doc["command"] and doc["machine"]["cpu"] and len(doc["rows"]) == 3
    assert (tmp_path / "out" / "view_oracle_quick_where.md").is_file() and (tmp_path / "out" / "view_oracle_quick_where.png").is_file()
    for r in first:
        assert -1 <= r["yaw_r"] <= 1 and 0 < r["psnr"] < 100
    # cached: a rerun gives the same rows; another released objective trains beside it from the same taught weights
    assert V.main(argv) == first
    other = V.main(argv + ["--release-set", "none", "--release-set", "decompose.view_cycle=0.0"])
    assert other[:3] == first and [r["phase"] for r in other[3:]] == ["released (decompose.view_cycle=0.0)"] * 2
    assert len(list((tmp_path / "cache").glob("recipe-*/released*"))) == 2
    # a score lost while the run went on (two runs writing at once) is retrained, not read off the later checkpoint
    scores = next((tmp_path / "cache").glob("recipe-*/scores.json"))
    doc = json.loads(scores.read_text())
    del doc["1"]
    scores.write_text(json.dumps(doc))
    assert V.main(argv) == first
    # --set changes what is taught: a run of its own
    changed = V.main(argv + ["--set", "decompose.depth_residual=0.01"])
    assert len(list((tmp_path / "cache").glob("recipe-*/taught"))) == 2 and changed[0]["steps"] == 3


def test_cache_key_leaves_later_settings_out_at_their_old_value():
    from benchmarks.bench_decompose import stable_settings
    from facedis_aug.decompose import DecomposeConfig

    cfg = DecomposeConfig(image_size=32)
    assert "map_cycle" not in stable_settings(cfg, V.LATER_SETTINGS) and "lr" in stable_settings(cfg, V.LATER_SETTINGS)
    assert stable_settings(DecomposeConfig(image_size=32, map_cycle=1.0), V.LATER_SETTINGS)["map_cycle"] == 1.0
