"""StyleGAN2 networks: shapes, equalized lr, FIR resampling, modulation, truncation, noise, loading."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from facedis_aug.gan.loss import sample_ws
from facedis_aug.gan.networks import (
    Conv2dLayer,
    Discriminator,
    DiscriminatorConfig,
    FullyConnected,
    Generator,
    GeneratorConfig,
    fir2d,
    fir_matrix,
    generate,
    generator_metadata,
    load_generator,
    minibatch_stddev,
    SynthesisLayer,
    modulated_conv2d,
)
from facedis_aug.ops import save_safetensors

TINY = GeneratorConfig(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=32)


def tiny_G(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(TINY)
    with torch.no_grad():  # noise strengths start at 0; make noise visible for the noise tests
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return G


def test_shapes():
    G = tiny_G()
    D = Discriminator(DiscriminatorConfig(resolution=32, channel_base=256, channel_max=32))
    z = torch.randn(4, 16)
    w = G.mapping(z)
    assert w.shape == (4, 16) and G.num_ws == 8
    img = G.synthesis(w)
    assert img.shape == (4, 3, 32, 32) and torch.isfinite(img).all()
    assert G.synthesis(w[:, None].expand(-1, 8, -1)).shape == (4, 3, 32, 32)
    assert D(img).shape == (4,)
    with pytest.raises(ValueError):
        G.synthesis(torch.randn(4, 7, 16))
    with pytest.raises(ValueError):
        G.mapping(torch.randn(4, 15))
    with pytest.raises(ValueError):
        D(torch.randn(4, 3, 16, 16))
    for res, n_ws in [(64, 10), (128, 12)]:
        g = Generator(GeneratorConfig(resolution=res, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8))
        assert g.num_ws == n_ws and g(torch.randn(2, 8)).shape == (2, 3, res, res)


def test_equalized_lr_scaling():
    torch.manual_seed(0)
    fc = FullyConnected(64, 32, activation=False, lr_mult=0.01, bias_init=1.0)
    assert fc.weight.std().item() == pytest.approx(100.0, rel=0.1)  # stored at N(0,1) / lr_mult
    x = torch.randn(5, 64)
    expected = x @ (fc.weight * 0.01 / 8.0).t() + fc.bias * 0.01
    assert torch.allclose(fc(x), expected, atol=1e-5)
    assert torch.allclose(fc.bias * 0.01, torch.ones(32))  # effective bias = bias_init
    conv = Conv2dLayer(32, 32, 3, bias=False, activation=False)
    x = torch.randn(8, 32, 16, 16)
    ratio = conv(x)[..., 1:-1, 1:-1].std() / x.std()  # unit gain by construction of the scaling
    assert ratio.item() == pytest.approx(1.0, abs=0.1)


UP = dict(up=True, pad=1, gain=2.0)  # zero-stuffing + FIR, n -> 2n (the skip image's upsampling)
DOWN = dict(stride=2, pad=1)  # FIR + every second sample, n -> n/2 (D's 1x1 skip)


def test_fir_known_signals():
    C = 2
    ones = torch.ones(1, C, 8, 8)
    up = fir2d(ones, fir_matrix(8, 16, **UP))
    assert up.shape == (1, C, 16, 16) and torch.allclose(up[..., 1:-1, 1:-1], torch.ones(1, C, 14, 14))
    down = fir2d(ones, fir_matrix(8, 4, **DOWN))
    assert down.shape == (1, C, 4, 4) and torch.allclose(down[..., 1:-1, 1:-1], torch.ones(1, C, 2, 2))
    # an impulse at 1 lands on outputs 1..4 (2i - 1 + k): it gives the 2x-gain (1,3,3,1)/8 filter = 0.25, 0.75, 0.75, 0.25 per axis
    imp = torch.zeros(1, 1, 4, 4)
    imp[..., 1, 1] = 1
    f1 = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(fir2d(imp, fir_matrix(4, 8, **UP))[0, 0, 1:5, 1:5], torch.outer(f1, f1))
    # down(up(x)) ~ x for a smooth signal (interior)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    x = torch.sin(2 * math.pi * xx * 0.5)[None, None] * torch.cos(2 * math.pi * yy * 0.3)[None, None]
    rt = fir2d(fir2d(x, fir_matrix(16, 32, **UP)), fir_matrix(32, 16, **DOWN))
    assert (rt - x)[..., 2:-2, 2:-2].abs().max() < 0.05


def test_fir_matrices_equal_the_depthwise_convolutions():
    """Each resampling the networks use, as the matrix pair, against the depthwise (transposed)
    convolution with the 2-D (1,3,3,1) filter that it replaces, in float64."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    f2 = lambda C, gain: (torch.outer(f, f) / 64 * gain).expand(C, 1, 4, 4)  # noqa: E731
    x = torch.randn(2, 5, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x9 = torch.randn(2, 5, 17, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cases = [
        (F.conv_transpose2d(x, f2(5, 4), stride=2, padding=1, groups=5), fir2d(x, fir_matrix(8, 16, **UP))),
        (F.conv2d(x9, f2(5, 4), padding=1, groups=5), fir2d(x9, fir_matrix(17, 16, pad=1, gain=2.0))),  # after the up-conv
        (F.conv2d(x, f2(5, 1), padding=2, groups=5), fir2d(x, fir_matrix(8, 9, pad=2))),  # D's blur before the 3x3 down-conv
        (F.conv2d(x, f2(5, 1), stride=2, padding=1, groups=5), fir2d(x, fir_matrix(8, 4, **DOWN))),
    ]
    for want, got in cases:
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_bf16_autocast_keeps_activations_in_bf16_and_near_fp32():
    """Under CPU bf16 autocast the synthesis network must not fall back to fp32 between layers (an
    fp32 bias or style would promote every activation and cost a cast per op), and its images stay
    within bf16 rounding of the fp32 ones."""
    torch.manual_seed(0)
    G = Generator(TINY).eval()
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.dtype)) for m in G.synthesis.modules()
             if isinstance(m, SynthesisLayer)]
    z = torch.randn(4, TINY.z_dim)
    with torch.no_grad():
        ref = G(z, noise_mode="const")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img = G(z, noise_mode="const")
    for h in hooks:
        h.remove()
    assert seen and all(d == torch.bfloat16 for d in seen[len(seen) // 2:])
    assert (img.float() - ref).abs().max() < 0.1 * ref.abs().max()


def _reference_modconv(x, weight, styles, demodulate, up):
    out = []
    for b in range(x.shape[0]):  # the textbook form: one modulated kernel per sample
        w = weight * styles[b][None, :, None, None]
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        if up:
            out.append(F.conv_transpose2d(x[b : b + 1], w.transpose(0, 1), stride=2))
        else:
            out.append(F.conv2d(x[b : b + 1], w, padding=weight.shape[-1] // 2))
    return torch.cat(out)


@pytest.mark.parametrize("demodulate,up", [(True, False), (True, True), (False, False)])
def test_modulated_conv_matches_per_sample_weights(demodulate, up):
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 6, 6), torch.randn(4, 5, 3, 3), torch.randn(3, 5)
    got = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up)
    assert torch.allclose(got, _reference_modconv(x, weight, styles, demodulate, up), atol=1e-4)


def test_truncation():
    G = tiny_G()
    G.mapping.w_avg.copy_(torch.randn(16))
    z = torch.randn(3, 16)
    w = G.mapping(z)
    assert torch.allclose(G.mapping(z, truncation_psi=0.0), G.mapping.w_avg.expand(3, -1))
    assert torch.allclose(G.mapping(z, truncation_psi=0.5), (w + G.mapping.w_avg) / 2, atol=1e-6)
    # generate() applies the same truncation to a given w
    a = generate(G, w=w, truncation_psi=0.0)
    assert torch.allclose(a, generate(G, w=G.mapping.w_avg.expand(3, -1)))


def test_noise_modes():
    G = tiny_G()
    w = G.mapping(torch.randn(2, 16))
    c1, c2 = G.synthesis(w, noise_mode="const"), G.synthesis(w, noise_mode="const")
    assert torch.equal(c1, c2)
    assert not torch.allclose(G.synthesis(w, noise_mode="random"), G.synthesis(w, noise_mode="random"))
    assert not torch.allclose(c1, G.synthesis(w, noise_mode="none"))
    with pytest.raises(ValueError):
        G.synthesis(w, noise_mode="bogus")


def test_style_mixing():
    G = tiny_G()
    torch.manual_seed(1)
    z = torch.randn(4, 16)
    ws = sample_ws(G.mapping, z, G.num_ws, style_mixing=0.0)
    assert torch.equal(ws, G.mapping(z)[:, None].expand(-1, G.num_ws, -1))
    ws = sample_ws(G.mapping, z, G.num_ws, style_mixing=1.0)
    w1 = G.mapping(z)
    first = (ws == w1[:, None]).all(dim=2).all(dim=0)  # layers that still carry the first w
    cutoff = int(first.long().sum())
    assert 1 <= cutoff < G.num_ws and first[:cutoff].all() and not first[cutoff:].any()
    assert (ws[:, cutoff:] == ws[:, cutoff : cutoff + 1]).all()  # one second w for all later layers


def test_minibatch_stddev_known_answer():
    x = torch.zeros(8, 2, 3, 3)
    x[[0, 2, 4, 6]] = 0.0  # group of samples n % 2 == 0 (4 members): all equal -> std 0
    x[[1, 3, 5, 7]] = torch.tensor([1.0, -1.0, 1.0, -1.0])[:, None, None, None]  # population std 1
    y = minibatch_stddev(x, 4)
    assert y.shape == (8, 3, 3, 3)
    assert torch.allclose(y[0::2, 2], torch.full((4, 3, 3), 1e-4))
    assert torch.allclose(y[1::2, 2], torch.ones(4, 3, 3))


def test_generate_seeds_are_per_seed():
    G = tiny_G()
    a = generate(G, seeds=[1, 3])
    b = generate(G, seeds=[3])
    assert a.shape == (2, 3, 32, 32) and torch.allclose(a[1:], b, atol=1e-4)  # batch size changes only float rounding
    with pytest.raises(ValueError):
        generate(G)


def test_load_generator_round_trip_without_training_code(tmp_path: Path):
    G = tiny_G(3)
    G.mapping.w_avg.copy_(torch.randn(16))
    path = tmp_path / "gan.safetensors"
    save_safetensors(path, G.state_dict(), generator_metadata(G))
    ref = generate(G, seeds=[0, 1], truncation_psi=0.7)
    out = tmp_path / "imgs.safetensors"
    code = (
        "import sys, torch\n"
        "from facedis_aug.gan.networks import load_generator, generate\n"
        "from facedis_aug.ops import save_safetensors\n"
        f"G = load_generator({str(path)!r})\n"
        "assert not G.training and 'facedis_aug.gan.train' not in sys.modules\n"
        f"save_safetensors({str(out)!r}, {{'x': generate(G, seeds=[0, 1], truncation_psi=0.7)}})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""}, cwd=Path(__file__).parents[2])
    from facedis_aug.ops import load_safetensors

    # the subprocess may run another number of threads (another summation order): equal to rounding
    torch.testing.assert_close(load_safetensors(out)[0]["x"], ref, rtol=1e-5, atol=1e-5)
    G2 = load_generator(path)
    assert torch.equal(G2.mapping.w_avg, G.mapping.w_avg)
    with pytest.raises(ValueError):
        save_safetensors(tmp_path / "bad.safetensors", G.state_dict(), {"format": "other"})
        load_generator(tmp_path / "bad.safetensors")
