"""bench_view_real: its scores against planted answers, and one clear line without a MediaPipe Python."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

from benchmarks.bench_view_real import scores


def test_scores_of_a_planted_line():
    ref = np.linspace(-40.0, 40.0, 81)
    s = scores(0.5 * ref + 3.0, ref)
    assert abs(s["slope"] - 0.5) < 1e-12 and abs(s["r"] - 1.0) < 1e-12
    assert abs(s["MAE"] - np.abs(-0.5 * ref + 3.0).mean()) < 1e-12
    assert abs(s["MAE of 0"] - 1640 / 81) < 1e-12  # sum of |k| for k = -40..40, over 81 points
    flat = scores(np.full_like(ref, 7.0), ref)
    assert flat["slope"] == 0.0 and abs(flat["r"]) < 1e-12


def test_missing_mediapipe_python_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_view_real", "--bundle", str(tmp_path),
                           "--mediapipe-python", str(tmp_path / "nopython")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"{tmp_path / 'nopython'}: no such Python")
    assert "Traceback" not in proc.stderr
