"""StyleGAN2 (config F) in plain PyTorch: mapping network F, synthesis network G, discriminator D.

No custom ops: FIR (1,3,3,1) resampling is a depthwise conv2d / conv_transpose2d, and weight
modulation is folded into the activations (x * style -> shared conv -> x * demod), which is
mathematically the same as per-sample weights but runs as one batched convolution.

    G = Generator(GeneratorConfig(resolution=32, z_dim=128, w_dim=128, channel_base=2048, channel_max=128))
    w = G.mapping(z)                    # z [B, z_dim] -> w [B, w_dim]
    img = G.synthesis(w)                # w [B, w_dim] or [B, num_ws, w_dim] -> [B, 3, R, R] in ~[-1, 1]
    G = load_generator("gan.safetensors"); imgs = generate(G, seeds=[0, 1, 2])

Equalized learning rate: every weight is stored as N(0, 1) / lr_mult and multiplied at run time by
lr_mult / sqrt(fan_in), so Adam sees parameters of one scale whatever the layer's fan-in.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.seeds import seeds_to_z

NoiseMode = Literal["random", "const", "none"]
GAN_FORMAT = "facedis_aug.gan/1"
LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' second moment through leaky ReLU(0.2)


@dataclass
class GeneratorConfig:
    """Constructor arguments of `Generator`; stored as JSON metadata beside the weights."""

    resolution: int = 256  # output side in pixels, power of two in 32..256
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 32768  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mapping_lr_mult: float = 0.01  # learning-rate multiplier of the mapping network
    img_channels: int = 3


@dataclass
class DiscriminatorConfig:
    resolution: int = 256
    channel_base: int = 32768
    channel_max: int = 512
    mbstd_group: int = 4  # minibatch-stddev group size
    img_channels: int = 3


def _check_resolution(res: int) -> int:
    if res not in (32, 64, 128, 256):
        raise ValueError(f"resolution must be one of 32, 64, 128, 256; got {res}")
    return int(math.log2(res))


def channels_at(res: int, base: int, cmax: int) -> int:
    return max(1, min(base // res, cmax))


# ---------------------------------------------------------------------------------------------
# FIR resampling. f = (1,3,3,1) / 8 per axis (the 2-D filter is its outer product, sum 1). Each
# resampling is linear and separable, so it runs as two small matrix products, M_h @ x @ M_w^T:
# on this CPU a depthwise 4x4 conv2d was the slowest op of a bf16 training step (its backward took
# 356 ms of a 1.44 s step at 32 px, batch 16, one thread), while matmuls stay on the fast gemm path
# in fp32 and bf16 alike.
# ---------------------------------------------------------------------------------------------

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)


def fir_matrix(n_in: int, n_out: int, *, stride: int = 1, pad: int = 0, up: bool = False, gain: float = 1.0) -> Tensor:
    """The 1-D FIR resampling along one axis as a matrix [n_out, n_in] (float64).

    Plain (`up=False`): y[o] = sum_k f[k] x[stride * o + k - pad], a correlation with stride and
    zero padding (f is symmetric, so also a convolution). `up=True`: x is zero-stuffed by 2 first,
    y[o] = sum_i f[o - 2 i + pad] x[i], which is conv_transpose with stride 2. `f` sums to `gain`.
    """
    f = torch.tensor(FIR_TAPS, dtype=torch.float64)
    f = f / f.sum() * gain
    o = torch.arange(n_out)[:, None]
    i = torch.arange(n_in)[None, :]
    k = (o - 2 * i + pad) if up else (i - stride * o + pad)
    inside = (k >= 0) & (k < len(FIR_TAPS))
    return torch.where(inside, f[k.clamp(0, len(FIR_TAPS) - 1)], torch.zeros((), dtype=torch.float64))


def fir2d(x: Tensor, m: Tensor) -> Tensor:
    """Apply the 1-D FIR matrix `m` [n_out, n_in] along both image axes: x [B, C, n_in, n_in] ->
    [B, C, n_out, n_out]."""
    m = m.to(x.dtype)
    return torch.matmul(torch.matmul(m, x), m.t())


def _fir_buffer(module: nn.Module, n_in: int, n_out: int, **kw) -> None:
    # not persistent: derived from the sizes, so checkpoints and gan.safetensors do not carry it
    module.register_buffer("fir", fir_matrix(n_in, n_out, **kw).float(), persistent=False)


def lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


# ---------------------------------------------------------------------------------------------
# Equalized-lr layers
# ---------------------------------------------------------------------------------------------


class FullyConnected(nn.Module):
    """y = act(x @ (W * lr_mult / sqrt(in)).T + b * lr_mult); x [B, in] -> [B, out]."""

    def __init__(self, in_dim: int, out_dim: int, activation: bool = True, lr_mult: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mult)
        self.bias = nn.Parameter(torch.full([out_dim], float(bias_init)) / lr_mult)
        self.weight_gain = lr_mult / math.sqrt(in_dim)
        self.lr_mult = lr_mult
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = torch.addmm(self.bias * self.lr_mult, x, (self.weight * self.weight_gain).t())
        return lrelu(x) if self.activation else x


class Conv2dLayer(nn.Module):
    """Equalized-lr conv (k = 1 or 3, 'same' size) for D; `down` halves the size with FIR first."""

    def __init__(self, cin: int, cout: int, k: int, bias: bool = True, activation: bool = True, down: bool = False,
                 gain: float = 1.0, res: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(cin * k * k)
        self.k, self.down, self.activation, self.gain, self.res = k, down, activation, gain, res
        if down and res < 2:
            raise ValueError(f"a downsampling layer needs its input size, got res={res}")
        if down and k == 1:  # FIR low-pass, keep every second sample: res -> res/2
            _fir_buffer(self, res, res // 2, stride=2, pad=1)
        elif down:  # blur with 2 px of padding (res -> res+1), then a stride-2 valid 3x3 conv (-> res/2)
            _fir_buffer(self, res, res + 1, pad=2)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.weight_gain
        if self.down and x.shape[-1] != self.res:
            raise ValueError(f"this layer downsamples {self.res} px inputs, got {tuple(x.shape)}")
        if self.down and self.k == 1:
            x = F.conv2d(fir2d(x, self.fir), w)
        elif self.down:
            x = F.conv2d(fir2d(x, self.fir), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.k // 2)
        if self.bias is not None:  # in x's dtype: an fp32 bias would lift a bf16 activation back to fp32
            x = x + self.bias.to(x.dtype)[None, :, None, None]
        x = lrelu(x) if self.activation else x
        return x * self.gain if self.gain != 1.0 else x


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True, up: bool = False) -> Tensor:
    """StyleGAN2 modulated conv. x [B, Cin, H, W], weight [Cout, Cin, k, k], styles [B, Cin].

    Same result as convolving each sample with weight * styles (then normalising each output
    filter to unit norm when `demodulate`), computed as scale -> shared conv -> scale so the whole
    batch is one convolution. `up` = 2x transposed conv (the FIR blur follows in the caller).
    """
    x = x * styles.to(x.dtype)[:, :, None, None]
    if up:
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # H -> 2H + 1
    else:
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if demodulate:
        # ||w * s||^2 per (sample, output channel) without building per-sample weights
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
        x = x * dcoefs.to(x.dtype)[:, :, None, None]
    return x


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


class MappingNetwork(nn.Module):
    """F: z [B, z_dim] -> w [B, w_dim]. `w_avg` is tracked by the training loop (not in forward)."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 8, lr_mult: float = 0.01):
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(FullyConnected(a, b, activation=True, lr_mult=lr_mult) for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [B, {self.z_dim}], got {tuple(z.shape)}")
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()  # pixel norm of z
        for layer in self.layers:
            x = layer(x)
        if truncation_psi != 1.0:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling) + per-pixel noise + bias + lrelu."""

    def __init__(self, cin: int, cout: int, w_dim: int, res: int, up: bool = False):
        super().__init__()
        self.affine = FullyConnected(w_dim, cin, activation=False, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(res, res))  # fixed noise for deterministic export
        self.up, self.res = up, res
        if up:  # after the stride-2 transposed conv (res + 1 px): FIR with gain 2 per axis, res + 1 -> res
            _fir_buffer(self, res + 1, res, pad=1, gain=2.0)

    def forward(self, x: Tensor, w: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        # demodulation makes the output independent of the weight's scale, so no weight gain here
        x = modulated_conv2d(x, self.weight, self.affine(w), demodulate=True, up=self.up)
        if self.up:
            x = fir2d(x, self.fir)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, self.res, self.res, device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return lrelu(x + self.bias.to(x.dtype)[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB, no demodulation, linear."""

    def __init__(self, cin: int, w_dim: int, img_channels: int = 3):
        super().__init__()
        self.affine = FullyConnected(w_dim, cin, activation=False, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, cin, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(cin)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False) + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution: (up-conv,) conv, toRGB. The 4x4 block starts from a learned constant."""

    def __init__(self, cin: int, cout: int, w_dim: int, res: int, img_channels: int):
        super().__init__()
        self.first = res == 4
        if self.first:
            self.const = nn.Parameter(torch.randn(cout, 4, 4))
        else:
            self.conv0 = SynthesisLayer(cin, cout, w_dim, res, up=True)
            # the skip image's upsampling: zero-stuffing + FIR (gain 2 per axis), res/2 -> res
            _fir_buffer(self, res // 2, res, up=True, pad=1, gain=2.0)
        self.conv1 = SynthesisLayer(cout, cout, w_dim, res)
        self.torgb = ToRGB(cout, w_dim, img_channels)
        self.num_conv = 1 if self.first else 2


class SynthesisNetwork(nn.Module):
    """G: ws [B, num_ws, w_dim] -> image [B, C, R, R]. Skip architecture: the RGB outputs of all
    resolutions are upsampled and summed. ws index: block at 4x4 uses (conv1, rgb) = (0, 1); block
    k >= 1 uses conv0 = 2k-1, conv1 = 2k, rgb = 2k+1 (toRGB shares the next block's first w)."""

    def __init__(self, resolution: int, w_dim: int, channel_base: int, channel_max: int, img_channels: int = 3):
        super().__init__()
        log2 = _check_resolution(resolution)
        self.resolution, self.w_dim = resolution, w_dim
        resolutions = [2**i for i in range(2, log2 + 1)]
        ch = {r: channels_at(r, channel_base, channel_max) for r in resolutions}
        self.blocks = nn.ModuleList(
            SynthesisBlock(ch[max(r // 2, 4)], ch[r], w_dim, r, img_channels) for r in resolutions
        )
        self.num_ws = 2 * len(resolutions)

    def forward(self, ws: Tensor, noise_mode: NoiseMode = "random") -> Tensor:
        if ws.ndim == 2:
            ws = ws[:, None, :].expand(-1, self.num_ws, -1)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [B, {self.w_dim}] or [B, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        b0 = self.blocks[0]
        x = b0.const[None].expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        x = b0.conv1(x, ws[:, 0], noise_mode)
        img = b0.torgb(x, ws[:, 1])
        for k, block in enumerate(self.blocks[1:], start=1):
            x = block.conv0(x, ws[:, 2 * k - 1], noise_mode)
            x = block.conv1(x, ws[:, 2 * k], noise_mode)
            img = fir2d(img, block.fir) + block.torgb(x, ws[:, 2 * k + 1])
        return img


class Generator(nn.Module):
    """z [B, z_dim] -> image [B, 3, R, R] in ~[-1, 1]. `G.mapping` is F, `G.synthesis` is G."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.resolution = cfg.z_dim, cfg.w_dim, cfg.resolution
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mult)
        self.synthesis = SynthesisNetwork(cfg.resolution, cfg.w_dim, cfg.channel_base, cfg.channel_max, cfg.img_channels)
        self.num_ws = self.synthesis.num_ws

    def forward(self, z: Tensor, truncation_psi: float = 1.0, noise_mode: NoiseMode = "random") -> Tensor:
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode)


# ---------------------------------------------------------------------------------------------
# Discriminator
# ---------------------------------------------------------------------------------------------


class DiscriminatorBlock(nn.Module):
    """Residual block: (conv3x3, conv3x3 down) + 1x1 down skip, summed with gain sqrt(1/2)."""

    def __init__(self, cin: int, cout: int, res: int):
        super().__init__()
        self.conv0 = Conv2dLayer(cin, cin, 3)
        self.conv1 = Conv2dLayer(cin, cout, 3, down=True, gain=math.sqrt(0.5), res=res)
        self.skip = Conv2dLayer(cin, cout, 1, bias=False, activation=False, down=True, gain=math.sqrt(0.5), res=res)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.conv1(self.conv0(x))


def minibatch_stddev(x: Tensor, group: int) -> Tensor:
    """Append one channel: the std over groups of `group` samples, averaged over C, H, W."""
    B, C, H, W = x.shape
    g = min(group, B)
    if B % g != 0:
        raise ValueError(f"batch {B} must be divisible by the minibatch-stddev group {g}")
    y = x.float().reshape(g, B // g, C, H, W)  # a variance in bf16 keeps 3 digits: float32 here
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[1, 2, 3])  # [B/g]
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, H, W)  # sample n belongs to group n % (B/g)
    return torch.cat([x, y.to(x.dtype)], dim=1)


class Discriminator(nn.Module):
    """Residual D: image [B, C, R, R] -> logits [B]."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        log2 = _check_resolution(cfg.resolution)
        ch = lambda r: channels_at(r, cfg.channel_base, cfg.channel_max)  # noqa: E731
        self.from_rgb = Conv2dLayer(cfg.img_channels, ch(cfg.resolution), 1)
        self.blocks = nn.ModuleList(DiscriminatorBlock(ch(2**i), ch(2 ** (i - 1)), 2**i) for i in range(log2, 2, -1))
        c4 = ch(4)
        self.conv = Conv2dLayer(c4 + 1, c4, 3)
        self.fc = FullyConnected(c4 * 16, c4, activation=True)
        self.out = FullyConnected(c4, 1, activation=False)

    def forward(self, img: Tensor) -> Tensor:
        R = self.cfg.resolution
        if img.ndim != 4 or img.shape[1:] != (self.cfg.img_channels, R, R):
            raise ValueError(f"D expects [B, {self.cfg.img_channels}, {R}, {R}], got {tuple(img.shape)}")
        x = self.from_rgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.conv(minibatch_stddev(x, self.cfg.mbstd_group))
        return self.out(self.fc(x.flatten(1)))[:, 0]


# ---------------------------------------------------------------------------------------------
# Loading and sampling, for every later stage (needs no training code)
# ---------------------------------------------------------------------------------------------


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Read `gan.safetensors` (G_ema weights incl. w_avg and const noise; config in metadata)."""
    from ..ops import load_safetensors

    tensors, meta = load_safetensors(path)
    if meta.get("format") != GAN_FORMAT or "generator" not in meta:
        raise ValueError(f"{path}: not a facedis_aug generator file (format {meta.get('format')!r}, expected {GAN_FORMAT!r})")
    G = Generator(GeneratorConfig(**meta["generator"]))
    G.load_state_dict(tensors, strict=True)
    return G.to(device).eval().requires_grad_(False)


def generator_metadata(G: Generator, **extra) -> dict:
    return {"format": GAN_FORMAT, "generator": asdict(G.cfg), **extra}


def generate(
    G: Generator,
    w: Tensor | None = None,
    seeds: Sequence[int] | None = None,
    truncation_psi: float = 1.0,
    noise_mode: NoiseMode = "const",
) -> Tensor:
    """Images [B, 3, R, R] in ~[-1, 1] from w [B, w_dim] (or [B, num_ws, w_dim]) or from seeds.

    Truncation (towards G.mapping.w_avg) applies in both cases. Gradients flow only when `w`
    requires grad; use G.synthesis directly for anything fancier.
    """
    if (w is None) == (seeds is None):
        raise ValueError("give exactly one of w or seeds")
    device = next(G.parameters()).device
    if seeds is not None:
        with torch.no_grad():
            w = G.mapping(seeds_to_z(seeds, G.z_dim).to(device))
    w = w.to(device)
    if truncation_psi != 1.0:
        avg = G.mapping.w_avg if w.ndim == 2 else G.mapping.w_avg[None]
        w = avg.lerp(w, truncation_psi)
    with torch.set_grad_enabled(torch.is_grad_enabled() and w.requires_grad):
        return G.synthesis(w, noise_mode=noise_mode)
