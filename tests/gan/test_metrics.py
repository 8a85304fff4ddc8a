"""GAN metrics: FID/KID against closed forms and brute force, feature nets (fallback and weight
files), PPL against the analytic value of a generator that is linear in w."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn

from facedis_aug.gan import feature_nets as fn
from facedis_aug.gan.metrics import (
    GanMetrics,
    MetricsConfig,
    compute_features,
    compute_fid_kid,
    compute_ppl,
    fid_from_features,
    frechet_distance,
    kid_from_features,
    ppl_distances,
    ppl_from_distances,
)
from facedis_aug.ops.dataconf import ConfigError, from_dict
from facedis_aug.ops.io import save_safetensors


# ----------------------------------------------------------------------------- stand-in generators


class LinearG(nn.Module):
    """w = z; image = scale * (Q w) reshaped to [3, R, R], Q with orthonormal columns, so that
    |img(w) - img(w')|^2 = scale^2 |w - w'|^2."""

    def __init__(self, z_dim: int = 16, res: int = 4, scale: float = 0.5, seed: int = 0, shift: float = 0.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(3 * res * res, z_dim, generator=g, dtype=torch.float64))
        self.register_buffer("q", q)
        self.z_dim = self.w_dim = z_dim
        self.res, self.scale, self.shift = res, scale, shift

    def mapping(self, z):
        return z.double()

    def synthesis(self, w):
        img = self.scale * (w.double() @ self.q.T) + self.shift
        return img.view(-1, 3, self.res, self.res)


class NoisyG(LinearG):
    """LinearG plus per-layer-like noise drawn from torch's global RNG."""

    def synthesis(self, w):
        img = super().synthesis(w)
        return img + 0.3 * torch.randn(img.shape, dtype=img.dtype)


class NoiseModeG(LinearG):
    """Noise that torch's RNG does not control unless noise_mode='const' (StyleGAN's switch)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.np_rng = np.random.default_rng(123)

    def synthesis(self, w, noise_mode: str = "random"):
        img = super().synthesis(w)
        if noise_mode == "random":
            img = img + 0.3 * torch.from_numpy(self.np_rng.standard_normal(tuple(img.shape)))
        return img


def l2_distance(a, b):
    return (a - b).double().square().flatten(1).sum(1)


# ----------------------------------------------------------------------------- Frechet distance / FID


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.2, 3.0, 6), rng.uniform(0.2, 3.0, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    # for commuting covariances tr((S1 S2)^1/2) = sum sqrt(a_i b_i)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-10, abs=1e-12)
    # the same in a rotated basis (still commuting, no longer diagonal)
    r, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    got = frechet_distance(mu1, r @ np.diag(a) @ r.T, mu2, r @ np.diag(b) @ r.T)
    assert got == pytest.approx(want, rel=1e-9)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_general_matches_sqrtm():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = x @ x.T + 0.1 * np.eye(5), y @ y.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real  # independent route (complex sqrtm of a non-symmetric matrix)
    want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8)


def test_fid_from_features_same_and_shifted_gaussians():
    rng = np.random.default_rng(2)
    d, n = 4, 20000
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d))
    assert fid_from_features(a, b) < 0.01
    # N(mu, diag(s^2)) vs N(0, I): |mu|^2 + sum (s - 1)^2
    mu, s = np.array([0.5, -1.0, 0.0, 2.0]), np.array([1.0, 2.0, 0.5, 1.5])
    c = torch.from_numpy(rng.normal(size=(n, d)) * s + mu)  # a tensor input works too
    want = np.sum(mu**2) + np.sum((s - 1) ** 2)
    assert fid_from_features(a, c) == pytest.approx(want, rel=0.03)


def test_fid_rejects_bad_shapes():
    with pytest.raises(ValueError):
        fid_from_features(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError):
        fid_from_features(np.zeros(10), np.zeros((10, 1)))


# ----------------------------------------------------------------------------- KID


def _mmd2_brute_force(x, y):
    d = x.shape[1]
    k = lambda u, v: (float(u @ v) / d + 1.0) ** 3  # noqa: E731
    m = x.shape[0]
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_full_subset_matches_brute_force():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.5, 1.0, size=(12, 3))
    mean, std = kid_from_features(x, y, num_subsets=3, subset_size=50)  # subset = whole set (capped)
    assert mean == pytest.approx(_mmd2_brute_force(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_same_vs_shifted_distribution():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    c = rng.normal(0.5, 1.0, size=(600, 16))
    same, same_std = kid_from_features(a, b, num_subsets=20, subset_size=200, seed=0)
    shifted, shifted_std = kid_from_features(a, c, num_subsets=20, subset_size=200, seed=0)
    assert abs(same) < 0.02
    assert shifted > 0.3 and shifted > 10 * (abs(same) + same_std)
    assert kid_from_features(a, c, 20, 200, seed=0) == (shifted, shifted_std)  # seeded


# ----------------------------------------------------------------------------- fallback nets


def test_fallback_nets_are_deterministic_and_labelled(caplog):
    x = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with caplog.at_level(logging.WARNING, logger="facedis_aug.gan.metrics"):
        f1 = fn.build_feature_net("/no/such/inception.safetensors")
        f2 = fn.build_feature_net(None)
        p1 = fn.build_perceptual_net("/no/such/lpips.safetensors")
        p2 = fn.build_perceptual_net(None)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 4  # one line per build
    assert "no Inception weights at /no/such/inception.safetensors" in msgs[0]
    assert "gan.metrics.inception_weights" in msgs[0] and "fallback-random-conv-seed0" in msgs[0]
    assert "no LPIPS-VGG16 weights at /no/such/lpips.safetensors" in msgs[2] and "fallback-random-vgg-seed0" in msgs[2]
    assert f1.name == fn.FALLBACK_FEATURES == "fallback-random-conv-seed0"
    assert p1.name == fn.FALLBACK_PERCEPTUAL == "fallback-random-vgg-seed0"
    for a, b in ((f1, f2), (p1, p2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    y1, y2 = f1(x), f2(x)
    assert y1.shape == (3, f1.dim) and f1.dim == 1024 and torch.equal(y1, y2)
    assert y1.std(0).max() > 0  # images are told apart
    y = x.roll(1, 0)  # every image paired with a different one
    d = p1(x, y)
    assert d.shape == (3,) and torch.equal(d, p2(x, y)) and (d > 0).all()
    assert torch.allclose(p1(x, x), torch.zeros(3), atol=1e-12)
    # a different seed gives different weights
    assert not torch.equal(fn.RandomConvFeatures(seed=1)(x), y1)


# ----------------------------------------------------------------------------- Inception weight files


@pytest.fixture(scope="module")
def inception_state():
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    return {k: v.clone() for k, v in net.state_dict().items()}


def _torchvision_pool3(sd, x):
    from torchvision.models import inception_v3

    ref = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    ref.load_state_dict(sd)
    ref.fc = nn.Identity()
    return ref.eval()(x)


def test_inception_weights_round_trip(tmp_path, inception_state, caplog):
    path = tmp_path / "inception.safetensors"
    save_safetensors(path, inception_state)
    with caplog.at_level(logging.WARNING, logger="facedis_aug.gan.metrics"):
        net = fn.build_feature_net(str(path))
    assert not caplog.records  # no fallback warning
    assert net.name == "inception-v3" and net.dim == 2048
    sd = net.net.state_dict()
    assert all(torch.equal(sd[k], inception_state[k]) for k in sd)
    # our block-by-block forward equals torchvision's own graph (small input: the trunk accepts >= 75 px)
    x = torch.rand(2, 3, 99, 99, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ours, ref = net.trunk(x), _torchvision_pool3(inception_state, x)
    assert ours.shape == (2, 2048)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
    # forward(): clamp, bilinear resize to 299, features
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    want = net.trunk(F.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False))
    assert torch.allclose(net(img), want, rtol=1e-5, atol=1e-6)


def test_inception_tf_fid_layout_and_pt_file(tmp_path, inception_state):
    # fc with 1008 classes marks the TF 2015 FID weights; .pt read with weights_only, 'module.' stripped
    sd = {("module." + k): v for k, v in inception_state.items() if not k.startswith(("fc.", "AuxLogits."))}
    sd["module.fc.weight"] = torch.zeros(1008, 2048)
    path = tmp_path / "pt_inception.pth"
    torch.save({"state_dict": sd}, path)
    net = fn.build_feature_net(str(path))
    assert net.name == "inception-v3-tf-fid"
    x = torch.rand(1, 3, 99, 99, generator=torch.Generator().manual_seed(3)) * 2 - 1
    tv = fn.InceptionFeatures(inception_state, variant="torchvision")
    with torch.no_grad():
        a, b = net.trunk(x), tv.trunk(x)
    assert a.shape == (1, 2048) and not torch.allclose(a, b)  # the FID graph pools differently


def test_bad_weight_files_raise(tmp_path, inception_state):
    path = tmp_path / "broken.safetensors"
    save_safetensors(path, {k: v for k, v in inception_state.items() if "Mixed_7c" not in k})
    with pytest.raises(ValueError, match="missing"):
        fn.build_feature_net(str(path))
    with pytest.raises(ValueError, match="lacks"):
        fn.build_perceptual_net(str(path))


# ----------------------------------------------------------------------------- LPIPS weight files


def _lpips_reference(vgg_sd, lins, x, y):
    """Independent LPIPS: torchvision's vgg16 features with forward hooks on the five ReLUs."""
    from torchvision.models import vgg16

    feats = vgg16(weights=None).features
    feats.load_state_dict(vgg_sd)
    taps = []
    for idx in (3, 8, 15, 22, 29):
        feats[idx].inplace = False
        feats[idx].register_forward_hook(lambda m, i, o: taps.append(o))
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    feats.eval()
    with torch.no_grad():
        feats((x - shift) / scale)
        fx = list(taps)
        taps.clear()
        feats((y - shift) / scale)
        fy = list(taps)
    total = 0
    for a, b, w in zip(fx, fy, lins):
        na = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        nb = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        total = total + (w * (na - nb) ** 2).sum(1).mean((1, 2))
    return total


def test_lpips_weights_round_trip_both_namings(tmp_path):
    torch.manual_seed(0)
    feats = fn._vgg16_features()
    vgg_sd = {k: v.clone() for k, v in feats.state_dict().items()}
    g = torch.Generator().manual_seed(5)
    lins = [torch.rand(1, c, 1, 1, generator=g) for c in (64, 128, 256, 512, 512)]
    ours = {f"features.{k}": v for k, v in vgg_sd.items()} | {f"lin{i}.weight": w for i, w in enumerate(lins)}
    save_safetensors(tmp_path / "lpips.safetensors", ours)
    # the lpips package's names: net.slice{k}.{i}.* and lin{k}.model.1.weight
    starts = (0, 4, 9, 16, 23, 30)
    theirs = {}
    for k, v in vgg_sd.items():
        i = int(k.split(".")[0])
        s = next(j for j in range(5) if starts[j] <= i < starts[j + 1]) + 1
        theirs[f"net.slice{s}.{k}"] = v
    theirs |= {f"lin{i}.model.1.weight": w for i, w in enumerate(lins)}
    save_safetensors(tmp_path / "lpips_pkg.safetensors", theirs)

    net = fn.build_perceptual_net(str(tmp_path / "lpips.safetensors"))
    net2 = fn.build_perceptual_net(str(tmp_path / "lpips_pkg.safetensors"))
    assert net.name == net2.name == "lpips-vgg16"
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        d, d2 = net(x, y), net2(x, y)
        zero = net(x, x)
    want = _lpips_reference(vgg_sd, lins, x, y)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(d, want, rtol=1e-4) and torch.equal(d, d2)
    assert torch.allclose(zero, torch.zeros(2), atol=1e-10)


# ----------------------------------------------------------------------------- PPL


def _trimmed_mean_scaled_chi2(k: int, scale: float) -> float:
    """E[X | q_1% <= X <= q_99%] for X = scale * chi2_k; uses x f_k(x) = k f_{k+2}(x)."""
    lo, hi = scipy.stats.chi2.ppf([0.01, 0.99], k)
    mass = scipy.stats.chi2.cdf(hi, k + 2) - scipy.stats.chi2.cdf(lo, k + 2)
    return scale * k * mass / 0.98


@pytest.mark.parametrize("sampling", ["end", "full"])
def test_ppl_linear_generator_matches_analytic(sampling):
    # img(w0 + eps (w1 - w0)) - img(w0) = eps * scale * Q (w1 - w0); with w = z, w1 - w0 ~ N(0, 2 I):
    # path length = scale^2 * 2 * chi2_16 per sample, whatever t is
    k, scale = 16, 0.5
    G = LinearG(z_dim=k, scale=scale)
    res = compute_ppl(G, l2_distance, num_samples=4000, epsilon=1e-4, sampling=sampling, batch_size=1000, seed=0)
    want = _trimmed_mean_scaled_chi2(k, 2 * scale**2)
    assert res["ppl"] == pytest.approx(want, rel=0.03)
    assert res["perceptual_net"] == "l2_distance" and res["ppl_samples"] == 4000 and res["ppl_sampling"] == sampling
    # epsilon does not matter for a linear generator (float64 path)
    d1 = ppl_distances(G, l2_distance, 50, epsilon=1e-4, seed=1)
    d2 = ppl_distances(G, l2_distance, 50, epsilon=1e-2, seed=1)
    assert np.allclose(d1, d2, rtol=1e-6)


@pytest.mark.parametrize("sampling", ["end", "full"])
def test_ppl_quadratic_generator_depends_on_t(sampling):
    # img = w^2 per element (w = z): d/dt img(lerp(w0, w1, t)) = 2 w_t (w1 - w0), w_t = w0 for 'end'
    class Quad(LinearG):
        def synthesis(self, w):
            return (w.double() ** 2).view(-1, 3, 1, 1).expand(-1, 3, 2, 2)

    G = Quad(z_dim=3)
    d = ppl_distances(G, l2_distance, 8, epsilon=1e-6, sampling=sampling, seed=7)
    # redraw z0, z1, t exactly as ppl_distances does (one batch of 8)
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(16, 3, generator=gen).double()
    t = torch.rand(8, generator=gen, dtype=torch.float64)[:, None]
    z0, z1 = z[:8], z[8:]
    wt = z0 + t * (z1 - z0) if sampling == "full" else z0
    slope = 2 * wt * (z1 - z0)
    want = 4 * slope.square().sum(1)  # each channel covers 2 x 2 pixels
    assert np.allclose(d, want.numpy(), rtol=1e-4)
    if sampling == "full":
        assert not np.allclose(d, 4 * (2 * z0 * (z1 - z0)).square().sum(1).numpy(), rtol=1e-2)


def test_ppl_same_noise_for_both_images():
    base = ppl_distances(LinearG(), l2_distance, 64, batch_size=32, seed=3)
    noisy = ppl_distances(NoisyG(), l2_distance, 64, batch_size=32, seed=3)
    const = ppl_distances(NoiseModeG(), l2_distance, 64, batch_size=32, seed=3)
    assert np.allclose(noisy, base, rtol=1e-6) and np.allclose(const, base, rtol=1e-6)
    # the noise is seeded by the metric's own seed, not by whatever the global RNG holds
    G = NoisyG()
    sees_noise = lambda x, y: (x + y).square().flatten(1).sum(1)  # noqa: E731  (depends on the noise itself)
    torch.manual_seed(1)
    a = ppl_distances(G, sees_noise, 8, seed=3)
    torch.manual_seed(2)
    b = ppl_distances(G, sees_noise, 8, seed=3)
    assert np.array_equal(a, b)


def test_ppl_from_distances_trims_one_percent_each_side():
    d = np.arange(1001, dtype=np.float64) ** 2
    rng = np.random.default_rng(0)
    got = ppl_from_distances(rng.permutation(d))
    assert got == pytest.approx(sum(k * k for k in range(10, 991)) / 981)


def test_ppl_with_fallback_perceptual_net_and_crop():
    G = LinearG(z_dim=8, res=16, scale=0.05)
    p = fn.build_perceptual_net(None)
    a = compute_ppl(G, p, 16, batch_size=8, seed=0)
    b = compute_ppl(G, p, 16, batch_size=8, seed=0, crop=True)
    assert a["perceptual_net"] == "fallback-random-vgg-seed0"
    assert np.isfinite(a["ppl"]) and a["ppl"] > 0 and a["ppl"] != b["ppl"]
    assert compute_ppl(G, p, 16, batch_size=8, seed=0) == a  # seeded


# ----------------------------------------------------------------------------- FID/KID end to end


def _real_batches(G, n, seed, bs=16, as_tuple=True):
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, n, bs):
        img = G.synthesis(G.mapping(torch.randn(bs, G.z_dim, generator=gen))).float()
        yield (img, torch.zeros(bs)) if as_tuple else img


def test_compute_fid_kid_with_stand_in_generator():
    G = LinearG(z_dim=8, res=16, scale=0.08)
    G.train()
    far = LinearG(z_dim=8, res=16, scale=0.08, shift=0.4)
    net = fn.build_feature_net(None)
    n = 48
    same = compute_fid_kid(G, _real_batches(G, n, seed=10), n, net, batch_size=16, seed=0, kid_subsets=5, kid_subset_size=24)
    other = compute_fid_kid(G, _real_batches(far, n, seed=10, as_tuple=False), n, net, batch_size=16, seed=0,
                            kid_subsets=5, kid_subset_size=24)
    assert G.training  # eval mode only during generation
    assert same["feature_net"] == "fallback-random-conv-seed0" and same["feature_dim"] == 1024
    assert same["num_real"] == same["num_fake"] == n
    assert other["fid"] > 5 * same["fid"] and other["kid"] > 5 * abs(same["kid"])
    # reusing real features gives the same numbers
    real = compute_features(net, _real_batches(G, n, seed=10), n, 16)
    again = compute_fid_kid(G, None, n, net, 16, 0, real_features=real, kid_subsets=5, kid_subset_size=24)
    assert again == same
    # a noisy generator gives the same numbers whatever the global RNG holds
    noisy = NoisyG(z_dim=8, res=16, scale=0.08)
    runs = []
    for s in (1, 2):
        torch.manual_seed(s)
        runs.append(compute_fid_kid(noisy, None, 16, net, 16, 0, real_features=real[:16], kid_subsets=2, kid_subset_size=8))
    assert runs[0] == runs[1]


def test_metrics_config_and_gan_metrics(caplog):
    cfg = from_dict(MetricsConfig, {"num_images": 32, "ppl_samples": 16, "kid_subsets": 3, "kid_subset_size": 16,
                                    "batch_size": 16, "inception_weights": None}, "gan.metrics")
    assert cfg.lpips_weights is None and cfg.ppl_sampling == "end" and cfg.ppl_epsilon == 1e-4
    with pytest.raises(ConfigError, match="ppl_sampling"):
        from_dict(MetricsConfig, {"ppl_sampling": "middle"}, "gan.metrics")
    with pytest.raises(ConfigError):
        from_dict(MetricsConfig, {"num_images": 0}, "gan.metrics")
    G = LinearG(z_dim=8, res=16, scale=0.08)
    metrics = GanMetrics(cfg)
    with caplog.at_level(logging.WARNING, logger="facedis_aug.gan.metrics"):
        r1 = metrics(G, _real_batches(G, 32, seed=1))
        r2 = metrics(G)  # real features cached; nets built once
    assert len(caplog.records) == 2
    assert r1 == r2
    assert r1["feature_net"] == "fallback-random-conv-seed0" and r1["perceptual_net"] == "fallback-random-vgg-seed0"
    assert {"fid", "kid", "kid_std", "ppl"} <= r1.keys() and all(np.isfinite(r1[k]) for k in ("fid", "kid", "ppl"))
