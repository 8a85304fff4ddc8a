"""The synthetic face world: shapes, determinism, conventions, pose distributions, maps, Dataset API."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from facedis_aug.data import world_geometry as geom
from facedis_aug.data.config import SyntheticConfig
from facedis_aug.data.synthetic import PART_NAMES, FaceParams, SyntheticFaces, SyntheticWorld

LABEL_SHAPES = {"identity": (), "yaw": (), "pitch": (), "roll": (), "tx": (), "ty": (), "tz": (),
                "ambient": (3,), "diffuse": (3,), "light_dir": (2,)}


def _zero_pose(p: FaceParams, **kw) -> FaceParams:
    z = torch.zeros(len(p))
    fields = dict(pitch=z, roll=z, tx=z, ty=z, tz=z)
    fields.update(kw)
    return dataclasses.replace(p, **fields)


# ------------------------------------------------------------------ geometry known answers
def test_cast_matches_per_ray_intersection_and_sphere_depth():
    """Tile-culled polynomial casting == direct per-ray intersection, for rotated ellipsoids."""
    g = torch.Generator().manual_seed(0)
    B, K, res = 2, 3, 24
    rad = 0.1 + 0.6 * torch.rand(B, K, 3, generator=g, dtype=torch.float64)
    rot = torch.linalg.qr(torch.randn(B, K, 3, 3, generator=g, dtype=torch.float64))[0]
    c = torch.cat([torch.rand(B, K, 2, generator=g, dtype=torch.float64) * 1.6 - 0.8,
                   9 + torch.rand(B, K, 1, generator=g, dtype=torch.float64)], -1)
    A = rot.transpose(-1, -2) / rad[..., None]
    t, k = geom.cast(A, c, rad, torch.ones(B, K, dtype=torch.bool), res, hair_fn=None)
    u, v = geom.pixel_grid(res, torch.float64)
    d = torch.stack([u * geom.TAN_HALF_FOV, v * geom.TAN_HALF_FOV, torch.ones_like(u)], -1)
    for b in range(B):
        ts = torch.stack([geom.ray_hit(A[b, j].expand(len(u), 3, 3), c[b, j].expand(len(u), 3), d)[0] for j in range(K)])
        tref, kref = ts.min(0)
        hit = torch.isfinite(tref)
        assert hit.sum() > 20  # the scene is actually visible
        assert torch.equal(torch.isfinite(t[b]), hit)
        torch.testing.assert_close(t[b][hit], tref[hit].float(), rtol=0, atol=1e-4)
        assert torch.equal(k[b][hit], kref[hit])
    # a unit sphere 10 in front of the camera: the central rays hit at depth ~9
    A1 = torch.eye(3, dtype=torch.float64).expand(1, 1, 3, 3)
    t1, _ = geom.cast(A1, torch.tensor([[[0.0, 0.0, 10.0]]], dtype=torch.float64), torch.ones(1, 1, 3, dtype=torch.float64),
                   torch.ones(1, 1, dtype=torch.bool), 16, hair_fn=None)
    u16, v16 = geom.pixel_grid(16, torch.float64)
    centre = (u16.abs() < 0.1) & (v16.abs() < 0.1)
    uu = torch.tensor([0.0625]) * geom.TAN_HALF_FOV  # |u| = |v| = 1/16 at the 4 central pixels
    r2 = 2 * uu**2
    expect = (10 - torch.sqrt(100 - 99 * (1 + r2))) / (1 + r2)  # |t d - c| = 1 with d = (su, sv, 1)
    torch.testing.assert_close(t1[0][centre], expect.float().expand(4), atol=1e-4, rtol=0)


def test_rotation_conventions():
    """Known rotations: +yaw sends the face (+z) to the image left (-x), +pitch up, +roll CCW."""
    f = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    d = torch.tensor([90.0], dtype=torch.float64)
    torch.testing.assert_close(geom.rot_yaw(d)[0] @ f, torch.tensor([-1.0, 0, 0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(geom.rot_pitch(d)[0] @ f, torch.tensor([0, 1.0, 0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(geom.rot_roll(d)[0] @ up, torch.tensor([-1.0, 0, 0], dtype=torch.float64), atol=1e-12, rtol=0)
    for R in (geom.rot_yaw, geom.rot_pitch, geom.rot_roll):
        M = R(torch.tensor([37.0], dtype=torch.float64))[0]
        torch.testing.assert_close(M @ M.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)


# ------------------------------------------------------------------ rendering
def test_shapes_ranges_and_labels():
    ds = SyntheticFaces(6, resolution=32, seed=3)
    x, lab = ds.batch([0, 2, 5])
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0.05
    assert set(lab) == set(LABEL_SHAPES)
    for k, shp in LABEL_SHAPES.items():
        assert lab[k].shape == (3, *shp), k
    assert lab["identity"].dtype == torch.long and ((0 <= lab["identity"]) & (lab["identity"] < 1000)).all()
    assert (lab["ambient"] > 0).all() and (lab["diffuse"] > 0).all()
    img, l1 = ds[2]
    assert img.shape == (3, 32, 32) and l1["yaw"].shape == ()
    assert float(l1["yaw"]) == float(lab["yaw"][1])


def test_same_image_alone_or_in_batch_and_across_instances():
    w = SyntheticWorld(32, seed=11)
    alone = w.render(w.sample_params([7]), with_maps=True)
    batch = w.render(w.sample_params([3, 7, 1000, 12]), with_maps=True)
    other = SyntheticWorld(32, seed=11).render(SyntheticWorld(32, seed=11).sample_params([7]))
    for k in ("image", "depth", "albedo"):
        torch.testing.assert_close(alone[k][0], batch[k][1], atol=1e-5, rtol=0)
    assert torch.equal(alone["mask"][0], batch["mask"][1])
    torch.testing.assert_close(alone["image"], other["image"], atol=0, rtol=0)
    p1, p2 = w.sample_params([7]), w.sample_params([3, 7])
    for f in dataclasses.fields(FaceParams):
        assert torch.equal(getattr(p1, f.name)[0], getattr(p2, f.name)[1]), f.name
    # a different seed is a different world
    assert (SyntheticWorld(32, seed=12).render(SyntheticWorld(32, seed=12).sample_params([7]))["image"] - alone["image"]).abs().mean() > 0.02


def test_yaw_sign_nose_moves_to_image_left_for_positive_yaw():
    w = SyntheticWorld(48, seed=0)
    p = _zero_pose(w.identity_params(5, [60.0, -60.0, 0.0]))
    out = w.render(p, with_view_maps=True)
    lm = w.landmarks(p)
    centre = (48 - 1) / 2
    tip = out["view_part"] == PART_NAMES.index("nose_tip")
    cols = torch.arange(48).float()
    mean_col = [(tip[i].float() * cols).sum() / tip[i].sum() for i in range(3)]
    assert all(tip[i].sum() > 0 for i in range(3))
    assert mean_col[0] < centre - 8 and lm["nose_tip"][0, 0] < centre - 8  # +60: left of the head centre
    assert mean_col[1] > centre + 8 and lm["nose_tip"][1, 0] > centre + 8  # -60: right
    assert abs(mean_col[2] - centre) < 1.5 and abs(float(lm["nose_tip"][2, 0]) - centre) < 0.5
    # rendered nose tip agrees with the projected landmark
    assert abs(float(mean_col[0] - lm["nose_tip"][0, 0])) < 4
    # +pitch lifts the nose tip, +roll (CCW) moves the top-of-head landmark line: eyes tilt
    q = _zero_pose(w.identity_params(5, [0.0, 0.0]), pitch=torch.tensor([15.0, -15.0]))
    assert w.landmarks(q)["nose_tip"][0, 1] < w.landmarks(q)["nose_tip"][1, 1]
    r = _zero_pose(w.identity_params(5, [0.0]), roll=torch.tensor([10.0]))
    lr = w.landmarks(r)
    assert lr["eye_left"][0, 1] > lr["eye_right"][0, 1]  # CCW: the image-left eye goes down


def test_translation_and_light_conventions():
    w = SyntheticWorld(32, seed=0)
    p = _zero_pose(w.identity_params(2, [0.0]), tx=torch.tensor([0.25]), ty=torch.tensor([-0.25]))
    head = w.landmarks(p)["head"][0]
    torch.testing.assert_close(head, torch.tensor([(0.25 + 1) * 16 - 0.5, (-0.25 + 1) * 16 - 0.5]), atol=1e-4, rtol=0)
    # light from the image right (lx > 0) lights the right half of the face more
    base = _zero_pose(w.identity_params(2, [0.0, 0.0]))
    amb = torch.full((2, 3), 0.1)
    lit = dataclasses.replace(base, ambient=amb, light_dir=torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    out = w.render(lit, with_view_maps=True)
    m = out["view_mask"]
    left, right = torch.zeros_like(m), torch.zeros_like(m)
    left[:, :, :16], right[:, :, 16:] = True, True
    lum = out["image"].mean(1)
    mean = lambda sel: (lum * sel).sum((1, 2)) / sel.sum((1, 2))  # noqa: E731
    assert mean(m & right)[0] > mean(m & left)[0] + 0.05
    assert mean(m & left)[1] > mean(m & right)[1] + 0.05


def test_canonical_maps():
    w = SyntheticWorld(32, seed=4)
    p = w.identity_params(9, [-70.0, 0.0, 45.0], index=3)
    out = w.render(p, with_maps=True)
    assert out["depth"].shape == (3, 64, 64) and out["albedo"].shape == (3, 3, 64, 64) and out["mask"].shape == (3, 64, 64)
    assert out["mask"].dtype == torch.bool and out["albedo"].min() >= 0 and out["albedo"].max() <= 1
    # canonical = frontal and unlit: the same for every pose of one identity
    torch.testing.assert_close(out["depth"][0], out["depth"][1], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["albedo"][0], out["albedo"][2], atol=1e-5, rtol=0)
    m, d = out["mask"][1], out["depth"][1]
    assert 0.1 < m.float().mean() < 0.5
    ys, xs = torch.nonzero(m, as_tuple=True)
    assert abs(xs.float().mean() - 31.5) < 3  # centred, roughly symmetric face
    assert m[32, 32] and not m[0, 0] and not m[63, 0]
    # the face is in front of the background; the nose is its nearest part (~9.0 from the camera)
    assert d[m].max() < d[~m].max()
    assert d[m].min() == d[20:44, 24:40].min() and 8.6 < float(d[m].min()) < 9.4
    # mask excludes hair: no mask pixel where the unlit colour is the hair colour at the top
    assert not m[:4].any()


def test_pose_distributions():
    w = SyntheticWorld(16, seed=5)
    idx = torch.arange(4000)
    casia = w.sample_params(idx, pose="casia", frontal_share=0.85, frontal_yaw=30.0, yaw_range=90.0)
    share = (casia.yaw.abs() < 30).float().mean()
    assert abs(share - 0.85) < 0.03  # binomial sd ~0.006
    assert casia.yaw.abs().max() <= 90 and (casia.yaw.abs() > 60).sum() > 10  # a thin tail out to 90
    assert abs(casia.yaw.mean()) < 3
    c2 = w.sample_params(idx, pose="casia", frontal_share=0.5, frontal_yaw=20.0, yaw_range=70.0)
    assert abs((c2.yaw.abs() < 20).float().mean() - 0.5) < 0.04 and c2.yaw.abs().max() <= 70
    uni = w.sample_params(idx, pose="uniform", yaw_range=45.0)
    assert uni.yaw.abs().max() <= 45 and abs(uni.yaw.abs().mean() - 22.5) < 1.5
    assert (uni.yaw.abs() > 40).float().mean() > 0.08
    yaws = [-90.0, 0.0, 45.0]
    fx = w.sample_params(torch.arange(9), pose="fixed", fixed_yaws=yaws)
    assert fx.yaw.tolist() == yaws * 3
    assert fx.identity[0] == fx.identity[1] == fx.identity[2] and len(set(fx.identity[::3].tolist())) == 3
    assert not torch.equal(fx.noise_seed[0], fx.noise_seed[1])
    assert casia.pitch.abs().max() <= 20 and 3 < casia.pitch.std() < 10
    assert casia.roll.abs().max() <= 8 and casia.roll.std() < 5
    assert casia.tx.abs().max() <= 0.06 and casia.identity.unique().numel() > 900
    with pytest.raises(ValueError):
        w.sample_params(idx[:2], pose="fixed")
    with pytest.raises(ValueError):
        w.sample_params(idx[:2], pose="frontal")


def test_identities_are_distinct_and_stable():
    w = SyntheticWorld(32, seed=0)
    p = w.identity_params(1, [0.0, 30.0])
    assert (p.identity == 1).all() and torch.equal(p.id_code[0], p.id_code[1])
    q = dataclasses.replace(w.identity_params(2, [0.0]), **{f: getattr(p.select(slice(0, 1)), f) for f in ("img_code", "noise_seed", "ambient", "diffuse", "light_dir", "pitch", "roll", "tx", "ty", "tz")})
    a = w.render(p.select(slice(0, 1)), with_maps=True)
    b = w.render(q, with_maps=True)
    assert (a["albedo"] - b["albedo"]).abs().mean() > 0.03  # two people, same everything else


# ------------------------------------------------------------------ Dataset API
def test_dataset_transforms_pil_repr_and_errors():
    seen = []
    ds = SyntheticFaces(5, resolution=24, seed=1, output="pil", with_maps=True,
                        transform=lambda im: (seen.append(im.size), im)[1],
                        target_transform=lambda lab: {**lab, "extra": 1})
    img, lab = ds[-1]
    assert seen == [(24, 24)] and img.mode == "RGB"
    assert lab["extra"] == 1 and lab["depth"].shape == (64, 64) and lab["mask"].dtype == torch.bool
    assert lab["albedo"].shape == (3, 64, 64)
    t_img, _ = SyntheticFaces(5, resolution=24, seed=1)[4]
    import numpy as np

    np.testing.assert_allclose(np.asarray(img, dtype=np.float32) / 255, t_img.permute(1, 2, 0).numpy(), atol=1 / 255 + 1e-6)
    r = repr(ds)
    assert "SyntheticFaces" in r and "Number of datapoints: 5" in r and "24x24" in r and "casia" in r and "Transform" in r
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(IndexError):
        ds.batch([0, 9])
    with pytest.raises(ValueError):
        SyntheticFaces(5, output="jpeg")
    with pytest.raises(ValueError):
        SyntheticFaces(5, yaw_range=120.0)
    assert len(ds) == 5 and len(SyntheticFaces(0)) == 0


def test_from_config_and_dataloader():
    cfg = SyntheticConfig(num_identities=7, pose="fixed", fixed_yaws=[-30.0, 30.0], seed=2)
    ds = SyntheticFaces.from_config(cfg, num_images=4, resolution=16)
    assert ds.world.num_identities == 7 and ds.world.seed == 2 and ds.pose == "fixed"
    x, lab = ds.batch(range(4))
    assert lab["yaw"].tolist() == [-30.0, 30.0, -30.0, 30.0] and (lab["identity"] < 7).all()
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    xb, lb = next(iter(loader))
    torch.testing.assert_close(xb, x[:2], atol=1e-5, rtol=0)
    assert lb["ambient"].shape == (2, 3)
    items = ds.__getitems__([0, 3])  # the DataLoader's batched fetch == item by item
    for (img, lab), j in zip(items, (0, 3)):
        torch.testing.assert_close(img, ds[j][0], atol=1e-5, rtol=0)
        assert lab["yaw"] == ds[j][1]["yaw"]


def test_supersample_and_resolutions():
    p = SyntheticWorld(16).sample_params([1])
    for res, ss in ((16, 1), (20, 1), (16, 2)):
        w = SyntheticWorld(res, supersample=ss)
        out = w.render(p, with_view_maps=True)
        assert out["image"].shape == (1, 3, res, res) and out["view_part"].shape == (1, res * ss, res * ss)
        assert math.isfinite(float(out["image"].sum()))
        assert out["view_part"].min() >= -1 and out["view_part"].max() < len(PART_NAMES)
    assert SyntheticWorld(16).render(SyntheticWorld(16).sample_params([]))["image"].shape == (0, 3, 16, 16)
