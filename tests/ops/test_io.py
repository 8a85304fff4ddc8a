"""ops.io: paths read from a manifest stay inside their folder."""
from __future__ import annotations

import pytest

from facedis_aug.ops.io import path_inside


def test_path_inside_accepts_relative_names_and_refuses_escapes(tmp_path):
    (tmp_path / "a").mkdir()
    assert path_inside(tmp_path, "a/b.txt") == tmp_path / "a" / "b.txt"
    assert path_inside(tmp_path, "gen.onnx") == tmp_path / "gen.onnx"
    for bad in ("", "/abs", "..", "a/../../b", "a\\..\\..\\b", "D:evil", 3):
        with pytest.raises(ValueError):
            path_inside(tmp_path, bad)
    (tmp_path / "out").symlink_to(tmp_path.parent, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        path_inside(tmp_path, "out/x")
    (tmp_path / "in").symlink_to(tmp_path / "a", target_is_directory=True)
    assert path_inside(tmp_path, "in/x") == tmp_path / "in" / "x"  # a link that stays inside is fine


def test_a_resumed_log_drops_the_lines_past_its_checkpoint(tmp_path):
    from facedis_aug.ops.io import JsonlLogger

    log = JsonlLogger(tmp_path / "stats.jsonl")
    log.log(note="header")  # a line without a step stays
    for step in range(1, 8):
        log.log(step=step, loss=float(step))
    with open(tmp_path / "stats.jsonl", "a") as f:
        f.write('{"step": 8, "lo')  # torn by the crash
    resumed = JsonlLogger(tmp_path / "stats.jsonl", keep_through=4)  # last checkpoint after step 4
    for step in range(5, 9):
        resumed.log(step=step, loss=float(step))
    rows = resumed.read()
    assert rows[0] == {"note": "header"} and [r["step"] for r in rows[1:]] == list(range(1, 9))
