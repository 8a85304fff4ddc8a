"""Stage 1 settings (StyleGAN2 + decorrelation loss). Defaults are the paper's (StyleGAN2 config F
as in stylegan2-ada-pytorch, decorrelation weight 1 as in the paper's objective); tiny CPU recipes
override the sizes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class MetricsConfig:
    """Settings of the GAN metrics (recipe section `gan.metrics`; `gan/metrics.py` computes them).

    Weights paths are local files; null or a missing file selects the labelled offline fallback.
    """

    # compute FID/KID (and PPL) at every snapshot of the gan stage and write them to its stats.jsonl
    # (ours; off by default: 10k images through the feature net cost minutes on a CPU)
    enabled: bool = False
    # when: "snapshots" (every snapshot) or "end" (the last step only: one evaluation, for short CPU runs)
    at: Literal["snapshots", "end"] = "snapshots"
    ppl: bool = True  # PPL too (another ppl_samples x 2 generator passes per snapshot)
    inception_weights: Optional[str] = None  # Inception-v3 (torchvision layout), .safetensors or .pt/.pth
    lpips_weights: Optional[str] = None  # LPIPS-VGG16: VGG16 'features.*' + 'lin0..4.weight'
    num_images: int = 10000  # real and generated images for FID/KID (the paper: 50000)
    kid_subsets: int = 100
    kid_subset_size: int = 1000  # capped at the number of images
    ppl_samples: int = 10000  # the paper: 50000
    ppl_epsilon: float = 1e-4
    ppl_sampling: Literal["end", "full"] = "end"  # 'end': t = 0; 'full': t ~ U[0, 1)
    ppl_crop: bool = False  # StyleGAN2's FFHQ face crop before LPIPS
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.at not in ("snapshots", "end"):
            raise ValueError(f"at must be 'snapshots' or 'end', got {self.at!r}")
        for name in ("num_images", "kid_subsets", "kid_subset_size", "ppl_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kid_subset_size < 2:
            raise ValueError("kid_subset_size must be >= 2")
        if not self.ppl_epsilon > 0:
            raise ValueError(f"ppl_epsilon must be > 0, got {self.ppl_epsilon}")


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
    noise: bool = True  # per-pixel noise inputs while training (StyleGAN2: on); off, w alone sets the image
    # --- decorrelation loss (Eq. 1) on the mapping network only
    decorr_weight: float = 1.0  # weight of L_decorr (0 disables; the paper adds it with weight 1)
    decorr_samples: int = 1024  # N: w samples per step to estimate rho_ij and Var[w_i] (want N > w_dim)
    # --- data: stylegan2's --mirror, each real image x-flipped with probability 1/2 (a face's mirror image is a
    # face too). Tiny recipe, 100 kimg, seeds 0 / 1: yaw TV to the data 0.221 / 0.116 against 0.253 / 0.182, but
    # the regressor's mirror agreement 0.79 / 0.80 against 0.88 / 0.80, and at seed 0 the bundle (v17's decomposer)
    # turned heads -11..+42 degrees against -22..+39, its oracle -16..+45 against -28..+39, and v_yaw's |r| with the
    # true yaw was 0.65 / 0.54 against 0.71 / 0.65 at seeds 0 / 1 (gan_pose_mirror_s01.md, table2_tiny_mirror_s0.md,
    # table2_tiny_v16.md, table2_tiny_mirror_s1.md, table2_tiny_base_s1.md): off in the recipes
    mirror: bool = False
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
    # autocast for the main passes (fp16: GPU only); 'auto' = bf16 where the device computes it natively, else fp32
    # (ops/precision.py: emulated bf16 ran the tiny recipe's step 10x slower on an AVX2-only CPU)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    max_bad_steps: int = 10  # this many non-finite steps in a row stop the run
    metrics: MetricsConfig = field(default_factory=MetricsConfig)  # FID/KID/PPL at snapshots (off by default)

    def __post_init__(self) -> None:
        # each message starts with the field name; the recipe parser prefixes the section ("gan.batch = 0: ...")
        r = self.resolution
        if not (32 <= r <= 256 and r & (r - 1) == 0):
            raise ValueError(f"resolution = {r!r}: must be a power of two in 32..256")
        for name in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group", "batch",
                     "r1_interval", "pl_interval", "pl_batch_shrink", "ada_interval", "snapshot_images", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)!r}: must be an integer >= 1")
        if self.decorr_samples < 2:
            raise ValueError(f"decorr_samples = {self.decorr_samples!r}: must be >= 2 (a correlation needs two samples)")
        for name in ("kimg", "lr", "mapping_lr_mult", "log_kimg", "snapshot_kimg", "checkpoint_kimg", "ada_kimg"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} = {getattr(self, name)!r}: must be > 0")
        for name in ("pl_weight", "decorr_weight", "pl_decay", "r1_gamma", "ema_kimg", "ema_rampup"):
            v = getattr(self, name)
            if v is not None and not v >= 0:
                raise ValueError(f"{name} = {v!r}: must be >= 0" + (" or null" if name in ("r1_gamma", "ema_kimg", "ema_rampup") else ""))
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas = {list(self.betas)!r}: must be two numbers in [0, 1)")
        if not 0.0 <= self.style_mixing <= 1.0:
            raise ValueError(f"style_mixing = {self.style_mixing!r}: must be in [0, 1]")
        if not -1.0 <= self.ada_target <= 1.0:  # r_t = E[sign(D(real))] lives in [-1, 1]
            raise ValueError(f"ada_target = {self.ada_target!r}: must be in [-1, 1]")
