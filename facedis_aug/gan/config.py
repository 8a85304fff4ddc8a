"""Stage 1 settings (StyleGAN2 + decorrelation loss). Defaults are the paper's (StyleGAN2 config F
as in stylegan2-ada-pytorch, decorrelation weight 1 as in the paper's objective); tiny CPU recipes
override the sizes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class GanConfig:
    resolution: int = 32  # output side in pixels (power of two, 32..256)
    # --- networks
    z_dim: int = 512  # latent z size
    w_dim: int = 512  # latent w size (the space the directions live in)
    mapping_layers: int = 8  # fully connected layers of the mapping network F
    mapping_lr_mult: float = 0.01  # learning-rate multiplier of F (equalized lr)
    channel_base: int = 32768  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512  # cap on the channels of any layer
    mbstd_group: int = 4  # discriminator minibatch-stddev group size (must divide batch)
    # --- optimisation
    batch: int = 32  # images per device per step (global batch = batch * world size)
    kimg: float = 25000.0  # training length in thousands of real images shown to D
    lr: float = 0.0025  # Adam learning rate of G and D
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas (floats: torch rejects ints)
    r1_gamma: Optional[float] = None  # R1 weight; null = stylegan2-ada heuristic 0.0002 * res^2 / global batch
    r1_interval: int = 16  # lazy R1: every this many steps (lr/betas corrected)
    pl_weight: float = 2.0  # path-length regularisation weight (0 disables)
    pl_interval: int = 4  # lazy path-length regularisation interval
    pl_batch_shrink: int = 2  # path-length batch = batch // this
    pl_decay: float = 0.01  # decay of the running mean path length
    ema_kimg: Optional[float] = None  # G_ema half-life in kimg; null = global batch * 10 / 32
    ema_rampup: Optional[float] = None  # half-life <= this * images seen (stylegan2-ada 'auto': 0.05); null = off (paper)
    style_mixing: float = 0.9  # probability of mixing two w's at a random layer
    # --- decorrelation loss (Eq. 1) on the mapping network only
    decorr_weight: float = 1.0  # weight of L_decorr (0 disables; the paper adds it with weight 1)
    decorr_samples: int = 1024  # N: w samples per step to estimate rho_ij and Var[w_i] (want N > w_dim)
    # --- adaptive discriminator augmentation (ADA-lite: flips, integer translation, colour)
    ada: bool = False  # off in the paper recipes; for small data sets
    ada_target: float = 0.6  # target of the overfitting heuristic r_t = E[sign(D(real))]
    ada_interval: int = 4  # adjust p every this many steps
    ada_kimg: float = 500.0  # p can move from 0 to 1 within this many kimg
    # --- bookkeeping
    log_kimg: float = 4.0  # a stats.jsonl line every this many kimg
    snapshot_kimg: float = 200.0  # PNG grid of G_ema samples (fixed seeds) every this many kimg
    snapshot_images: int = 64  # images in a snapshot grid
    checkpoint_kimg: float = 200.0  # resumable checkpoint every this many kimg
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast for the main passes (fp16: GPU only)
    max_bad_steps: int = 10  # this many non-finite steps in a row stop the run
