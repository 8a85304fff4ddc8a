import torch

from benchmarks import bench_world_ablation as WA
from facedis_aug.data import world_geometry as WG
from facedis_aug.data import world_shading as WS
from facedis_aug.data.synthetic import SyntheticFaces


def _images(**kw):
    ds = SyntheticFaces(16, 32, seed=0, num_identities=8, pose="uniform", **kw)
    return ds.batch(torch.arange(4))[0]


def test_each_switch_changes_the_images_and_is_undone_on_exit():
    before = _images()
    blur, body, spec, id_spec = WS.blur, WG.BODY_YAW_SHARE, list(WG.IMG_SPEC), list(WG.ID_SPEC)
    for parts in (("specular",), ("body",), ("blur",), ("noise",), ("asymmetry",), ("hair",)):
        with WA.world_without(parts):
            changed = _images()
        assert (changed - before).abs().max() > 1e-3, parts
    assert WS.blur is blur and WG.BODY_YAW_SHARE == body and WG.IMG_SPEC == spec
    assert WG.ID_SPEC == id_spec
    assert torch.equal(_images(), before)


def test_without_specular_a_face_is_never_brighter():
    before = _images()
    with WA.world_without(("specular",)):
        matte = _images()
    # the highlight only adds light (blur is linear and positive, the noise the same seeded draw in both renders)
    assert (matte - before).max() <= 1e-6
    assert (matte - before).min() < -1e-3


def test_a_symmetric_identity_renders_as_the_mirror_of_its_mirrored_pose():
    # frontal, centred, light from straight ahead: the face's mirror image is itself once asymmetry is off
    import dataclasses

    ds = SyntheticFaces(16, 32, seed=0, num_identities=8, pose="uniform")
    p = ds.params(torch.arange(4))
    zero = torch.zeros_like(p.yaw)
    p = dataclasses.replace(p, yaw=zero, roll=zero, tx=zero, light_dir=torch.zeros_like(p.light_dir))
    with WA.world_without(("asymmetry", "hair", "noise")):
        face = ds.world.render(p)["image"]
        # the background texture is not mirror-symmetric: compare the middle of the face only
        mid = face[..., 10:22, 10:22]
        assert (mid - mid.flip(-1)).abs().max() < 0.02
    mid = ds.world.render(p)["image"][..., 10:22, 10:22]
    assert (mid - mid.flip(-1)).abs().max() > 0.02


def test_every_variant_names_known_parts():
    assert WA.VARIANTS["full"] == ()
    assert set(WA.VARIANTS["bare"]) == set(WA.PARTS)
    assert all(set(parts) <= set(WA.PARTS) for parts in WA.VARIANTS.values())
