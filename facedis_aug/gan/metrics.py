"""GAN metrics, offline: FID and KID against the training data, PPL in W (StyleGAN2).

The generator is used only through `G.mapping(z [B, z_dim]) -> w` and `G.synthesis(w) -> img
[B, 3, R, R] in [-1, 1]` with attributes `G.z_dim`, `G.w_dim`; no truncation (psi = 1).

    cfg = MetricsConfig(inception_weights="weights/inception.safetensors", num_images=2000)
    metrics = GanMetrics(cfg, device="cpu")
    result = metrics(G_ema, real_batches)   # {'fid', 'kid', 'kid_std', 'ppl', 'feature_net', ...}

Every result names the networks it used (`feature_net`, `perceptual_net`); a name starting with
'fallback-' means the weights file was missing and the number is only comparable with other
fallback numbers (see `feature_nets.py`).
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MetricsConfig
from .feature_nets import build_feature_net, build_perceptual_net

ArrayLike = Tensor | np.ndarray
Distance = Callable[[Tensor, Tensor], Tensor]  # (img0, img1) [B, 3, H, W] -> [B]

__all__ = ["GanMetrics", "MetricsConfig", "compute_features", "compute_fid_kid", "compute_ppl", "fid_from_features",
           "kid_from_features"]


# ----------------------------------------------------------------------------- FID and KID


def _f64(x: ArrayLike, name: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be [N, D], got shape {a.shape}")
    return a


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Frechet distance between N(mu1, S1) and N(mu2, S2), float64:

        |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix S1^(1/2) S2 S1^(1/2) (same spectrum as S1 S2), so no complex sqrtm and no imaginary part
    to discard; tiny negative eigenvalues from rounding are clipped to 0.
    """
    mu1 = np.asarray(mu1.detach().cpu() if isinstance(mu1, Tensor) else mu1, dtype=np.float64).ravel()
    mu2 = np.asarray(mu2.detach().cpu() if isinstance(mu2, Tensor) else mu2, dtype=np.float64).ravel()
    s1, s2 = _f64(sigma1, "sigma1"), _f64(sigma2, "sigma2")
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu1 {mu1.shape}, mu2 {mu2.shape}, S1 {s1.shape}, S2 {s2.shape}")
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    vals, vecs = np.linalg.eigh(s1)
    root1 = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    m = root1 @ s2 @ root1
    ev = np.linalg.eigvalsh(0.5 * (m + m.T))
    tr_covmean = float(np.sqrt(np.clip(ev, 0.0, None)).sum())
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(fd, 0.0)  # a distance; rounding can leave -1e-12 for identical moments


def fid_from_features(f_real: ArrayLike, f_fake: ArrayLike) -> float:
    """FID from features [N, D] and [M, D] (unbiased covariances, float64)."""
    a, b = _f64(f_real, "f_real"), _f64(f_fake, "f_fake")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("FID needs at least 2 samples on each side")
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def kid_from_features(
    f_real: ArrayLike, f_fake: ArrayLike, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: unbiased MMD^2 with the kernel k(x, y) = (x.y / D + 1)^3, averaged over random subsets.

    Each subset draws `min(subset_size, N, M)` rows from each side without replacement (numpy
    generator seeded with `seed`). Returns (mean, std) over subsets, float64.
    """
    a, b = _f64(f_real, "f_real"), _f64(f_fake, "f_fake")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples on each side")
    dim = a.shape[1]
    rng = np.random.default_rng(seed)
    off = 1.0 / (m * (m - 1))
    values = np.empty(num_subsets)
    for s in range(num_subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        kxx = (x @ x.T / dim + 1.0) ** 3
        kyy = (y @ y.T / dim + 1.0) ** 3
        kxy = (x @ y.T / dim + 1.0) ** 3
        # unbiased: the diagonals k(x_i, x_i) are left out of the within-set terms
        values[s] = (kxx.sum() - np.trace(kxx)) * off + (kyy.sum() - np.trace(kyy)) * off - 2.0 * kxy.mean()
    return float(values.mean()), float(values.std())


# ----------------------------------------------------------------------------- images in, features out


def _images_of(item: Any) -> Tensor:
    """A batch from a loader: a tensor, an (images, labels...) tuple, or a dict with 'image'."""
    if isinstance(item, (tuple, list)):
        item = item[0]
    elif isinstance(item, dict):
        item = item["image"]
    if not isinstance(item, Tensor) or item.ndim != 4 or item.shape[1] != 3:
        shape = tuple(item.shape) if isinstance(item, Tensor) else type(item).__name__
        raise ValueError(f"expected image batches [B, 3, H, W] in [-1, 1], got {shape}")
    return item


def quantize_8bit(x: Tensor) -> Tensor:
    """Clamp [-1, 1] images and round them to the 256 levels of an 8-bit image (as saved images
    are), so real and generated images reach the feature net in the same form."""
    return torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


@torch.no_grad()
def compute_features(
    feature_net: nn.Module, batches: Iterable[Any], num_images: int, batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Features [N, D] (float64, CPU) of the first `num_images` images of `batches` ([B, 3, H, W] in
    [-1, 1]); N < num_images when the iterable runs out first."""
    out, n = [], 0
    for item in batches:
        imgs = _images_of(item)[: num_images - n]
        for i in range(0, imgs.shape[0], batch_size):
            x = quantize_8bit(imgs[i : i + batch_size].to(device, torch.float32))
            out.append(feature_net(x).double().cpu())
        n += imgs.shape[0]
        if n >= num_images:
            break
    if not out:
        raise ValueError("no images to compute features of")
    return torch.cat(out)


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put `module` in eval mode for the block and restore every submodule's flag afterwards."""
    flags = [(m, m.training) for m in module.modules()] if isinstance(module, nn.Module) else []
    if isinstance(module, nn.Module):
        module.eval()
    try:
        yield
    finally:
        for m, f in flags:
            m.training = f


def generated_batches(
    G: Any, num_images: int, batch_size: int = 32, seed: int = 0, device: str | torch.device = "cpu"
) -> Iterator[Tensor]:
    """Yield images G.synthesis(G.mapping(z)) for z ~ N(0, I) drawn from a CPU generator seeded with
    `seed` (so the same seed gives the same z on every device); truncation psi = 1. The synthesis
    noise (default mode) is drawn under a seed taken from the same generator, so the images do not
    depend on the global RNG state."""
    gen = torch.Generator().manual_seed(seed)
    done = 0
    while done < num_images:
        b = min(batch_size, num_images - done)
        z = torch.randn(b, G.z_dim, generator=gen).to(device)
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        # no_grad / eval only around the work, never across `yield`: a consumer that stops early
        # would otherwise leave grad mode off for the rest of the process
        with torch.no_grad(), _eval_mode(G):
            img = _synthesize_with_seed(G, G.mapping(z), noise_seed, {})
        if img.ndim != 4 or img.shape[:2] != (b, 3):
            raise ValueError(f"G.synthesis must return [B, 3, R, R], got {tuple(img.shape)}")
        yield img
        done += b


def compute_fid_kid(
    G: Any, real_batches: Iterable[Any] | None, num_images: int, feature_net: nn.Module,
    batch_size: int = 32, seed: int = 0, device: str | torch.device = "cpu", *,
    real_features: Tensor | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000,
) -> dict[str, Any]:
    """FID and KID of `num_images` generated images against up to `num_images` real ones.

    real_batches: iterable of [B, 3, R, R] in [-1, 1] (or (images, ...) tuples); ignored when the
    real features are given (`compute_features`, to reuse them across evaluations).
    Returns {'fid', 'kid', 'kid_std', 'num_real', 'num_fake', 'feature_net', 'feature_dim'}.
    """
    if real_features is None:
        if real_batches is None:
            raise ValueError("give real_batches or real_features")
        real_features = compute_features(feature_net, real_batches, num_images, batch_size, device)
    fake = compute_features(feature_net, generated_batches(G, num_images, batch_size, seed, device),
                            num_images, batch_size, device)
    kid, kid_std = kid_from_features(real_features, fake, kid_subsets, kid_subset_size, seed)
    return {
        "fid": fid_from_features(real_features, fake),
        "kid": kid,
        "kid_std": kid_std,
        "num_real": int(real_features.shape[0]),
        "num_fake": int(fake.shape[0]),
        "feature_net": getattr(feature_net, "name", type(feature_net).__name__),
        "feature_dim": int(fake.shape[1]),
    }


# ----------------------------------------------------------------------------- PPL


def ppl_from_distances(distances: ArrayLike) -> float:
    """Mean of the per-sample path lengths after discarding those below the 1st percentile
    (lower sample) and above the 99th (higher sample), as StyleGAN does."""
    d = np.asarray(distances.detach().cpu() if isinstance(distances, Tensor) else distances, dtype=np.float64).ravel()
    if d.size == 0:
        raise ValueError("no distances")
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    return float(d[(d >= lo) & (d <= hi)].mean())


def _synthesis_kwargs(G: Any) -> dict[str, Any]:
    """Ask for constant noise when the synthesis network offers it (StyleGAN's noise_mode)."""
    fn = G.synthesis.forward if isinstance(G.synthesis, nn.Module) else G.synthesis
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    return {"noise_mode": "const"} if "noise_mode" in params else {}


def _synthesize_with_seed(G: Any, w: Tensor, noise_seed: int, kwargs: dict[str, Any]) -> Tensor:
    """G.synthesis(w) with the global RNG seeded: two calls with the same seed draw the same
    per-layer noise, so the pair differs only through w."""
    dev = w.device
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(noise_seed)
        for idx in cuda:
            with torch.cuda.device(idx):
                torch.cuda.manual_seed(noise_seed)
        return G.synthesis(w, **kwargs)


def _prepare_for_distance(img: Tensor, crop: bool) -> Tensor:
    if crop:  # StyleGAN2's FFHQ crop: the central face region
        c = img.shape[2] // 8
        img = img[:, :, c * 3 : c * 7, c * 2 : c * 6]
    if img.shape[2] > 256:  # LPIPS at most at 256 px, as StyleGAN2
        img = F.interpolate(img, size=(256, 256), mode="area")
    return img


@torch.no_grad()
def ppl_distances(
    G: Any, distance: Distance, num_samples: int, epsilon: float = 1e-4, sampling: str = "end",
    crop: bool = False, batch_size: int = 16, seed: int = 0, device: str | torch.device = "cpu",
) -> np.ndarray:
    """Per-sample path lengths in W, float64 [num_samples]:

        d(G(lerp(w0, w1, t)), G(lerp(w0, w1, t + eps))) / eps^2,  w0 = F(z0), w1 = F(z1),

    with t = 0 ('end') or t ~ U[0, 1) ('full'); z and t from a CPU generator seeded with `seed`.
    `distance` maps two image batches to [B] (LPIPS, or any injected distance).
    """
    if sampling not in ("end", "full"):
        raise ValueError(f"sampling must be 'end' or 'full', got {sampling!r}")
    gen = torch.Generator().manual_seed(seed)
    kwargs = _synthesis_kwargs(G)
    out, done = [], 0
    with _eval_mode(G):
        while done < num_samples:
            b = min(batch_size, num_samples - done)
            z = torch.randn(2 * b, G.z_dim, generator=gen).to(device)
            t = torch.rand(b, generator=gen, dtype=torch.float64)
            t = t if sampling == "full" else torch.zeros_like(t)
            noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
            w = G.mapping(z)
            w0, w1 = w[:b], w[b:]
            # interpolate in float64 so that the eps step is not lost to float32 rounding of t
            shape = (b,) + (1,) * (w.ndim - 1)
            ta = t.view(shape).to(device)
            wa = torch.lerp(w0.double(), w1.double(), ta).to(w.dtype)
            wb = torch.lerp(w0.double(), w1.double(), ta + epsilon).to(w.dtype)
            img_a = _synthesize_with_seed(G, wa, noise_seed, kwargs)
            img_b = _synthesize_with_seed(G, wb, noise_seed, kwargs)
            d = distance(_prepare_for_distance(img_a, crop), _prepare_for_distance(img_b, crop))
            if d.shape != (b,):
                raise ValueError(f"distance must return [B] = [{b}], got {tuple(d.shape)}")
            out.append(d.double().cpu() / epsilon**2)
            done += b
    return torch.cat(out).numpy()


def compute_ppl(
    G: Any, distance: Distance, num_samples: int, epsilon: float = 1e-4, sampling: str = "end",
    crop: bool = False, batch_size: int = 16, seed: int = 0, device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """PPL in W (StyleGAN2). Returns {'ppl', 'ppl_samples', 'ppl_epsilon', 'ppl_sampling', 'perceptual_net'}."""
    d = ppl_distances(G, distance, num_samples, epsilon, sampling, crop, batch_size, seed, device)
    if not np.all(np.isfinite(d)):
        raise FloatingPointError(f"PPL: {int((~np.isfinite(d)).sum())} non-finite path lengths")
    return {
        "ppl": ppl_from_distances(d),
        "ppl_samples": int(d.size),
        "ppl_epsilon": float(epsilon),
        "ppl_sampling": sampling,
        "perceptual_net": getattr(distance, "name", getattr(distance, "__name__", "custom")),
    }


# ----------------------------------------------------------------------------- all together


class GanMetrics:
    """FID, KID and PPL of a generator per `MetricsConfig`; builds the nets once and caches the real
    features, so it can be called repeatedly during training.

        metrics = GanMetrics(cfg, device)
        metrics(G_ema, real_batches)  # real_batches may be None after the first call
    """

    def __init__(self, cfg: MetricsConfig, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self._feature_net: nn.Module | None = None
        self._perceptual: nn.Module | None = None
        self._real: Tensor | None = None

    @property
    def feature_net(self) -> nn.Module:
        if self._feature_net is None:
            self._feature_net = build_feature_net(self.cfg.inception_weights, self.device)
        return self._feature_net

    @property
    def perceptual_net(self) -> nn.Module:
        if self._perceptual is None:
            self._perceptual = build_perceptual_net(self.cfg.lpips_weights, self.device)
        return self._perceptual

    def real_features(self, real_batches: Iterable[Any] | None) -> Tensor:
        if self._real is None:
            if real_batches is None:
                raise ValueError("the first call needs real_batches")
            c = self.cfg
            self._real = compute_features(self.feature_net, real_batches, c.num_images, c.batch_size, self.device)
        return self._real

    def __call__(self, G: Any, real_batches: Iterable[Any] | None = None, fid: bool = True, ppl: bool = True) -> dict[str, Any]:
        c, out = self.cfg, {}
        if fid:
            out.update(compute_fid_kid(
                G, None, c.num_images, self.feature_net, c.batch_size, c.seed, self.device,
                real_features=self.real_features(real_batches), kid_subsets=c.kid_subsets,
                kid_subset_size=c.kid_subset_size,
            ))
        if ppl:
            out.update(compute_ppl(
                G, self.perceptual_net, c.ppl_samples, c.ppl_epsilon, c.ppl_sampling, c.ppl_crop,
                c.batch_size, c.seed, self.device,
            ))
        return out
