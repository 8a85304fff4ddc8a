"""Encoder stage settings: an image -> W encoder trained on the generator's own samples.

Each field names where its default comes from: "idinvert" = Zhu et al., "In-Domain GAN Inversion
for Real Image Editing", ECCV 2020 (an encoder trained on the generator's domain, then a short
optimisation of w; settings only), "pSp" = Richardson et al., CVPR 2021 (settings only), "ours" =
a choice of this project. The paper we implement (Zheng et al.) edits only generated faces and
says nothing about encoders.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class EncodeConfig:
    # --- network ---
    backbone: str = "resnet18"  # any timm model name, always built with pretrained=False (nothing is downloaded); pSp uses a ResNet too
    image_size: int = 0  # encoder input side in pixels; 0 = the generator's resolution (ours)

    # --- optimisation ---
    batch: int = 32  # generator samples per step (ours)
    iterations: int = 20000  # steps (ours; pSp trains ~500k steps at batch 8 on FFHQ)
    lr: float = 1e-4  # Adam learning rate (pSp)
    w_weight: float = 1.0  # weight of the w-space MSE, w normalised per dimension by its std over F(z) (ours)
    image_weight: float = 1.0  # weight of the L1 between G(E(x)) and x at the generator resolution (pSp uses L2 + LPIPS; ours: L1)
    # autocast of the encoder pass and of G(E(x)) while training (ours; the samples, their w and the
    # held-out report stay fp32). At 32 px, resnet18, batch 16 it was no faster on this CPU (0.227 vs
    # 0.221 s/step, held-out w error alike: benchmarks/results/encode_precision.md), so fp32 stays the default.
    # 'auto' = bf16 only where the device computes it natively (ops/precision.py)
    precision: Literal["auto", "fp32", "bf16"] = "fp32"

    # --- refinement: a few Adam steps on w for one image, minimising the image L1 (idinvert) ---
    refine_steps: int = 10  # default step count of Bundle.encode / PoseExtrapolate (0 = encoder only) (ours: small, it costs G forward+backward per step)
    refine_lr: float = 0.05  # Adam lr in units of the per-dimension std of w (ours)
    refine_reg: float = 0.1  # weight of mean(((w - E(x)) / std_w)^2): stay near the encoder's answer, where edits behave (idinvert's domain regulariser, simplified)

    # --- held-out evaluation and the "is this a face?" check ---
    eval_samples: int = 256  # fresh generator samples and training-data images for the stage report (ours)
    face_quantile: float = 0.99  # quantile of the encoder-only L1 on training-data images ... (ours)
    # ... times this margin = the largest L1 an input may have to count as a face (ours; on the tiny
    # bundle faces reach L1 0.42 and uniform noise starts at 0.53: benchmarks/results/encoder.md)
    face_margin: float = 1.25

    # --- bookkeeping ---
    log_every: int = 25  # steps between stats.jsonl lines
    snapshot_every: int = 1000  # steps between PNG snapshots (inputs over reconstructions)
    checkpoint_every: int = 500  # steps between resumable checkpoints

    def __post_init__(self) -> None:
        if not self.backbone:
            raise ValueError("backbone must name a timm model, e.g. 'resnet18'")
        s = self.image_size
        if s != 0 and (s < 16 or s & (s - 1)):
            raise ValueError(f"image_size must be 0 (generator resolution) or a power of two >= 16, got {s}")
        for name in ("batch", "eval_samples", "log_every", "snapshot_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch < 2:
            raise ValueError(f"batch must be >= 2 (batch norm in the backbone), got {self.batch}")
        for name in ("iterations", "refine_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "refine_lr", "face_margin"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("w_weight", "image_weight", "refine_reg"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if self.w_weight == 0 and self.image_weight == 0:
            raise ValueError("w_weight and image_weight cannot both be 0")
        if not 0.0 < self.face_quantile <= 1.0:
            raise ValueError(f"face_quantile must be in (0, 1], got {self.face_quantile}")
