"""StyleGAN2 losses and the paper's decorrelation loss (Eq. 1).

All functions return values (losses, per-sample penalties, running means); none keeps state.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating logistic loss for G: mean softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Logistic loss for D: mean softplus(D(fake)) + mean softplus(-D(real))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: Tensor, real: Tensor) -> Tensor:
    """R1: ||d D(x) / d x||^2 per real sample, [B]. `real` must require grad and have produced
    `real_logits`; the graph is kept so the penalty can be back-propagated into D."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3])


def path_length_penalty(images: Tensor, ws: Tensor, pl_mean: Tensor, decay: float) -> tuple[Tensor, Tensor]:
    """Path-length regularisation. images [B, C, H, W] = G.synthesis(ws), ws [B, num_ws, w_dim].

    The length of J^T y (y ~ N(0, I) / sqrt(H W)) is pulled towards its running mean, so a fixed
    step in W moves the image by a fixed amount. Returns (penalty [B], updated running mean); the
    caller stores the new mean.
    """
    noise = torch.randn_like(images) / (images.shape[2] * images.shape[3]) ** 0.5
    (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()  # [B]
    new_mean = pl_mean.lerp(lengths.detach().mean(), decay)
    return (lengths - new_mean).square(), new_mean


def sample_ws(mapping, z: Tensor, num_ws: int, style_mixing: float, truncation_psi: float = 1.0) -> Tensor:
    """w for every synthesis layer, [B, num_ws, w_dim]. With probability `style_mixing` the layers
    from a random cutoff on take w of a second z (one cutoff per batch, as in stylegan2)."""
    w = mapping(z, truncation_psi)
    ws = w[:, None, :].expand(-1, num_ws, -1)
    if style_mixing > 0 and torch.rand([]).item() < style_mixing:
        cutoff = int(torch.randint(1, num_ws, []).item())
        w2 = mapping(torch.randn_like(z), truncation_psi)
        layer = torch.arange(num_ws, device=z.device)[None, :, None]
        ws = torch.where(layer < cutoff, ws, w2[:, None, :])
    return ws


def _correlation(w: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """(Pearson correlation [d, d], variance [d]) of samples w [N, d] (unbiased estimates)."""
    if w.ndim != 2 or w.shape[0] < 2:
        raise ValueError(f"w must be [N >= 2, d], got {tuple(w.shape)}")
    wc = w - w.mean(dim=0, keepdim=True)
    cov = wc.t() @ wc / (w.shape[0] - 1)
    var = cov.diagonal()
    inv_std = (var + eps).rsqrt()
    return cov * inv_std[:, None] * inv_std[None, :], var


def decorrelation_loss(w: Tensor, max_abs_rho: float = 1.0 - 1e-6) -> Tensor:
    """Eq. 1 of the paper on samples w = F(z), z ~ N(0, I); w [N, d] -> scalar.

        L = -sum_{i != j} log(1 - |rho_ij|) + sum_i (Var[w_i] - mean_j Var[w_j])^2

    The first term is zero when all dimensions are uncorrelated and grows without bound as any
    |rho_ij| -> 1 (clamped at `max_abs_rho` so the log stays finite). The paper prints the second
    term with sum_j Var[w_j] instead of the mean; that target would be d times any single variance,
    so the only minimum would be every variance at zero, i.e. a collapsed W. The paper's stated
    aim is "variance of all dimensions the same value", which is what the mean gives.
    Only the mapping network should receive this gradient: pass w straight from G.mapping.
    """
    rho, var = _correlation(w)
    d = rho.shape[0]
    off = ~torch.eye(d, dtype=torch.bool, device=w.device)
    abs_rho = rho[off].abs().clamp(max=max_abs_rho)
    return -torch.log1p(-abs_rho).sum() + (var - var.mean()).square().sum()


@torch.no_grad()
def decorrelation_stats(w: Tensor) -> dict[str, float]:
    """What Table 1 needs about W: mean and max |rho_ij| (i != j) and the coefficient of
    variation (std / mean) of Var[w_i]. w [N, d]."""
    rho, var = _correlation(w.float())
    d = rho.shape[0]
    abs_rho = rho[~torch.eye(d, dtype=torch.bool, device=w.device)].abs()
    return {
        "rho_mean": abs_rho.mean().item(),
        "rho_max": abs_rho.max().item(),
        "var_cv": (var.std() / var.mean().clamp_min(1e-12)).item(),
    }
