"""Feature networks for the GAN metrics, all offline: weights come from a local file or not at all.

* FID / KID: Inception-v3 pool3 features (2048-d) with the torchvision architecture, weights read
  from a local file (`build_feature_net`). Two weight layouts are recognised by their `fc` shape:
    - torchvision ImageNet weights (`fc.weight` [1000, 2048], e.g. `inception_v3_google-*.pth`):
      label 'inception-v3'. Those weights were trained on inputs x in [-1, 1] (torchvision's
      `transform_input=True` maps ImageNet-normalised input back to that), so we feed [-1, 1]
      directly and build with `transform_input=False`.
    - the TF 2015 FID weights in torchvision layout (`fc.weight` [1008, 2048], pytorch-fid's
      `pt_inception-2015-12-05-*.pth`): label 'inception-v3-tf-fid'. These are the weights
      published FID numbers use; that graph pools differently in Mixed_5*/6b-e/7b (average pooling
      that excludes padding) and Mixed_7c (max pooling), reproduced below.
  `fc.*` and `AuxLogits.*` entries are optional (pool3 features do not use them); every other
  tensor of `inception_v3().state_dict()` must be present.
  No file: one warning line and the fallback 'fallback-random-conv-seed0' (`RandomConvFeatures`).
* PPL: LPIPS with VGG16 (`build_perceptual_net`). One file holds
    - the VGG16 convolutions under torchvision's names `features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.
      {weight,bias}` (the lpips package's `net.slice{k}.{i}.*` names are accepted too), and
    - the five learned linear layers `lin{0..4}.weight` of shape [1, C, 1, 1], C = 64, 128, 256,
      512, 512 (the lpips package's `lin{k}.model.1.weight` names are accepted too).
  Label 'lpips-vgg16'. No file: one warning line and 'fallback-random-vgg-seed0' (`RandomVGGDistance`).

Fallback nets are built from a CPU `torch.Generator` seeded with 0, so every machine with the same
PyTorch gets the same weights. Their numbers are only comparable with other fallback numbers.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.resize import resize_bilinear

log = logging.getLogger("facedis_aug.gan.metrics")

FALLBACK_FEATURES = "fallback-random-conv-seed0"
FALLBACK_PERCEPTUAL = "fallback-random-vgg-seed0"


# ----------------------------------------------------------------------------- weight files


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a local weights file: safetensors, or .pt/.pth read with `weights_only=True`.

    A {'state_dict': ...} wrapper and DataParallel 'module.' prefixes are removed.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path), device="cpu")
    else:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
            sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"{path}: expected a mapping of tensor names to tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def _weights_file(path: Optional[str]) -> Optional[Path]:
    if path is None or str(path).strip() == "":
        return None
    p = Path(path).expanduser()
    return p if p.is_file() else None


def _check_images(x: Tensor, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: images must be [B, 3, H, W] in [-1, 1], got {tuple(x.shape)}")


# ----------------------------------------------------------------------------- Inception-v3


def _pool_avg_incl(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


def _pool_avg_excl(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _pool_max(x: Tensor) -> Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _block_a(m: nn.Module, x: Tensor, pool: Callable[[Tensor], Tensor]) -> Tensor:
    b5 = m.branch5x5_2(m.branch5x5_1(x))
    b3 = m.branch3x3dbl_3(m.branch3x3dbl_2(m.branch3x3dbl_1(x)))
    return torch.cat([m.branch1x1(x), b5, b3, m.branch_pool(pool(x))], 1)


def _block_c(m: nn.Module, x: Tensor, pool: Callable[[Tensor], Tensor]) -> Tensor:
    b7 = m.branch7x7_3(m.branch7x7_2(m.branch7x7_1(x)))
    d = x
    for k in range(1, 6):
        d = getattr(m, f"branch7x7dbl_{k}")(d)
    return torch.cat([m.branch1x1(x), b7, d, m.branch_pool(pool(x))], 1)


def _block_e(m: nn.Module, x: Tensor, pool: Callable[[Tensor], Tensor]) -> Tensor:
    b3 = m.branch3x3_1(x)
    b3 = torch.cat([m.branch3x3_2a(b3), m.branch3x3_2b(b3)], 1)
    d = m.branch3x3dbl_2(m.branch3x3dbl_1(x))
    d = torch.cat([m.branch3x3dbl_3a(d), m.branch3x3dbl_3b(d)], 1)
    return torch.cat([m.branch1x1(x), b3, d, m.branch_pool(pool(x))], 1)


class InceptionFeatures(nn.Module):
    """Inception-v3 pool3 features: images [B, 3, H, W] in [-1, 1] -> [B, 2048] float32.

    Images are resized to 299 x 299 bilinearly (as pytorch-fid does) and fed as [-1, 1].
    `variant` 'torchvision' runs the torchvision graph; 'tf-fid' the TF 2015 FID graph.
    """

    def __init__(self, state_dict: Mapping[str, Tensor], variant: str = "torchvision"):
        super().__init__()
        from torchvision.models import inception_v3

        if variant not in ("torchvision", "tf-fid"):
            raise ValueError(f"variant must be 'torchvision' or 'tf-fid', got {variant!r}")
        net = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False)
        net.fc = nn.Identity()  # pool3 features only
        want = {k for k in net.state_dict()}
        have = {k: v for k, v in state_dict.items() if not k.startswith(("fc.", "AuxLogits."))}
        missing = sorted(want - set(have))
        unexpected = sorted(set(have) - want)
        if missing or unexpected:
            raise ValueError(
                "Inception weights do not match torchvision's inception_v3 layout: "
                f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )
        net.load_state_dict(have, strict=True)
        self.net = net.eval().requires_grad_(False)
        self.variant = variant
        self.name = "inception-v3" if variant == "torchvision" else "inception-v3-tf-fid"
        self.dim = 2048
        if variant == "torchvision":
            self.pools = {"A": _pool_avg_incl, "C": _pool_avg_incl, "E1": _pool_avg_incl, "E2": _pool_avg_incl}
        else:
            self.pools = {"A": _pool_avg_excl, "C": _pool_avg_excl, "E1": _pool_avg_excl, "E2": _pool_max}

    def trunk(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] network input (already resized and scaled) -> [B, 2048] pooled features."""
        n, p = self.net, self.pools
        x = n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x)))
        x = n.maxpool1(x)
        x = n.maxpool2(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)))
        for blk in (n.Mixed_5b, n.Mixed_5c, n.Mixed_5d):
            x = _block_a(blk, x, p["A"])
        x = n.Mixed_6a(x)
        for blk in (n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e):
            x = _block_c(blk, x, p["C"])
        x = n.Mixed_7a(x)
        x = _block_e(n.Mixed_7b, x, p["E1"])
        x = _block_e(n.Mixed_7c, x, p["E2"])
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        _check_images(images, "InceptionFeatures")
        x = resize_bilinear(images.float().clamp(-1, 1), 299)
        return self.trunk(x)


# ----------------------------------------------------------------------------- random fallbacks


def _seeded_conv(gen: torch.Generator, c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    """Conv with He-normal weights (gain for LeakyReLU 0.2) drawn from `gen`; zero bias."""
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2)
    std = (2.0 / (1 + 0.2**2) / (c_in * k * k)) ** 0.5
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * std)
        conv.bias.zero_()
    return conv


class RandomConvFeatures(nn.Module):
    """Offline stand-in for Inception: a fixed random conv net, seed 0.

    images [B, 3, H, W] in [-1, 1] -> resized to 128 x 128 -> four 3x3 stride-2 convs
    (3 -> 64 -> 128 -> 256 -> 512, LeakyReLU 0.2, He-normal weights from `torch.Generator().manual_seed(seed)`)
    -> per-channel spatial mean and std of the last map -> [B, 1024] float32.
    Random conv features are a known, cheap proxy for a learned embedding in distribution tests;
    the values are not comparable with Inception FID.
    """

    def __init__(self, seed: int = 0, size: int = 128, widths: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers, c = [], 3
        for w in widths:
            conv = _seeded_conv(gen, c, w)
            conv.stride = (2, 2)
            layers += [conv, nn.LeakyReLU(0.2)]
            c = w
        self.body = nn.Sequential(*layers).eval().requires_grad_(False)
        self.size = size
        self.dim = 2 * c
        self.name = f"fallback-random-conv-seed{seed}"

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        _check_images(images, "RandomConvFeatures")
        h = self.body(resize_bilinear(images.float().clamp(-1, 1), self.size))
        return torch.cat([h.mean((2, 3)), h.std((2, 3))], 1)


def _unit_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Normalise each pixel's feature vector to unit length (LPIPS's channel-wise normalisation)."""
    return x / (x.square().sum(1, keepdim=True).sqrt() + eps)


class RandomVGGDistance(nn.Module):
    """Offline stand-in for LPIPS: a fixed random VGG-like net, seed 0.

    forward(x, y) with images [B, 3, H, W] in [-1, 1] -> [B] distances. Blocks of 3x3 convs
    (widths 32, 64, 128, 128 with 2, 2, 3, 3 convs, ReLU, 2x2 max-pool between blocks); at the end of
    each block the features are normalised channel-wise, their squared difference summed over
    channels and averaged over pixels; the distance is the mean over the four blocks.
    """

    def __init__(self, seed: int = 0, widths: tuple[int, ...] = (32, 64, 128, 128), depths: tuple[int, ...] = (2, 2, 3, 3)):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        blocks, c = [], 3
        for i, (w, d) in enumerate(zip(widths, depths)):
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if i > 0 else []
            for _ in range(d):
                layers += [_seeded_conv(gen, c, w), nn.ReLU()]
                c = w
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks).eval().requires_grad_(False)
        self.name = f"fallback-random-vgg-seed{seed}"

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        _check_images(x, "RandomVGGDistance")
        if x.shape != y.shape:
            raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        h = torch.cat([x, y]).float()
        total = torch.zeros(x.shape[0], device=x.device)
        used = 0
        for blk in self.blocks:
            if min(h.shape[-2:]) < 2 and isinstance(blk[0], nn.MaxPool2d):
                break  # image too small for a further block (only below 8 x 8 pixels)
            h = blk(h)
            a, b = _unit_channels(h).chunk(2)
            total = total + (a - b).square().sum(1).mean((1, 2))
            used += 1
        return total / used


# ----------------------------------------------------------------------------- LPIPS (VGG16)

_VGG_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in vgg16().features
_VGG_CHANNELS = (64, 128, 256, 512, 512)
# lpips package: slice k holds features[_SLICE_START[k-1] : _SLICE_START[k]] under their own indices
_SLICE_START = (0, 4, 9, 16, 23, 30)


def _vgg16_features() -> nn.Sequential:
    """torchvision's vgg16().features without building (and initialising) the 120M-weight classifier."""
    from torchvision.models import vgg

    if hasattr(vgg, "make_layers") and hasattr(vgg, "cfgs"):
        return vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
    return vgg.vgg16(weights=None).features  # slower, same layers


def _lpips_names(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map the lpips package's names onto ours ('features.i.*', 'lin{k}.weight')."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "net" and len(parts) == 4 and parts[1].startswith("slice"):
            k = f"features.{parts[2]}.{parts[3]}"
        elif len(parts) == 4 and parts[0].startswith("lin") and parts[1:3] == ["model", "1"]:
            k = f"{parts[0]}.{parts[3]}"
        out[k] = v
    return out


class LPIPSVGG16(nn.Module):
    """LPIPS distance with VGG16 (Zhang et al. 2018): forward(x, y) [B, 3, H, W] in [-1, 1] -> [B].

    Per tap: features normalised channel-wise, squared difference weighted per channel by the
    learned non-negative `lin{k}` weights, averaged over pixels; summed over the five taps.
    """

    # the input scaling LPIPS applies to [-1, 1] images (its ScalingLayer constants)
    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self, state_dict: Mapping[str, Tensor]):
        super().__init__()
        sd = _lpips_names(state_dict)
        feats = _vgg16_features()[: _VGG_TAPS[-1] + 1]
        for m in feats:
            if isinstance(m, nn.ReLU):
                m.inplace = False
        want = set(feats.state_dict())
        missing = sorted(k for k in want if f"features.{k}" not in sd)
        missing += [f"lin{i}.weight" for i in range(5) if f"lin{i}.weight" not in sd]
        if missing:
            raise ValueError(f"LPIPS weights file lacks {len(missing)} tensors, e.g. {missing[:4]}")
        feats.load_state_dict({k: sd[f"features.{k}"] for k in want}, strict=True)
        self.features = feats.eval().requires_grad_(False)
        for i, c in enumerate(_VGG_CHANNELS):
            w = sd[f"lin{i}.weight"].float()
            if w.numel() != c:
                raise ValueError(f"lin{i}.weight must have {c} values ([1, {c}, 1, 1]), got {tuple(w.shape)}")
            self.register_buffer(f"lin{i}", w.reshape(1, c, 1, 1).clone())
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1))
        self.name = "lpips-vgg16"

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        _check_images(x, "LPIPSVGG16")
        if x.shape != y.shape:
            raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        h = (torch.cat([x, y]).float() - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=x.device)
        tap = 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i == _VGG_TAPS[tap]:
                a, b = _unit_channels(h).chunk(2)
                total = total + ((a - b).square() * getattr(self, f"lin{tap}")).sum(1).mean((1, 2))
                tap += 1
        return total


# ----------------------------------------------------------------------------- builders


def build_feature_net(weights: Optional[str], device: str | torch.device = "cpu") -> nn.Module:
    """FID/KID feature net from a local Inception-v3 weights file, or the labelled fallback.

    Returns a module mapping [B, 3, H, W] in [-1, 1] to [B, D] with attributes `name` and `dim`.
    A file that exists but does not hold Inception-v3 weights raises ValueError.
    """
    path = _weights_file(weights)
    if path is None:
        net: nn.Module = RandomConvFeatures(seed=0)
        log.warning(
            "FID/KID: no Inception weights at %s (set gan.metrics.inception_weights); using the offline "
            "fallback '%s' -- numbers are not comparable to published FID",
            weights, net.name,
        )
        return net.to(device)
    sd = read_state_dict(path)
    fc = sd.get("fc.weight")
    variant = "tf-fid" if fc is not None and fc.shape[0] == 1008 else "torchvision"
    try:
        net = InceptionFeatures(sd, variant=variant)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    log.info("FID/KID: Inception-v3 weights from %s (%s)", path, net.name)
    return net.to(device)


def build_perceptual_net(weights: Optional[str], device: str | torch.device = "cpu") -> nn.Module:
    """PPL distance from a local LPIPS-VGG16 weights file, or the labelled fallback.

    Returns a module with forward(x, y) -> [B] and attribute `name`.
    """
    path = _weights_file(weights)
    if path is None:
        net: nn.Module = RandomVGGDistance(seed=0)
        log.warning(
            "PPL: no LPIPS-VGG16 weights at %s (set gan.metrics.lpips_weights); using the offline "
            "fallback '%s' -- numbers are not comparable to published PPL",
            weights, net.name,
        )
        return net.to(device)
    try:
        net = LPIPSVGG16(read_state_dict(path))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    log.info("PPL: LPIPS-VGG16 weights from %s", path)
    return net.to(device)
