"""Stage 2 losses and training: L1 known values, mutual switch, perceptual file handling, the Sec. 3.4
yaw augmentation (planted least-squares answers, momentum, switch), loss decrease, resume, outputs."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from PIL import Image

from facedis_aug.decompose import (
    DecomposeConfig,
    Decomposer,
    PerceptualLoss,
    Renderer,
    YawAugmentation,
    decomposition_loss,
    load_decomposer,
    photometric_l1,
    train_decomposer,
)
from facedis_aug.decompose.sources import alternating_sampler
from facedis_aug.decompose.losses import (cycle_render, dssim, gradient_l1, map_cycle_loss, partners_of, vgg16_relu3_3,
                                          view_cycle_loss)
from facedis_aug.ops import save_safetensors

TINY = dict(image_size=32, channels=8, bottleneck=16, head_channels=4, conf_channels=4, conf_bottleneck=8,
            perceptual_weight=0.0, log_every=1, snapshot_every=1000, checkpoint_every=1000)
D = 6  # latent size of the toy generator


def _cfg(**kw) -> DecomposeConfig:
    return DecomposeConfig(**{**TINY, "batch": 4, **kw})


class ToyGenerator:
    """A fixed smooth map w [B, D] -> images [B, 3, 32, 32] in [-1, 1]; counts calls, keeps inputs."""

    def __init__(self):
        g = torch.Generator().manual_seed(123)
        self.basis = torch.randn(D, 3, 4, 4, generator=g)
        self.calls: list[torch.Tensor] = []

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        self.calls.append(w.clone())
        low = torch.einsum("bd,dchw->bchw", w, self.basis)
        return torch.tanh(torch.nn.functional.interpolate(low, size=32, mode="bilinear", align_corners=True))


def _sampler(gen: ToyGenerator, batch: int = 4, with_w: bool = True):
    def sample(step: int):
        w = torch.randn(batch, D, generator=torch.Generator().manual_seed(1000 + step)) + 0.5
        imgs = torch.tanh(torch.einsum("bd,dchw->bchw", w, gen.basis))
        imgs = torch.nn.functional.interpolate(imgs, size=32, mode="bilinear", align_corners=True)
        return imgs, (w if with_w else None)

    return sample


def test_photometric_l1_known_values():
    recon = torch.zeros(1, 3, 4, 4)
    target = torch.full((1, 3, 4, 4), 0.5)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    target[:, :, 2:] = 100.0  # masked out: must not count
    sigma = torch.ones(1, 1, 4, 4)
    assert photometric_l1(recon, target, sigma, mask).item() == pytest.approx(0.5 * math.sqrt(2), rel=1e-5)
    assert photometric_l1(recon, target, 2 * sigma, mask).item() == pytest.approx(0.5 * math.sqrt(2) / 2 + math.log(2), rel=1e-5)
    # robust: |d| -> c log(1 + |d| / c): 0.1 log 6 for |d| = 0.5, c = 0.1; close to the L1 for |d| << c
    assert photometric_l1(recon, target, sigma, mask, robust=0.1).item() == pytest.approx(0.1 * math.log(6) * math.sqrt(2), rel=1e-5)
    small = torch.full((1, 3, 4, 4), 1e-4)
    assert photometric_l1(recon, small, sigma, mask, robust=0.1).item() == pytest.approx(1e-4 * math.sqrt(2), rel=1e-3)


def test_gradient_l1_known_values():
    flat, step = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    step[..., 2:] = 1.0  # one vertical edge: 1 of the 3 horizontal differences per row, no vertical ones
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    assert gradient_l1(flat, step, mask).item() == pytest.approx((1 / 3 + 0) / 2, rel=1e-6)
    assert gradient_l1(step + 0.5, step, mask).item() == 0.0  # an offset has no gradient
    mask[..., 2:] = False  # the edge's right side invalid: no valid pair crosses it
    assert gradient_l1(flat, step, mask).item() == 0.0


def test_box3_is_the_replicate_padded_3x3_mean():
    from facedis_aug.decompose.losses import _box3

    x = torch.rand(2, 5, 7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    want = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    assert torch.allclose(_box3(x), want, atol=1e-12)
    # corner pixel by hand: the 3x3 window over the replicated edge counts x[0, 0] four times
    c = x[0, 0]
    assert _box3(x)[0, 0, 0, 0].item() == pytest.approx((4 * c[0, 0] + 2 * c[0, 1] + 2 * c[1, 0] + c[1, 1]).item() / 9)
    assert torch.autograd.gradcheck(_box3, (x[:1, :2].clone().requires_grad_(),))


@pytest.mark.parametrize("layers, surface", [(True, "head"), (True, "depth"), (False, "depth")])
def test_symmetric_face_draws_the_flip_branch_once_for_the_same_loss_and_gradient(layers, surface):
    # a symmetric face layer is its own mirror: rendering the flip branch again (what symmetric=False does with
    # the same maps) must give the same loss and the same gradient, learned confidences and every term included
    torch.manual_seed(0)
    cfg = _cfg(layers=layers, surface=surface, zero_init_heads=False, confidence="learned", mutual=True,
               gradient_weight=1.0, ssim_weight=10.0, view_cycle=0.0, map_cycle=0.0)
    model = Decomposer(cfg).double()  # float64: the two orders of summation agree to ~1e-12
    renderer = Renderer(32, surface=surface)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    results = []
    for c in (cfg, dataclasses.replace(cfg, symmetric=False)):
        model.zero_grad()
        out = decomposition_loss(c, model, renderer, images)
        out.total.backward()
        results.append((out.total.item(), out.terms, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (once, terms1, g1), (twice, terms2, g2) = results
    assert abs(once - twice) <= 1e-9 * abs(twice)
    assert terms1["l1_flip"] == pytest.approx(terms2["l1_flip"], rel=1e-9) and terms1["l1_flip"] != terms1["l1"]
    assert len(g1) == len(g2) > 0
    for a, b in zip(g1, g2):
        assert (a - b).norm() <= 1e-6 * b.norm() + 1e-12


def test_dssim_known_values():
    mask = torch.ones(1, 6, 6, dtype=torch.bool)
    x = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert dssim(x, x, mask).item() == pytest.approx(0.0, abs=1e-6)
    # flat 0.5 against flat 1.0 (in [0, 1] units): only SSIM's luminance term, (2 m1 m2 + c1) / (m1^2 + m2^2 + c1)
    lum = (2 * 0.5 * 1.0 + 1e-4) / (0.25 + 1.0 + 1e-4)
    assert dssim(torch.zeros(1, 3, 6, 6), torch.ones(1, 3, 6, 6), mask).item() == pytest.approx((1 - lum) / 2, rel=1e-5)
    # a featureless grey against a fine checkerboard of the same mean: the structure is all missing, so about 1/2,
    # where the L1 would say 1 for it and 1 for the checkerboard shifted by a pixel (dssim: 1, anti-correlated)
    board = (torch.arange(6)[:, None] + torch.arange(6)[None]) % 2 * 2.0 - 1.0
    board = board.expand(1, 3, 6, 6)
    assert dssim(torch.zeros(1, 3, 6, 6), board, mask).item() == pytest.approx(0.5, abs=0.01)
    assert dssim(-board, board, mask).item() > 0.95
    mask[..., 3:] = False  # invalid pixels do not count
    y = x.clone()
    y[..., 4:] = -x[..., 4:]
    assert dssim(y, x, mask).item() < dssim(y, x, torch.ones(1, 6, 6, dtype=torch.bool)).item()


@pytest.mark.parametrize("name, term", [("gradient_weight", "grad_l1"), ("ssim_weight", "dssim")])
def test_structure_weights_add_their_term(name, term):
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    outs = {}
    for w in (0.0, 2.0):
        cfg = _cfg(mutual=False, **{name: w})
        torch.manual_seed(3)
        outs[w] = decomposition_loss(cfg, Decomposer(cfg), Renderer(32), x)
    assert term not in outs[0.0].terms and outs[2.0].terms[term] > 0
    assert outs[2.0].terms["recon"] == pytest.approx(outs[0.0].terms["recon"] + 2.0 * outs[2.0].terms[term], rel=1e-5)


def test_view_cycle_reads_back_rendered_views_and_trains_only_the_view_head():
    torch.manual_seed(0)
    cfg = _cfg(mutual=False, view_cycle=1.0, view_cycle_range=(20.0, 60.0), confidence="fixed")
    model, renderer = Decomposer(cfg), Renderer(32)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    d = model(x)
    gen = torch.Generator().manual_seed(5)
    image, view = cycle_render(cfg, model, renderer, d, gen)
    loss = view_cycle_loss(cfg, model, image, view)
    # the zero-initialised view head reads every render as frontal, so the loss is the mean of
    # |pitch| / pitch_range, |yaw| / rot_range (and 0 for the kept roll) over the drawn views
    u = torch.rand(4, 2, generator=torch.Generator().manual_seed(5)) * 2 - 1
    expect = ((u[:, 0].abs() * 20 / cfg.pitch_range) + (u[:, 1].abs() * 60 / cfg.rot_range)).mean() / 3
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    loss.backward()
    grads = {n: sum(float(p.grad.abs().sum()) for p in getattr(model, n).parameters() if p.grad is not None)
             for n in ("net_view", "net_depth", "net_albedo", "net_light")}
    assert grads["net_view"] > 0 and grads["net_depth"] == grads["net_albedo"] == grads["net_light"] == 0
    out = decomposition_loss(cfg, model, renderer, x)
    assert out.terms["view_cycle"] > 0


def test_view_cycle_light_next_renders_each_face_under_the_next_faces_light():
    import dataclasses

    torch.manual_seed(0)
    own = _cfg(mutual=False, view_cycle=1.0, confidence="fixed")
    nxt = dataclasses.replace(own, view_cycle_light="next")
    model, renderer = Decomposer(own), Renderer(32)
    d = model(torch.rand(3, 3, 32, 32) * 2 - 1)
    light = torch.tensor([[0.2] * 3 + [0.9] * 3 + [0.8, 0.0], [0.6] * 3 + [0.3] * 3 + [-0.8, 0.3],
                          [0.4] * 3 + [0.5] * 3 + [0.0, -0.5]])
    d = dataclasses.replace(d, light=light)
    a, va = cycle_render(own, model, renderer, d, torch.Generator().manual_seed(1))
    b, vb = cycle_render(nxt, model, renderer, d, torch.Generator().manual_seed(1))
    rolled, _ = cycle_render(own, model, renderer, dataclasses.replace(d, light=light.roll(-1, 0)),
                             torch.Generator().manual_seed(1))
    assert torch.equal(va, vb)  # the same views
    torch.testing.assert_close(b, rolled, rtol=0, atol=0)  # face i under face i + 1's light
    assert (a - b).abs().amax() > 0.05  # and that light shows
    with pytest.raises(ValueError, match="view_cycle_light"):
        _cfg(view_cycle_light="other")


def test_map_cycle_is_zero_for_view_blind_maps_and_trains_only_the_map_nets():
    torch.manual_seed(0)
    cfg = _cfg(mutual=False, map_cycle=1.0, confidence="fixed")
    model, renderer = Decomposer(cfg), Renderer(32)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    d = model(x)
    image, _ = cycle_render(cfg, model, renderer, d, torch.Generator().manual_seed(5))
    loss = map_cycle_loss(model, image, d)
    assert loss.item() > 0
    loss.backward()
    grads = {n: sum(float(p.grad.abs().sum()) for p in getattr(model, n).parameters() if p.grad is not None)
             for n in ("net_view", "net_depth", "net_albedo", "net_light", "net_conf")}
    assert grads["net_depth"] > 0 and grads["net_albedo"] > 0
    assert grads["net_view"] == grads["net_light"] == grads["net_conf"] == 0
    # maps that do not depend on the image (last convs' weights zeroed, biases kept) read every render
    # back exactly: the loss is 0
    with torch.no_grad():
        for net in (model.net_depth, model.net_albedo):
            net.net[-1].weight.zero_()
            net.net[-1].bias.uniform_(-0.5, 0.5)
    d = model(x)
    image, _ = cycle_render(cfg, model, renderer, d, torch.Generator().manual_seed(5))
    assert map_cycle_loss(model, image, d).item() == pytest.approx(0.0, abs=1e-7)
    out = decomposition_loss(cfg, model, renderer, x)
    assert "view_cycle" not in out.terms and out.terms["map_cycle"] == pytest.approx(0.0, abs=1e-7)


def test_partners_are_other_images_of_the_batch():
    x = torch.arange(5.0)
    assert partners_of(x).tolist() == [4.0, 0.0, 1.0, 2.0, 3.0]
    assert partners_of(torch.arange(6.0), pairs=True).tolist() == [1.0, 0.0, 3.0, 2.0, 5.0, 4.0]


def test_identity_pairs_swap_the_maps_within_each_pair():
    # pairs of identical images [a, a, b, b]: the pair's partner has the image's own maps, so its swapped
    # reconstruction equals its own; the roll's partner (image i - 1) crosses pairs and does not
    torch.manual_seed(0)
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).repeat_interleave(2, 0)
    for pairs in (True, False):
        cfg = _cfg(confidence="fixed", identity_pairs=pairs)
        torch.manual_seed(1)
        out = decomposition_loss(cfg, Decomposer(cfg), Renderer(32), x)
        assert (abs(out.terms["mutual_l1"] - out.terms["l1"]) < 1e-6) == pairs


def test_identity_pairs_need_mutual_reconstruction_and_an_even_batch():
    with pytest.raises(ValueError, match="identity_pairs"):
        _cfg(identity_pairs=True, mutual=False)
    with pytest.raises(ValueError, match="identity_pairs"):
        _cfg(identity_pairs=True, batch=5)


def test_identity_pair_sampler_gives_one_person_in_two_photos_per_pair():
    from facedis_aug import SyntheticFaces
    from facedis_aug.data.stream import step_indices
    from facedis_aug.decompose.sources import identity_pair_params, identity_pair_sampler

    faces = SyntheticFaces(500, resolution=16, num_identities=40, pose="uniform")
    p = identity_pair_params(faces, torch.from_numpy(step_indices(500, 8, 0, 2)))
    plain = faces.params(p.index)
    assert torch.equal(p.identity[1::2], p.identity[0::2]) and torch.equal(p.identity[0::2], plain.identity[0::2])
    assert torch.equal(p.id_code[1::2], p.id_code[0::2])
    # each photo keeps its own pose, light and background
    assert torch.equal(p.yaw, plain.yaw) and torch.equal(p.img_code, plain.img_code)
    assert (p.yaw[1::2] != p.yaw[0::2]).all()
    sampler = identity_pair_sampler(faces, 32, 8, seed=0)
    images, w = sampler(2)
    assert w is None and images.shape == (8, 3, 32, 32) and -1.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert torch.equal(images, sampler(2)[0]) and not torch.equal(images, sampler(3)[0])
    with pytest.raises(ValueError, match="even batch"):
        identity_pair_sampler(faces, 32, 7, seed=0)
    with pytest.raises(TypeError, match="synthetic world"):
        identity_pair_sampler([torch.zeros(3, 16, 16)] * 4, 32, 4, seed=0)


def test_identity_pair_sampler_pairs_images_of_one_folder(tmp_path):
    from facedis_aug.data.folder import ImageFolderFaces
    from facedis_aug.decompose.sources import identity_pair_sampler

    # identity c's images are grey c * 60 + 10 * k: the level says the folder, and k the photo
    for c in range(3):
        (tmp_path / f"person{c}").mkdir()
        for k in range(3 if c < 2 else 1):
            Image.new("RGB", (8, 8), (c * 60 + 10 * k,) * 3).save(tmp_path / f"person{c}" / f"{k}.png")
    faces = ImageFolderFaces(tmp_path, 8)
    sampler = identity_pair_sampler(faces, 8, 6, seed=1)
    for step in range(4):
        images, w = sampler(step)
        level = ((images[:, 0, 0, 0] + 1) / 2 * 255).round()
        person, photo = level // 60, level % 60
        assert w is None and images.shape == (6, 3, 8, 8)
        assert torch.equal(person[0::2], person[1::2])
        # another photo of the person, unless the person has one only (person 2)
        assert ((photo[0::2] != photo[1::2]) | (person[0::2] == 2)).all()
        assert torch.equal(images, sampler(step)[0])
        # the partner is a uniform draw over the person's other photos: the same draw as picking from the
        # explicit list of the others with the step's generator (the sampler skips j by position instead)
        from facedis_aug.data.stream import step_indices

        gen = torch.Generator().manual_seed(1 * 1_000_003 + step)
        want = []
        for j in step_indices(len(faces), 3, 1, step).tolist():
            others = [k for k, t in enumerate(faces.targets) if t == faces.targets[j] and k != j]
            want += [j, others[int(torch.randint(len(others), (1,), generator=gen))] if others else j]
        assert torch.equal(images, torch.stack([faces[k][0] for k in want]) * 2 - 1)


@pytest.mark.parametrize("mutual", [True, False])
def test_mutual_switch_changes_what_is_computed(mutual):
    torch.manual_seed(0)
    cfg = _cfg(mutual=mutual, mutual_eps=0.3)
    model = Decomposer(cfg)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    out = decomposition_loss(cfg, model, Renderer(32), x)
    out.total.backward()
    # (its perceptual head is idle here: no VGG weights in this test)
    grads = [p.grad for m in (model.net_mutual_conf.trunk, model.net_mutual_conf.up) for p in m.parameters()]
    if mutual:
        assert out.terms["total"] == pytest.approx(0.7 * out.terms["recon"] + 0.3 * out.terms["mutual_recon"], rel=1e-5)
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    else:
        assert "mutual_recon" not in out.terms and out.terms["total"] == pytest.approx(out.terms["recon"])
        assert all(g is None for g in grads)


def test_pitch_gauge_pins_the_batch_mean_pitch():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    for weight in (2.0, 0.0):
        cfg = _cfg(mutual=False, pitch_gauge=weight, zero_init_heads=False)
        torch.manual_seed(3)
        model = Decomposer(cfg)
        out = decomposition_loss(cfg, model, Renderer(32), x)
        mean_pitch = float(out.decomposition.view[:, 0].detach().mean())
        assert abs(mean_pitch) > 0.1  # a random start is tilted
        if weight:
            assert out.terms["pitch_gauge"] == pytest.approx(weight * (mean_pitch / 10.0) ** 2, rel=1e-5)
            assert out.terms["total"] == pytest.approx(out.terms["recon"] + out.terms["pitch_gauge"], rel=1e-5)
        else:
            assert "pitch_gauge" not in out.terms and out.terms["total"] == pytest.approx(out.terms["recon"])


def test_light_gauge_pins_the_batch_mean_light_elevation():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    for weight in (0.5, 0.0):
        cfg = _cfg(mutual=False, pitch_gauge=0.0, light_gauge=weight, zero_init_heads=False)
        torch.manual_seed(3)
        model = Decomposer(cfg)
        out = decomposition_loss(cfg, model, Renderer(32), x)
        mean_dy = float(out.decomposition.light[:, 7].detach().mean())
        assert abs(mean_dy) > 1e-3  # a random start has a light elevation
        if weight:
            assert out.terms["light_gauge"] == pytest.approx(weight * (mean_dy / 0.1) ** 2, rel=1e-5)
            assert out.terms["total"] == pytest.approx(out.terms["recon"] + out.terms["light_gauge"], rel=1e-5)
        else:
            assert "light_gauge" not in out.terms and out.terms["total"] == pytest.approx(out.terms["recon"])


@pytest.mark.parametrize("layers", [True, False])
def test_mutual_branch_renders_the_partners_albedo_and_depth(layers):
    """L~_recon = C~(I, I')^T |I - R(view, light, albedo', depth')|: recomputed here by hand. Layered:
    the partner's albedo and depth with the image's own opacity and background."""
    torch.manual_seed(0)
    cfg = _cfg(mutual=True, layers=layers)
    model, r = Decomposer(cfg), Renderer(32)
    with torch.no_grad():  # at init albedo and depth hardly depend on the input; make them differ
        model.net_albedo.net[-1].weight.mul_(30.0)
        model.net_depth.net[-1].weight.mul_(30.0)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    out = decomposition_loss(cfg, model, r, x)
    d = model(x)
    idx = [3, 0, 1, 2]  # partner of image i is image i - 1
    assert (d.albedo[idx] - d.albedo).abs().max() > 0.1
    conf, _ = model.mutual_confidence(x, x[idx])
    unsaturated = x.abs().amax(1) < cfg.saturated

    def render(albedo, depth, flip):
        if flip:
            albedo, depth = albedo.flip(3), depth.flip(2)
        if layers:
            alpha = d.alpha.flip(2) if flip else d.alpha
            return r.reconstruct_layered(albedo, depth, alpha, d.light, d.view, d.background)
        return r.reconstruct(albedo, depth, d.light, d.view)

    direct, flipped = render(d.albedo[idx], d.depth[idx], False), render(d.albedo[idx], d.depth[idx], True)
    mask = unsaturated if layers else direct.mask & flipped.mask & unsaturated
    assert out.terms["mutual_l1"] == pytest.approx(photometric_l1(direct.image, x, conf[:, :1], mask).item(), rel=1e-5)
    assert out.terms["mutual_l1_flip"] == pytest.approx(photometric_l1(flipped.image, x, conf[:, 1:], mask).item(), rel=1e-5)
    # without the swap the images differ, and the value by far more than the tolerance above
    own = render(d.albedo, d.depth, False)
    assert (own.image - direct.image).abs().max() > 0.1
    no_swap = photometric_l1(own.image, x, conf[:, :1], mask).item()
    assert abs(no_swap - out.terms["mutual_l1"]) > 1e-4 * abs(no_swap)


def test_saturated_target_pixels_are_left_out():
    torch.manual_seed(0)
    cfg = _cfg(mutual=False)
    model, r = Decomposer(cfg), Renderer(32)
    x = torch.rand(4, 3, 32, 32) * 1.6 - 0.8
    base = decomposition_loss(cfg, model, r, x).terms
    y = x.clone()
    y[:, :, :, :8] = -1.0  # a clamped band: whatever the model draws there must not count
    out = decomposition_loss(cfg, model, r, y).terms
    assert out["valid"] == pytest.approx(base["valid"] * 0.75, abs=1e-6)
    # the same band at another value (not saturated) does count
    z = x.clone()
    z[:, :, :, :8] = -0.5
    assert decomposition_loss(cfg, model, r, z).terms["valid"] == pytest.approx(base["valid"], abs=1e-6)


def test_perceptual_loss_from_local_file_only(tmp_path, capsys):
    missing = PerceptualLoss(str(tmp_path / "vgg16.safetensors"))
    line = capsys.readouterr().out.strip()
    assert not missing.available and line.count("\n") == 0 and "perceptual loss skipped" in line and "never downloaded" in line
    torch.manual_seed(0)
    vgg = vgg16_relu3_3()
    save_safetensors(tmp_path / "vgg16.safetensors", {f"features.{k}": v for k, v in vgg.state_dict().items()})
    loss = PerceptualLoss(str(tmp_path / "vgg16.safetensors"))
    assert loss.available
    cfg = _cfg(perceptual_weight=1.0, mutual=False)
    model = Decomposer(cfg)
    out = decomposition_loss(cfg, model, Renderer(32), torch.rand(4, 3, 32, 32) * 2 - 1, loss)
    assert math.isfinite(out.terms["perc"]) and math.isfinite(out.terms["perc_flip"])
    out.total.backward()
    assert model.net_conf.perc_head[0].weight.grad.abs().sum() > 0  # the 8x8 confidence is trained
    # same image, zero feature difference: loss is log(sigma) only
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    sigma = torch.full((2, 1, 8, 8), 2.0)
    assert loss(x, x, sigma, torch.ones(2, 32, 32, dtype=torch.bool)).item() == pytest.approx(math.log(2.0), rel=1e-4)


def test_yaw_augmentation_fits_planted_direction_with_momentum():
    cfg = _cfg(aug_buffer=60, aug_momentum=0.995)
    aug = YawAugmentation(cfg, D)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(D, generator=g), torch.randn(D, generator=g)
    w = torch.randn(D, generator=g)[None] + torch.randn(50, D, generator=g)
    aug.record(w[:6], (w[:6] @ a) * 10.0 + 3.0)
    assert not aug.update() and aug.v is None  # N = 6 <= d: no fit yet
    aug.record(w[6:], (w[6:] @ a) * 10.0 + 3.0)  # the offset does not matter: pairs are differences
    assert aug.update() and aug.updates == 1
    torch.testing.assert_close(aug.v, a / a.norm(), atol=1e-5, rtol=0)
    assert aug.sigma == pytest.approx(float((aug.w @ aug.v).std()), rel=1e-6)
    v1 = aug.v.clone()
    w2 = torch.randn(60, D, generator=g)
    aug.record(w2, w2 @ b)  # buffer (60) now holds only the new pairs
    assert aug.w.shape == (60, D)
    aug.update()
    blend = 0.995 * v1 + 0.005 * b / b.norm()
    torch.testing.assert_close(aug.v, blend / blend.norm(), atol=1e-5, rtol=0)
    s_w, s = aug.edit(w2[:5], torch.Generator().manual_seed(1))
    assert (s.abs() <= cfg.aug_range).all()
    torch.testing.assert_close(s_w @ aug.v, s * aug.sigma, atol=1e-4, rtol=1e-4)  # Eq. 4
    with pytest.raises(ValueError, match="aug_buffer"):
        YawAugmentation(_cfg(aug_buffer=D), D)


@pytest.mark.parametrize("yaw_aug", [True, False])
def test_yaw_aug_switch_in_training(tmp_path, yaw_aug):
    gen = ToyGenerator()
    cfg = _cfg(yaw_aug=yaw_aug, iterations=22, aug_buffer=16, aug_share=0.5, mutual=False)
    train_decomposer(cfg, _sampler(gen), tmp_path, seed=0, generator=gen)
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in stats] == list(range(22))
    if yaw_aug:
        updated = [r["step"] for r in stats if r["v_yaw_updated"]]
        assert updated == [10, 20]  # buffer > d from step 2; refreshed only on multiples of aug_every
        assert all(r["n_aug"] == 0 for r in stats if r["step"] < 10)
        assert all(r["n_aug"] == 2 for r in stats if r["step"] >= 10)
        assert len(gen.calls) == 12 and all(c.shape == (2, D) for c in gen.calls)
        assert stats[-1]["v_yaw_updates"] == 2 and stats[-1]["sigma_w"] > 0
    else:
        assert not gen.calls and all(r["n_aug"] == 0 for r in stats) and "v_yaw_updates" not in stats[-1]


def test_identity_pairs_make_each_odd_sample_the_yaw_edit_of_its_even_neighbour(tmp_path):
    gen = ToyGenerator()
    cfg = _cfg(iterations=12, aug_buffer=16, identity_pairs=True)
    train_decomposer(cfg, _sampler(gen), tmp_path, seed=0, generator=gen)
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [r["n_aug"] for r in stats] == [0] * 10 + [2, 2]
    assert len(gen.calls) == 2

    def along_one_direction(move: torch.Tensor) -> bool:
        return float(torch.nn.functional.cosine_similarity(move[0], move[1], dim=0).abs()) > 0.9999

    for step, call in zip((10, 11), gen.calls):
        w = _sampler(gen)(step)[1]
        # Eq. 4 moves w only along v_yaw: the edits start from the even samples, not from the last two (which
        # the unpaired augmentation edits)
        assert along_one_direction(call - w[0::2]) and not along_one_direction(call - w[2:])


def test_alternating_sampler_gives_each_source_its_own_steps_in_order():
    asked = {"even": [], "odd": []}

    def source(name):
        def sample(step):
            asked[name].append(step)
            return torch.full((1, 3, 2, 2), float(step)), (None if name == "even" else torch.zeros(1, D))
        return sample

    sampler = alternating_sampler(source("even"), source("odd"))
    got = [sampler(step) for step in range(7)]
    assert asked == {"even": [0, 1, 2, 3], "odd": [0, 1, 2]}
    assert [g[1] is None for g in got] == [True, False] * 3 + [True]
    assert [float(g[0][0, 0, 0, 0]) for g in got] == [0, 0, 1, 1, 2, 2, 3]


def test_yaw_aug_refreshes_on_schedule_when_only_odd_steps_carry_w(tmp_path):
    """decompose.source = mixed: data batches (no w) on even steps, G's on odd ones. v_yaw is still
    refreshed every aug_every steps of the run (the old step % aug_every test never fired on odd steps)."""
    gen = ToyGenerator()
    mixed = alternating_sampler(_sampler(gen, with_w=False), _sampler(gen))
    cfg = _cfg(iterations=44, aug_buffer=16, aug_share=0.5, mutual=False)
    train_decomposer(cfg, mixed, tmp_path, seed=0, generator=gen)
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    updated = [r["step"] for r in stats if r.get("v_yaw_updated")]
    assert updated == [11, 21, 31, 41]  # the try at step 1 had 4 pairs <= d = 6; then every 10 steps
    assert all(r["n_aug"] == 0 for r in stats if r["step"] % 2 == 0 or r["step"] < 11)
    assert all(r["n_aug"] == 2 for r in stats if r["step"] % 2 == 1 and r["step"] >= 11)


def test_yaw_aug_needs_w(tmp_path, capsys):
    gen = ToyGenerator()
    train_decomposer(_cfg(iterations=3, mutual=False), _sampler(gen, with_w=False), tmp_path, seed=0, generator=gen)
    assert not gen.calls and "yaw augmentation off" in capsys.readouterr().out


def test_losses_decrease_on_a_tiny_problem(tmp_path):
    torch.manual_seed(0)
    # a fixed batch rendered by the image model itself: smooth depth, two-tone albedo, some yaw
    r = Renderer(32)
    v, u = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    depth = (1.0 - 0.08 * torch.exp(-(u**2 + v**2) * 3)).expand(4, 32, 32)
    albedo = torch.stack([0.6 * (u > 0) - 0.3, 0.2 * v, -0.2 + 0 * u])[None].expand(4, -1, -1, -1)
    light = torch.tensor([[0.4, 0.4, 0.4, 0.6, 0.6, 0.6, 0.2, -0.1]]).expand(4, 8)
    view = torch.zeros(4, 6)
    view[:, 1] = torch.tensor([-30.0, -10.0, 10.0, 30.0])
    images = r.reconstruct(albedo, depth, light, view).image.clamp(-1, 1).detach()
    cfg = _cfg(iterations=30, lr=2e-3, yaw_aug=False)
    train_decomposer(cfg, lambda step: (images, None), tmp_path, seed=0)
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    for key in ("total", "l1", "mutual_l1"):
        first = sum(s[key] for s in stats[:5]) / 5
        last = sum(s[key] for s in stats[-5:]) / 5
        assert all(math.isfinite(s[key]) for s in stats)
        assert last < first - 0.05, (key, first, last)


def test_checkpoint_resume_repeats_an_uninterrupted_run(tmp_path):
    gen = ToyGenerator()
    base = dict(aug_buffer=8, aug_every=2, aug_share=0.5, checkpoint_every=2)
    full = train_decomposer(_cfg(iterations=6, **base), _sampler(gen), tmp_path / "a", seed=3, generator=gen)
    # interrupted after 4 steps, then resumed by a second call with the full length
    train_decomposer(_cfg(iterations=4, **base), _sampler(gen), tmp_path / "b", seed=3, generator=gen)
    resumed = train_decomposer(_cfg(iterations=6, **base), _sampler(gen), tmp_path / "b", seed=3, generator=gen)
    a, b = load_decomposer(full).state_dict(), load_decomposer(resumed).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    stats_b = [json.loads(line)["step"] for line in (tmp_path / "b" / "stats.jsonl").read_text().splitlines()]
    assert stats_b == list(range(6))  # no step repeated or skipped
    n_calls = len(gen.calls)
    train_decomposer(_cfg(iterations=6, **base), _sampler(gen), tmp_path / "b", seed=3, generator=gen)
    assert len(gen.calls) == n_calls  # a finished run is not trained again


def test_surface_warmup_is_the_depth_run_then_the_head_surface_from_its_weights(tmp_path):
    gen = ToyGenerator()
    head = dict(yaw_aug=False, surface="head", checkpoint_every=2)

    def sampler_from(offset):  # the one-run schedule's steps 3.. see the two-run protocol's steps 0.. of part two
        s = _sampler(gen)
        return lambda step: s(step + offset)

    # two runs: 3 steps on the depth surface, then 3 on the head surface from those weights (fresh Adam)
    depth = train_decomposer(_cfg(iterations=3, yaw_aug=False), _sampler(gen), tmp_path / "d", seed=5)
    torch.manual_seed(5)
    two = train_decomposer(_cfg(iterations=3, **head), sampler_from(3), tmp_path / "h", seed=5, init=depth)
    # one run with the warm-up, and the same run interrupted after 2 and 4 steps (either side of the switch)
    one = train_decomposer(_cfg(iterations=6, surface_warmup=3, **head), _sampler(gen), tmp_path / "one", seed=5)
    for n in (2, 4, 6):
        cut = train_decomposer(_cfg(iterations=n, surface_warmup=3, **head), _sampler(gen), tmp_path / "cut", seed=5)
    assert load_decomposer(one).cfg.surface == "head" and load_decomposer(cut).cfg.surface == "head"
    a, b, c = (load_decomposer(p).state_dict() for p in (two, one, cut))
    changed = False
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5)
        torch.testing.assert_close(c[k], b[k], rtol=0, atol=1e-6)
        changed |= not torch.equal(b[k], load_decomposer(depth).state_dict()[k])
    assert changed  # the head phase trained
    with pytest.raises(ValueError, match="surface_warmup"):
        _cfg(surface_warmup=3)  # a warm-up needs the head surface to end on


def test_outputs_snapshot_and_weights(tmp_path):
    gen = ToyGenerator()
    cfg = _cfg(iterations=2, snapshot_every=1, yaw_aug=False)
    path = train_decomposer(cfg, _sampler(gen), tmp_path, seed=0)
    assert path == tmp_path / "decomposer.safetensors" and load_decomposer(path).cfg == cfg.network()
    snaps = sorted((tmp_path / "snapshots").glob("*.png"))
    assert [p.name for p in snaps] == ["decompose_000000.png", "decompose_000001.png"]
    w, h = Image.open(snaps[0]).size
    pad = 2
    # 4 faces x (input, recon, albedo, shaded depth, opacity, background, relit + 7 yaws)
    assert (w, h) == (14 * (32 + pad) + pad, 4 * (32 + pad) + pad)
    with pytest.raises(ValueError, match="batch"):
        train_decomposer(_cfg(iterations=3, batch=8), _sampler(gen), tmp_path / "c", seed=0)


def test_init_starts_a_fresh_run_from_another_decomposer(tmp_path):
    gen = ToyGenerator()
    first = train_decomposer(_cfg(iterations=2, yaw_aug=False), _sampler(gen), tmp_path / "a", seed=0)
    # another image model (the harness's geometry), same networks: a 0-step run keeps the weights as they are
    again = train_decomposer(_cfg(iterations=0, yaw_aug=False, face_depth=0.97, shape_prior=0.05), _sampler(gen),
                             tmp_path / "b", seed=1, init=first)
    a, b = load_decomposer(first), load_decomposer(again)
    assert b.cfg.face_depth == 0.97
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0)
    fresh = train_decomposer(_cfg(iterations=0, yaw_aug=False), _sampler(gen), tmp_path / "c", seed=1)
    assert not torch.equal(load_decomposer(fresh).state_dict()["net_albedo.net.0.weight"], a.state_dict()["net_albedo.net.0.weight"])
    with pytest.raises(ValueError, match="does not fit"):
        train_decomposer(_cfg(iterations=1, yaw_aug=False, channels=16), _sampler(gen), tmp_path / "d", seed=0, init=first)


def test_stream_sampler_is_a_function_of_the_step():
    from facedis_aug.decompose.sources import stream_sampler

    opened = []

    def make_stream(start):
        opened.append(start)
        return (torch.full((2, 3, 8, 8), float(t) / 100) for t in range(start, 10**6))

    s = stream_sampler(make_stream, 16)
    a = [s(t)[0] for t in (0, 1, 2)]
    assert s(7)[0][0, 0, 0, 0].item() == pytest.approx(0.07)  # a jump (resume) reopens the stream there
    assert opened == [0, 7] and a[2].shape == (2, 3, 16, 16) and a[2][0, 0, 0, 0].item() == pytest.approx(0.02)
    assert s(1)[1] is None


def test_yaw_aug_waits_for_aug_start_and_seeds_v_from_a_full_buffer(tmp_path):
    """aug_start: no v_yaw fit (so no augmented samples) before that step; the first fit then uses the
    pairs recorded meanwhile, and refreshes follow every aug_every steps."""
    gen = ToyGenerator()
    cfg = _cfg(iterations=40, aug_buffer=16, aug_share=0.5, mutual=False, aug_start=25)
    train_decomposer(cfg, _sampler(gen), tmp_path, seed=0, generator=gen)
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    updated = [r["step"] for r in stats if r.get("v_yaw_updated")]
    assert updated == [25, 35]
    assert all(r["n_aug"] == 0 for r in stats if r["step"] < 25)
    assert all(r["n_aug"] == 2 for r in stats if r["step"] >= 25)
    with pytest.raises(ValueError, match="aug_start"):
        _cfg(aug_start=-1)


def test_restarts_go_on_from_the_start_with_the_lowest_score(tmp_path, monkeypatch):
    import facedis_aug.decompose.train as T

    gen = ToyGenerator()
    cfg = _cfg(iterations=5, restarts=3, restart_steps=2, yaw_aug=False)
    scores = iter([0.5, 0.1, 0.3])  # start 2 of 3 (k = 1) is the best
    monkeypatch.setattr(T, "start_score", lambda *a, **k: next(scores))
    final = train_decomposer(cfg, _sampler(gen), tmp_path / "r", seed=4)
    rec = json.loads((tmp_path / "r" / "restarts.json").read_text())
    assert rec["chosen"] == 1 and rec["scores"] == [0.5, 0.1, 0.3] and rec["steps"] == 2
    # the same as training start k = 1 by hand (its seed and shifted data) and going on from its checkpoint
    shifted = _sampler(gen)
    one = train_decomposer(_cfg(iterations=2, yaw_aug=False, checkpoint_every=2, snapshot_every=2),
                           lambda step: shifted(step + T.RESTART_STEP), tmp_path / "m", seed=4 + T.RESTART_SEED)
    assert one.is_file()
    by_hand = train_decomposer(_cfg(iterations=5, yaw_aug=False), _sampler(gen), tmp_path / "m", seed=4)
    plain = train_decomposer(_cfg(iterations=5, yaw_aug=False), _sampler(gen), tmp_path / "p", seed=4)
    a, b, c = (load_decomposer(p).state_dict() for p in (final, by_hand, plain))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # not start 1 (the plain run)
    steps = [json.loads(line)["step"] for line in (tmp_path / "r" / "stats.jsonl").read_text().splitlines()]
    assert steps == list(range(5))


def test_start_score_is_lower_for_a_trained_start_and_leaves_the_rng_alone(tmp_path):
    from facedis_aug.decompose.model import Decomposer
    from facedis_aug.decompose.train import start_score

    gen = ToyGenerator()
    cfg = _cfg(iterations=40, yaw_aug=False, view_cycle=0.1)
    trained = load_decomposer(train_decomposer(cfg, _sampler(gen), tmp_path, seed=0))
    torch.manual_seed(1)
    fresh = Decomposer(cfg)
    state = torch.get_rng_state()
    s_fresh, s_trained = start_score(cfg, fresh, _sampler(gen)), start_score(cfg, trained, _sampler(gen))
    assert torch.equal(torch.get_rng_state(), state)
    assert s_trained < s_fresh and s_fresh == start_score(cfg, fresh, _sampler(gen))
    with pytest.raises(ValueError, match="restarts"):
        _cfg(restarts=0)


def test_lr_factor_falls_linearly_over_the_last_share_of_the_steps():
    from facedis_aug.decompose.train import lr_factor

    assert [lr_factor(s, 10, 0.0) for s in range(10)] == [1.0] * 10
    # the last round(0.4 * 10) = 4 steps: 4/4, 3/4, 2/4, 1/4
    assert [lr_factor(s, 10, 0.4) for s in range(10)] == pytest.approx([1.0] * 6 + [1.0, 0.75, 0.5, 0.25])
    assert [lr_factor(s, 4, 1.0) for s in range(4)] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    with pytest.raises(ValueError, match="lr_decay"):
        _cfg(lr_decay=1.5)


def test_lr_decay_sets_each_steps_learning_rate_and_resumes_on_the_same_schedule(tmp_path, monkeypatch):
    from facedis_aug.decompose.train import lr_factor

    seen: list[float] = []
    step = torch.optim.Adam.step

    def record(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    gen = ToyGenerator()
    cfg = _cfg(iterations=6, lr=1e-3, lr_decay=0.5, yaw_aug=False, checkpoint_every=2)
    train_decomposer(cfg, _sampler(gen), tmp_path / "a", seed=1)
    want = [1e-3 * lr_factor(s, 6, 0.5) for s in range(6)]
    assert seen == pytest.approx(want) and want[-1] == pytest.approx(1e-3 / 3)
    # a run killed at step 4 (after its checkpoint of 4 steps) and resumed goes on at the schedule's steps 4 and 5
    seen.clear()
    plain = _sampler(gen)

    def dies_at_4(s):
        if s == 4:
            raise KeyboardInterrupt
        return plain(s)

    with pytest.raises(KeyboardInterrupt):
        train_decomposer(cfg, dies_at_4, tmp_path / "b", seed=1)
    seen.clear()
    train_decomposer(cfg, plain, tmp_path / "b", seed=1)
    assert seen == pytest.approx(want[4:])


def test_erase_random_fills_one_rectangle_per_chosen_image_with_its_mean_colour():
    from facedis_aug.decompose.losses import erase_random

    x = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = erase_random(x, 0.5, torch.Generator().manual_seed(1))
    changed = (out != x).any(1)  # [B, S, S]
    hit = changed.flatten(1).any(1)
    assert 20 <= int(hit.sum()) <= 44  # about half of 64
    for i in torch.nonzero(hit).flatten().tolist():
        rows, cols = changed[i].any(1), changed[i].any(0)
        h, w = int(rows.sum()), int(cols.sum())
        assert 4 <= h <= 8 and 4 <= w <= 8  # a quarter to a half of the side
        assert changed[i].sum() == h * w  # one filled rectangle
        torch.testing.assert_close(out[i][:, changed[i]], x[i].mean((1, 2))[:, None].expand(3, h * w))
    assert torch.equal(erase_random(x, 0.0), x)
    with pytest.raises(ValueError, match="view_erase"):
        _cfg(view_erase=2.0)


def test_view_erase_feeds_only_the_view_head_an_erased_image():
    torch.manual_seed(0)
    model = Decomposer(_cfg(zero_init_heads=False)).eval()  # a zero-initialised view head would read nothing
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    erased = x.clone()
    erased[:, :, 8:20, 8:20] = 0.0
    a, b = model(x), model(x, view_input=erased)
    torch.testing.assert_close(a.albedo, b.albedo)
    torch.testing.assert_close(a.light, b.light)
    torch.testing.assert_close(b.view, model(erased).view)
    assert not torch.allclose(a.view, b.view)  # the view head did read the erased image
    with pytest.raises(ValueError, match="view_input"):
        model(x, view_input=x[:, :, :16])
