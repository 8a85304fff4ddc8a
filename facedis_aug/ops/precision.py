"""Which autocast a training loop gets: 'auto' picks bf16 only where the device computes it natively.

Why this exists: on a CPU without AVX512_BF16 or AMX, PyTorch emulates bf16: a 1024^2 matmul ran at 0.82
GFLOP/s against 63 in fp32 on one AVX2 thread, and the tiny recipe's amortised gan step took 5.0 s against
0.51 s (benchmarks/results/gan_speed_tiny_avx2.md). On an AVX512_BF16 CPU bf16 was 1.2-1.5x faster than fp32
(benchmarks/results/gan_vs_reference.md), so the recipes ask for 'auto'.
"""
from __future__ import annotations

import warnings
from contextlib import nullcontext
from typing import Callable, ContextManager

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def native_bf16(device: str | torch.device) -> bool:
    """True where bf16 matmuls/convs run in hardware: a CUDA GPU that supports bf16, or a CPU with
    AVX512_BF16 or AMX tiles."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(precision: str, device: str | torch.device, *, what: str = "precision") -> str:
    """'auto' -> 'bf16' where `native_bf16(device)`, else 'fp32'. An explicit 'bf16' without native
    support is kept (the user asked) but warned about in one line; 'fp16' needs a GPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"{what} = {precision!r}: must be one of {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    if precision == "auto":
        return "bf16" if native_bf16(dev) else "fp32"
    if precision == "fp16" and dev.type != "cuda":
        raise ValueError(f"{what} fp16 needs a GPU; use auto, bf16 or fp32 on CPU")
    if precision == "bf16" and not native_bf16(dev):
        warnings.warn(f"{what} bf16 on a {dev.type} without native bf16 (no AVX512_BF16/AMX): PyTorch emulates it, "
                      "many times slower than fp32; use 'auto' or 'fp32'", RuntimeWarning, stacklevel=2)
    return precision


def autocast(precision: str, device: str | torch.device) -> Callable[[], ContextManager]:
    """A factory of autocast contexts for a resolved precision ('fp32' -> no autocast)."""
    dev_type = torch.device(device).type
    if precision == "fp32":
        return nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(dev_type, dtype=dtype)
