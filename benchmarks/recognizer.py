"""A small face recognizer for the benchmarks: timm backbone + embedding neck + margin softmax head.

Used by the pose-balance benchmark (issue 7) and for identity-preservation scores (issue 8):

    model = load_recognizer("benchmarks/results/cache/pose_balance/recognizer_oracle_seed0.safetensors")
    e = embed(model, images)          # images [B, 3, H, W] in [0, 1] -> [B, D] unit vectors (float32)
    similarity = (e1 * e2).sum(-1)    # cosine similarity of two batches of faces, in [-1, 1]

Training (see `train_recognizer`): `Recognizer(cfg)` maps images to raw embeddings [B, D];
`MarginHead` turns them into margin logits over the training identities (ArcFace: s cos(theta + m),
CosFace: s (cos theta - m) at the true class, s cos theta elsewhere). The backbone is always built
with `pretrained=False`: nothing is downloaded. Weights are safetensors with the config as JSON
metadata (no pickles); a training checkpoint also holds the head, the optimizer state and the step.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedis_aug.ops.io import load_safetensors, save_safetensors

FORMAT = "facedis_aug.recognizer"
FORMAT_VERSION = 1
MARGINS = ("arcface", "cosface")


@dataclass
class RecognizerConfig:
    """arch: a timm model name (built with pretrained=False); input_size: images are resized to
    this side in pixels before the backbone; embedding_dim: D."""

    arch: str = "resnet10t"
    input_size: int = 32
    embedding_dim: int = 128


@dataclass
class TrainConfig:
    """The schedule every arm shares. lr: AdamW peak, linear warm-up then cosine decay to 0."""

    steps: int = 1000
    batch: int = 128
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup: int = 50
    margin: str = "cosface"
    scale: float = 30.0  # s
    m: float = 0.35  # CosFace 0.35, ArcFace 0.5 are the papers' values
    checkpoint_every: int = 100


class Recognizer(nn.Module):
    """images [B, 3, H, W] in [0, 1] -> raw embeddings [B, D] (not normalised; see `embed`)."""

    def __init__(self, cfg: RecognizerConfig):
        super().__init__()
        import timm

        self.cfg = cfg
        self.backbone = timm.create_model(cfg.arch, pretrained=False, num_classes=0, global_pool="avg")
        feat = int(self.backbone.num_features)
        self.neck = nn.Sequential(nn.BatchNorm1d(feat), nn.Linear(feat, cfg.embedding_dim), nn.BatchNorm1d(cfg.embedding_dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(x.shape)}")
        s = self.cfg.input_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x.float(), size=(s, s), mode="bilinear", align_corners=False, antialias=x.shape[-1] > s)
        return self.neck(self.backbone((x.float() - 0.5) / 0.5))


class MarginHead(nn.Module):
    """Margin softmax over C identities: embeddings [B, D], labels [B] -> logits [B, C]."""

    def __init__(self, embedding_dim: int, num_classes: int, margin: str = "cosface", scale: float = 30.0, m: float = 0.35):
        super().__init__()
        if margin not in MARGINS:
            raise ValueError(f"margin must be one of {MARGINS}, got {margin!r}")
        self.margin, self.scale, self.m = margin, float(scale), float(m)
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.01)

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        cos = F.linear(F.normalize(emb, dim=1), F.normalize(self.weight, dim=1)).clamp(-1.0, 1.0)
        target = cos.gather(1, labels[:, None])
        if self.margin == "cosface":
            new = target - self.m
        else:  # ArcFace: cos(theta + m), kept monotonic past theta > pi - m (InsightFace's fallback)
            sin = (1.0 - target.square()).clamp_min(1e-9).sqrt()
            phi = target * math.cos(self.m) - sin * math.sin(self.m)
            new = torch.where(target > math.cos(math.pi - self.m), phi, target - math.sin(math.pi - self.m) * self.m)
        return self.scale * cos.scatter(1, labels[:, None], new)


@torch.no_grad()
def embed(model: Recognizer, images: Tensor, batch_size: int = 256) -> Tensor:
    """images [B, 3, H, W] in [0, 1] (float, or uint8 in [0, 255]) -> [B, D] unit vectors, float32."""
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        outs.append(F.normalize(model(x), dim=1))
    model.train(was_training)
    return torch.cat(outs) if outs else torch.zeros(0, model.cfg.embedding_dim)


# ---------------------------------------------------------------------------------- files
def save_recognizer(model: Recognizer, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Backbone + neck weights (no head) as safetensors; config and `meta` in the JSON metadata."""
    save_safetensors(path, model.state_dict(), {"format": FORMAT, "format_version": FORMAT_VERSION,
                                                 "config": asdict(model.cfg), "meta": meta or {}})  # fmt: skip
    return Path(path)


def load_recognizer(path: str | Path) -> Recognizer:
    """A recognizer saved by `save_recognizer`, in eval mode without grad; `.meta` holds its metadata."""
    tensors, meta = load_safetensors(path)
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a recognizer file (format {meta.get('format')!r} v{meta.get('format_version')!r})")
    model = Recognizer(RecognizerConfig(**meta["config"]))
    model.load_state_dict(tensors, strict=True)
    model.meta = meta.get("meta", {})
    return model.eval().requires_grad_(False)


def _save_checkpoint(path: Path, model: Recognizer, head: MarginHead, opt: torch.optim.Optimizer, step: int, losses: list[float], train_s: float) -> None:
    """Model, head and optimizer state flattened into one safetensors file (written atomically)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"head.{k}": v for k, v in head.state_dict().items()})
    sd = opt.state_dict()
    scalars: dict[str, Any] = {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            if isinstance(v, Tensor):
                tensors[f"opt.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    save_safetensors(path, tensors, {"step": step, "losses": losses, "train_s": train_s, "param_groups": sd["param_groups"], "opt_scalars": scalars})


def _load_checkpoint(path: Path, model: Recognizer, head: MarginHead, opt: torch.optim.Optimizer) -> tuple[int, list[float], float]:
    tensors, meta = load_safetensors(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for k, v in meta["opt_scalars"].items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"]), list(meta["losses"]), float(meta["train_s"])


# ---------------------------------------------------------------------------------- training
def train_recognizer(
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    cfg: RecognizerConfig,
    train: TrainConfig,
    seed: int,
    augment: Callable[[np.ndarray, int], np.ndarray] | None = None,
    checkpoint: str | Path | None = None,
    log: Callable[[str], None] | None = print,
) -> tuple[Recognizer, dict[str, Any]]:
    """Train on images uint8 [N, 3, H, W] with labels [N] in [0, num_classes) for `train.steps` steps.

    Batch b of step t is drawn from a generator seeded by (seed, t), so a resumed run sees the same
    batches; `augment(batch uint8 [B, H, W, 3], step) -> same shape` is applied to each batch (the
    classical-augmentation arm). With `checkpoint`, state is saved there atomically every
    `train.checkpoint_every` steps and training resumes from it. Returns (model in eval mode, stats).
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"images must be uint8 [N, 3, H, W] matching labels [N]; got {images.dtype} {tuple(images.shape)}, {tuple(labels.shape)}")
    torch.manual_seed(seed)
    model = Recognizer(cfg).train()
    head = MarginHead(cfg.embedding_dim, num_classes, train.margin, train.scale, train.m)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)

    def lr_at(t: int) -> float:
        if t < train.warmup:
            return train.lr * (t + 1) / train.warmup
        return train.lr * 0.5 * (1 + math.cos(math.pi * (t - train.warmup) / max(1, train.steps - train.warmup)))

    step, losses, before = 0, [], 0.0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        step, losses, before = _load_checkpoint(ckpt, model, head, opt)
        if log:
            log(f"  resumed from {ckpt.name} at step {step}")
    resumed_at = step
    labels = labels.long()
    t0 = time.perf_counter()
    while step < train.steps:
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))
        idx = torch.randint(0, images.shape[0], (train.batch,), generator=g)
        x = images[idx]
        if augment is not None:
            x = torch.from_numpy(np.ascontiguousarray(augment(x.permute(0, 2, 3, 1).numpy(), seed * 1_000_003 + step))).permute(0, 3, 1, 2)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = F.cross_entropy(head(model(x.float() / 255.0), labels[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if log and (step % max(1, train.steps // 10) == 0 or step == train.steps):
            log(f"  step {step}/{train.steps}  loss {np.mean(losses[-50:]):.3f}  ({time.perf_counter() - t0:.0f} s)")
        if ckpt is not None and (step % train.checkpoint_every == 0 and step < train.steps):
            _save_checkpoint(ckpt, model, head, opt, step, losses, before + time.perf_counter() - t0)
    stats = {"steps": train.steps, "initial_loss": float(np.mean(losses[:10])), "final_loss": float(np.mean(losses[-50:])),
             "train_s": before + time.perf_counter() - t0, "resumed_at_step": resumed_at}  # fmt: skip
    return model.eval(), stats
