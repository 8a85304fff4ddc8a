"""Decomposer networks: shapes, output ranges and post-processing, mutual confidence, save/load."""
from __future__ import annotations

import pytest
import torch

from facedis_aug.decompose import DecomposeConfig, Decomposer, load_decomposer, save_decomposer
from facedis_aug.ops import save_safetensors
from facedis_aug.ops.dataconf import ConfigError, from_dict

TINY = dict(channels=8, bottleneck=16, head_channels=4, conf_channels=4, conf_bottleneck=8)


def _tiny(size: int = 32, **kw) -> DecomposeConfig:
    return DecomposeConfig(image_size=size, **{**TINY, **kw})


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_ranges(size):
    torch.manual_seed(0)
    cfg = _tiny(size)
    model = Decomposer(cfg)
    x = torch.rand(3, 3, size, size) * 2 - 1
    d = model(x)
    assert d.view.shape == (3, 6) and d.light.shape == (3, 8)
    assert d.albedo.shape == (3, 3, size, size) and d.depth.shape == (3, size, size)
    assert d.conf.shape == (3, 2, size, size) and d.conf_perc.shape == (3, 2, size // 4, size // 4)
    assert (d.conf > 0).all() and (d.conf_perc > 0).all()
    assert d.albedo.abs().max() <= 1
    lo = cfg.face_depth - cfg.shape_prior - cfg.depth_residual
    assert d.depth.min() >= lo - 1e-6 and d.depth.max() <= cfg.face_depth + cfg.depth_residual + 1e-6
    assert d.alpha.shape == (3, size, size) and ((d.alpha >= 0) & (d.alpha <= 1)).all()
    assert d.background.shape == (3, 3, size, size)
    assert (d.conf >= cfg.conf_floor).all() and (d.conf_perc >= cfg.conf_floor).all()
    assert (d.view[:, 5] == 0).all()  # no z translation
    assert ((d.light[:, :6] >= cfg.light_floor) & (d.light[:, :6] <= 1)).all()
    mc, mcp = model.mutual_confidence(x, x.roll(1, 0))
    assert mc.shape == (3, 2, size, size) and mcp.shape == (3, 2, size // 4, size // 4)


def test_view_scaling_reaches_profile_yaw():
    model = Decomposer(_tiny(pitch_range=30.0, roll_range=20.0))
    v = model.view_from_raw(torch.tensor([[1.0, 1.0, 1.0, 1.0, -1.0, 1.0]]))
    torch.testing.assert_close(v, torch.tensor([[30.0, 90.0, 20.0, 0.01, -0.01, 0.0]]))


def test_depth_post_processing_is_mean_centred_tanh_with_clamped_border():
    cfg = _tiny(shape_prior=0.0, layers=False)  # unsup3d's post-processing exactly
    model = Decomposer(cfg)
    torch.manual_seed(0)
    raw = torch.randn(2, 32, 32)
    d = model.depth_from_raw(raw)
    torch.testing.assert_close(model.depth_from_raw(raw + 3.0), d)  # only the shape matters, not the offset
    far = 0.7 * cfg.max_depth + 0.3 * cfg.min_depth
    assert torch.allclose(d[:, :, :1], torch.tensor(far)) and torch.allclose(d[:, :, -1:], torch.tensor(far))
    inner = torch.tanh(raw - raw.mean(dim=(1, 2), keepdim=True))
    expected = (1 + inner) / 2 * cfg.max_depth + (1 - inner) / 2 * cfg.min_depth
    torch.testing.assert_close(d[:, :, 1:-1], expected[:, :, 1:-1])
    assert (d[:, :, 1:-1] < far).any()  # the interior is not clamped


def test_shape_prior_is_a_convex_symmetric_cap_of_the_given_relief():
    cfg = _tiny(64, shape_prior=0.04, layers=False)
    d = Decomposer(cfg).depth_from_raw(torch.zeros(1, 64, 64))[0]
    torch.testing.assert_close(d, d.flip(1))  # left-right symmetric
    centre, corner = d[31:33, 31:33].mean(), d[2:6, 2:6].mean()
    assert centre < corner  # convex: the centre is nearer the camera
    # the cap stands out by about shape_prior (the tanh bends it slightly)
    assert 0.8 * 0.04 < float(corner - centre) < 1.05 * 0.04
    flat = Decomposer(_tiny(64, shape_prior=0.0, layers=False)).depth_from_raw(torch.zeros(1, 64, 64))[0]
    interior = flat[:, 2:-2]
    assert torch.allclose(interior, interior[0, 0].expand_as(interior))
    with pytest.raises(ValueError, match="shape_prior"):
        _tiny(shape_prior=0.2, layers=False)


def test_zero_init_heads_start_frontal_and_neutral():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    model = Decomposer(_tiny())
    d = model(x)
    assert (d.view == 0).all()
    mid = model.cfg.light_floor + (1 - model.cfg.light_floor) * 0.5  # the middle of [light_floor, 1]
    torch.testing.assert_close(d.light, torch.tensor([[mid] * 6 + [0.0, 0.0]]).expand(4, 8))
    torch.manual_seed(0)
    d = Decomposer(_tiny(zero_init_heads=False))(x)
    assert (d.view[:, :5] != 0).all()  # unsup3d's random start


def test_estimate_view_matches_forward_and_checks_shapes():
    torch.manual_seed(1)
    model = Decomposer(_tiny())
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    est = model.estimate_view(x)
    v = model(x).view
    torch.testing.assert_close(est["yaw"], v[:, 1])
    torch.testing.assert_close(est["pitch"], v[:, 0])
    torch.testing.assert_close(est["roll"], v[:, 2])
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"):
        model(torch.zeros(4, 3, 64, 64))
    with pytest.raises(ValueError):
        model.mutual_confidence(x, x[:, :1])


def test_widths_are_configurable():
    small = sum(p.numel() for p in Decomposer(_tiny(64)).parameters())
    big = sum(p.numel() for p in Decomposer(_tiny(64, channels=16, bottleneck=32)).parameters())
    assert small < big


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(2)
    cfg = _tiny(rot_range=80.0, mutual_eps=0.1)
    model = Decomposer(cfg).eval()
    path = save_decomposer(model, tmp_path / "decomposer.safetensors")
    loaded = load_decomposer(path)
    # the file keeps the network's own config; the stage's training settings stay in the recipe
    assert loaded.cfg == cfg.network() == model.cfg and loaded.cfg.rot_range == 80.0
    assert not hasattr(loaded.cfg, "mutual_eps")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = model(x), loaded(x)
    for name in ("view", "light", "albedo", "depth", "conf", "conf_perc"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)
    save_safetensors(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, metadata={"format": "something else"})
    with pytest.raises(ValueError, match="not a decomposer"):
        load_decomposer(tmp_path / "other.safetensors")


def test_a_file_from_before_the_shape_prior_loads_without_it(tmp_path):
    import json

    from facedis_aug.ops import load_safetensors

    model = Decomposer(_tiny(shape_prior=0.0, layers=False, symmetric=False, conf_floor=1e-7, light_floor=0.0,
                             saturated=1.0, light_frame="canonical")).eval()
    path = save_decomposer(model, tmp_path / "decomposer.safetensors")
    tensors, meta = load_safetensors(path)
    new_keys = ("shape_prior", "shape_prior_axes", "zero_init_heads", "pitch_gauge", "layers", "conf_floor", "light_floor",
                "saturated", "depth_residual", "face_depth", "alpha_prior_logit", "alpha_residual", "symmetric",
                "background_ring", "confidence", "light_frame")
    old = {k: v for k, v in meta["config"].items() if k not in new_keys}
    save_safetensors(tmp_path / "old.safetensors", tensors, metadata={"format": meta["format"], "config": old})
    loaded = load_decomposer(tmp_path / "old.safetensors")
    assert loaded.cfg.shape_prior == 0.0 and loaded.cfg.layers is False and loaded.cfg.symmetric is False, json.dumps(old)
    assert loaded.cfg.light_frame == "canonical"  # what old files were trained with
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(x).depth, model(x).depth, rtol=0, atol=0)


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="min_depth"):
        from_dict(DecomposeConfig, {"min_depth": 1.2, "max_depth": 1.1}, "decompose")
    with pytest.raises(ConfigError, match="rot_range"):
        from_dict(DecomposeConfig, {"rot_range": 120.0}, "decompose")
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(DecomposeConfig, {"yaw_range": 90.0}, "decompose")
    cfg = from_dict(DecomposeConfig, {"vgg_weights": "/x/vgg.pth", "mutual": False}, "decompose")
    assert cfg.vgg_weights == "/x/vgg.pth" and cfg.mutual is False and cfg.rot_range == 90.0


def test_layered_face_cannot_go_hollow_and_is_mirror_symmetric():
    cfg = _tiny(64)
    model = Decomposer(cfg)
    for raw in (torch.full((1, 64, 64), 50.0), torch.full((1, 64, 64), -50.0), torch.randn(1, 64, 64) * 9):
        # the worst the net can do: push the middle back and the outline forward
        d = model.depth_from_raw(raw)
        worst = model.depth_from_raw(torch.where(model.face_cap > 0.9, 50.0, -50.0)[None])
        for depth in (d, worst):
            centre, outline = depth[0, 32, 32], depth[0, 32, 52]  # column 52: just outside the 0.6 semi-axis
            assert centre < outline, (centre, outline)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    d = model(x)
    torch.testing.assert_close(d.albedo, d.albedo.flip(3))
    torch.testing.assert_close(d.depth, d.depth.flip(2))
    torch.testing.assert_close(d.alpha, d.alpha.flip(2))
    # the opacity is bounded by its prior: opaque in the middle, clear far outside, whatever the net says
    for raw in (torch.full((1, 64, 64), 50.0), torch.full((1, 64, 64), -50.0)):
        a = model.alpha_from_raw(raw)[0]
        assert a[32, 32] > 0.85 and a[0, 0] < 0.1


def test_background_layer_never_sees_the_face():
    cfg = _tiny(32)
    model = Decomposer(cfg)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = x.clone()
    inside = model.background_ring == 0
    y[:, :, inside] = torch.rand_like(y[:, :, inside])  # repaint everything but the ring
    torch.testing.assert_close(model.background_of(x), model.background_of(y))
    # a flat ring colour fills the whole layer with that colour
    flat = torch.full((1, 3, 32, 32), 0.3)
    torch.testing.assert_close(model.background_of(flat), flat)


def test_smooth_fill_known_answers():
    from facedis_aug.decompose.model import smooth_fill

    img = torch.zeros(1, 1, 16, 16)
    img[..., :, 8:] = 1.0  # left half 0, right half 1
    known = torch.ones(1, 1, 16, 16)
    known[..., 4:12, 4:12] = 0  # a hole across the edge
    out = smooth_fill(img * known, known)
    # known pixels far from the hole keep their value; the hole's left part is darker than its right
    assert out[0, 0, 0, 0] == pytest.approx(0.0, abs=1e-6) and out[0, 0, 15, 15] == pytest.approx(1.0, abs=1e-6)
    assert out[0, 0, 8, 5] < 0.5 < out[0, 0, 8, 10]
    assert out.min() >= 0 and out.max() <= 1


def test_single_mesh_model_has_no_layers():
    model = Decomposer(_tiny(layers=False))
    d = model(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert d.alpha is None and d.background is None
    assert not hasattr(model, "net_background")


def test_confidence_floor_and_fixed_confidence():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    d = Decomposer(_tiny(conf_floor=0.2))(x)
    assert d.conf.min() >= 0.2 and d.conf_perc.min() >= 0.2
    fixed = Decomposer(_tiny(confidence="fixed"))
    calls = []
    for net in (fixed.net_conf, fixed.net_mutual_conf):
        net.register_forward_hook(lambda *a: calls.append(1))
    d = fixed(x)
    mc, mc_perc = fixed.mutual_confidence(x, x.flip(0))
    assert (d.conf == 1).all() and (mc == 1).all() and (d.conf_perc == 1).all() and (mc_perc == 1).all()
    # the shapes a learned net gives, without running the nets whose output a fixed sigma throws away
    learned = Decomposer(_tiny(conf_floor=0.2))
    assert d.conf.shape == learned(x).conf.shape and d.conf_perc.shape == learned(x).conf_perc.shape
    assert mc_perc.shape == learned.mutual_confidence(x, x.flip(0))[1].shape and not calls
    # the mutual branch may keep a learned sigma (with the floor) while the direct one is fixed
    mixed = Decomposer(_tiny(confidence="fixed", mutual_confidence="learned", conf_floor=0.2))
    assert (mixed(x).conf == 1).all()
    m = mixed.mutual_confidence(x, x.flip(0))[0]
    assert m.min() >= 0.2 and not (m == 1).all()
    with pytest.raises(ValueError, match="mutual_confidence"):
        _tiny(mutual_confidence="sometimes")


def test_head_surface_starts_as_the_prior_ellipsoid_with_the_prior_silhouette(tmp_path):
    import math

    from facedis_aug.decompose import renderer_for

    cfg = _tiny(32, surface="head", surface_range=(120.0, 90.0), shape_prior_axes=(0.75, 0.95), shape_prior=0.066)
    model = Decomposer(cfg)
    r = renderer_for(cfg)
    assert r.surface == "head" and r.surface_range == (120.0, 90.0)
    radius = model.depth_from_raw(torch.zeros(1, 32, 32))[0]
    half = math.tan(math.radians(cfg.fov) / 2)
    lon, lat = r.head_angles(32, 32, radius)
    # the ellipsoid's semi-axes along the map: depth at the front, width at 90 degrees of longitude
    front = (lon.abs() < math.radians(5)) & (lat.abs() < math.radians(5))
    side = ((lon.abs() - math.pi / 2).abs() < math.radians(5)) & (lat.abs() < math.radians(5))
    assert torch.allclose(radius[front], torch.full_like(radius[front], 0.066), atol=2e-3)
    assert torch.allclose(radius[side], torch.full_like(radius[side], 0.75 * half), atol=2e-3)
    # the residual is bounded, so the head cannot go hollow
    big = model.depth_from_raw(torch.full((1, 32, 32), -50.0))[0]
    assert (big >= radius - cfg.depth_residual - 1e-6).all() and (big > 0).all()
    # rendered frontally at the initial opacity, the head covers the prior ellipse of the image
    alpha = model.alpha_from_raw(torch.zeros(1, 32, 32))
    out = r.render_layer(torch.zeros(1, 3, 32, 32), radius[None], alpha, torch.zeros(1, 6))
    v, u = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    rho = torch.sqrt((u / 0.75) ** 2 + (v / 0.95) ** 2)
    assert (out.alpha[0][rho < 0.8] > 0.5).float().mean() > 0.97
    assert (out.alpha[0][rho > 1.15] < 0.5).float().mean() > 0.97
    # the image model's choice travels with the file
    save_decomposer(model, tmp_path / "d.safetensors")
    loaded = load_decomposer(tmp_path / "d.safetensors")
    assert loaded.cfg.surface == "head" and tuple(loaded.cfg.surface_range) == (120.0, 90.0)
    with pytest.raises(ValueError, match="layers"):
        _tiny(surface="head", layers=False)


def test_grey_light_ties_the_colour_channels_and_rgb_keeps_them():
    raw = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)).tanh()
    grey = Decomposer(DecomposeConfig(image_size=32, channels=8, bottleneck=16, light_colour="grey")).light_from_raw(raw)
    rgb = Decomposer(DecomposeConfig(image_size=32, channels=8, bottleneck=16)).light_from_raw(raw)
    lo = DecomposeConfig().light_floor
    for t in (slice(0, 3), slice(3, 6)):  # ambient, diffuse
        expect = lo + (1 - lo) * (raw[:, t].mean(1, keepdim=True) / 2 + 0.5)
        torch.testing.assert_close(grey[:, t], expect.expand(-1, 3))
        torch.testing.assert_close(rgb[:, t], lo + (1 - lo) * (raw[:, t] / 2 + 0.5))
    torch.testing.assert_close(grey[:, 6:], raw[:, 6:])
    assert rgb[:, 0:3].std(1).min() > 0  # distinct channels


def test_files_with_the_full_stage_config_still_load(tmp_path):
    from facedis_aug.decompose.model import FORMAT
    from facedis_aug.ops import save_safetensors
    from facedis_aug.ops.dataconf import to_dict

    torch.manual_seed(3)
    cfg = _tiny(rot_range=70.0, mutual_eps=0.1, iterations=7)
    model = Decomposer(cfg).eval()
    # as save_decomposer wrote them before the network/training split
    path = tmp_path / "old.safetensors"
    save_safetensors(path, model.state_dict(), metadata={"format": FORMAT, "config": to_dict(cfg)})
    loaded = load_decomposer(path)
    assert loaded.cfg == cfg.network() and loaded.cfg.rot_range == 70.0
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(model(x).view, loaded(x).view)
