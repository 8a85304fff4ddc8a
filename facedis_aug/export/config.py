"""Stage 4 settings (ONNX export and the bundle)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ExportConfig:
    onnx: bool = True  # also write generator.onnx (needs the `onnx` extra)
