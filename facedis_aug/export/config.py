"""Stage 4 settings (ONNX export and the bundle)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ExportConfig:
    onnx: bool = True  # also write generator.onnx and view_head.onnx (needs the `onnx` extra)
    # "dynamo": torch.export-based exporter (torch's default since 2.9; ~15 s per model on 2 CPU
    # cores). "torchscript": the legacy tracer (~1 s, deprecated by torch, slated for removal).
    # Both match PyTorch within 1e-5 on the generator here; see facedis_aug/export/onnx.py.
    exporter: Literal["dynamo", "torchscript"] = "dynamo"
    opset: int = 18  # ONNX opset version
    # generator noise in the ONNX graph: "const" bakes the fixed noise buffers in (what the
    # Datasets use), "input" makes one noise input per layer, "none" drops noise
    noise: Literal["const", "input", "none"] = "const"
    view_head: bool = True  # also export the decomposer's view head (yaw of real images)
    encoder: bool = True  # also export the encoder (image -> w) when the run or bundle has one
    check_batch: int = 3  # batch used to compare ONNX Runtime with PyTorch after export
    tolerance: float = 1e-3  # largest allowed max-abs difference (images in [-1, 1], degrees)

    def __post_init__(self) -> None:
        if self.opset < 17:
            raise ValueError(f"export.opset must be >= 17, got {self.opset}")
        if self.check_batch < 1:
            raise ValueError(f"export.check_batch must be >= 1, got {self.check_batch}")
        if not self.tolerance > 0:
            raise ValueError(f"export.tolerance must be > 0, got {self.tolerance}")
