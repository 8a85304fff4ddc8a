"""Known answers for benchmarks/bench_aug_direction.py: the cosine of a stage-2 checkpoint's v_yaw."""
import math
from pathlib import Path

import pytest
import torch


from benchmarks.bench_aug_direction import cosine_rows
from facedis_aug.ops import save_safetensors


def test_cosine_of_planted_directions(tmp_path):
    ref = torch.zeros(8)
    ref[0] = 2.0  # not unit length: the cosine normalises
    save_safetensors(tmp_path / "directions.safetensors", {"yaw": ref})
    v = torch.zeros(8)
    v[0], v[1] = 1.0, 1.0  # 45 degrees from the reference
    save_safetensors(tmp_path / "a.safetensors", {"aug.v": v, "aug.w": torch.zeros(1, 8)},
                     metadata={"step": 7, "aug": {"updates": 3, "sigma": 0.5}})
    save_safetensors(tmp_path / "b.safetensors", {"aug.w": torch.zeros(1, 8)}, metadata={"step": 2, "aug": {"updates": 0}})
    a, b = cosine_rows(tmp_path / "directions.safetensors", [tmp_path / "a.safetensors", tmp_path / "b.safetensors"])
    assert a["cosine to reference"] == pytest.approx(1 / math.sqrt(2), abs=1e-4)
    assert a["step"] == 7 and a["v_yaw updates"] == 3
    assert b["cosine to reference"] is None  # no v_yaw fitted yet
    with pytest.raises(SystemExit, match="no 'yaw'"):
        cosine_rows(tmp_path / "a.safetensors", [])
