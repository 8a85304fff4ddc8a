"""The Table 1 benchmark's helpers: arm recipes, seed aggregation, stats.jsonl reading."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

from benchmarks.bench_decorr import aggregate, arm_recipe, read_stats, run_dir

TINY = REPO / "recipes" / "tiny.yaml"


def test_arms_differ_only_in_the_decorrelation_weight():
    on = arm_recipe(TINY, "on", 3.5, 7)
    off = arm_recipe(TINY, "off", 3.5, 7)
    assert on.gan.decorr_weight > 0 and off.gan.decorr_weight == 0.0
    assert on.gan.kimg == off.gan.kimg == 3.5 and on.run.seed == off.run.seed == 7
    a, b = on.to_dict(), off.to_dict()
    a["gan"].pop("decorr_weight"), b["gan"].pop("decorr_weight")
    assert a == b  # same data, networks, optimiser and length


def test_weight_study_arms_set_their_weight_and_nothing_else():
    on = arm_recipe(TINY, "on", 3.5, 7).to_dict()
    for arm, weight in (("w0.1", 0.1), ("w10", 10.0)):
        r = arm_recipe(TINY, arm, 3.5, 7).to_dict()
        assert r["gan"].pop("decorr_weight") == weight
        assert r["gan"] == {k: v for k, v in on["gan"].items() if k != "decorr_weight"}


def test_arm_recipe_rejects_unknown_arm_and_on_without_loss():
    with pytest.raises(ValueError, match="arm"):
        arm_recipe(TINY, "maybe", 1, 0)
    with pytest.raises(ValueError, match="decorr_weight"):
        arm_recipe(TINY, "on", 1, 0, ["gan.decorr_weight=0"])


def test_run_dirs_are_distinct_per_arm_seed_and_length(tmp_path):
    dirs = {run_dir(tmp_path, a, s, k) for a in ("on", "off") for s in (0, 1) for k in (2, 8)}
    assert len(dirs) == 8


def test_aggregate_mean_and_sample_std():
    rows = [{"fid": 1.0, "ppl": 10.0}, {"fid": 3.0, "ppl": 10.0}, {"fid": 5.0, "ppl": 13.0}]
    out = aggregate(rows, ["fid", "ppl"])
    assert out["fid"] == pytest.approx(3.0) and out["fid_std"] == pytest.approx(2.0)  # sqrt(8 / 2)
    assert out["ppl"] == pytest.approx(11.0) and out["ppl_std"] == pytest.approx(math.sqrt(3.0))
    one = aggregate(rows[:1], ["fid"])
    assert one["fid"] == 1.0 and math.isnan(one["fid_std"])
    with pytest.raises(ValueError):
        aggregate([], ["fid"])


def test_read_stats_keeps_only_training_lines(tmp_path):
    path = tmp_path / "stats.jsonl"
    lines = [
        {"step": 10, "kimg": 0.16, "rho_mean": 0.2, "var_cv": 0.9},
        {"step": 11, "event": "non_finite_skipped"},
        {"step": 20, "kimg": 0.32, "fid": 40.0},
        {"step": 20, "kimg": 0.32, "rho_mean": 0.1, "var_cv": 0.5},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    got = read_stats(path)
    assert [r["step"] for r in got] == [10, 20] and got[1]["rho_mean"] == 0.1
    assert read_stats(tmp_path / "missing.jsonl") == []
