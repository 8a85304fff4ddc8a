"""The side-by-side speed benchmark needs a local stylegan2-ada-pytorch checkout; without one it
must stop with one line that names the path, not a traceback from deep inside an import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_missing_reference_checkout_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_gan_reference", "--reference", str(tmp_path / "nowhere")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == f"--reference {tmp_path / 'nowhere'}: not a stylegan2-ada-pytorch checkout (no training/networks.py)"
    assert "Traceback" not in proc.stderr
