"""The yaw-landscape benchmark (benchmarks/bench_yaw_landscape.py): its search finds a known yaw, and
its world faces are in the renderer's units."""

import torch


from benchmarks import bench_yaw_landscape as L
from facedis_aug.decompose import Renderer


def test_preferred_yaw_finds_the_yaw_a_face_was_rendered_at():
    faces = L.world_faces(16, identities=1, seed=0, flat=False)
    r = Renderer(16, 10.0)
    yaws = torch.tensor([-40.0, -15.0, 0.0, 20.0, 35.0])
    b = len(yaws)
    view = torch.zeros(b, 6)
    view[:, 1] = yaws
    one = {k: v[:1].expand(b, *v.shape[1:]) for k, v in faces.items() if k != "yaw"}
    background = torch.zeros(b, 3, 16, 16)
    # images drawn by the model itself at known yaws (on the search grid): the L1 is 0 there
    one["image"] = r.reconstruct_layered(one["albedo"], one["depth"], one["alpha"], one["light"], view, background,
                                         camera_light=True).image
    found = L.preferred_yaw(one, one["depth"], one["albedo"], background, r)
    assert torch.equal(found, yaws), found


def test_world_faces_sit_on_the_pivot_with_a_convex_relief():
    faces = L.world_faces(32, identities=2, seed=0, flat=True)
    head = faces["alpha"] > 0.99
    d = faces["depth"]
    # head-local z = 0 (the pivot) is depth 1: the face is in front of it by about the head's depth
    # semi-axis in renderer units (0.84-0.94 head units x 0.073, plus the nose); neck and shoulders behind
    assert (d[head] > 0.9).all() and (d[head] < 1.1).all()
    centre = d[:, 12:20, 12:20][head[:, 12:20, 12:20]]
    assert (centre < 0.97).all() and (centre > 0.91).all()
    assert faces["yaw"].tolist() == [float(y) for y in L.YAWS] * 2


def test_model_preferred_yaw_finds_the_yaw_its_own_maps_were_rendered_at():
    from facedis_aug.decompose import DecomposeConfig, Decomposer
    from facedis_aug.decompose.model import renderer_for

    torch.manual_seed(0)
    cfg = DecomposeConfig(image_size=16, channels=4, bottleneck=8, head_channels=4, conf_channels=4, conf_bottleneck=4)
    model = Decomposer(cfg).eval()
    yaws = torch.tensor([-45.0, -10.0, 0.0, 25.0, 60.0])
    with torch.no_grad():
        d = model(torch.rand(len(yaws), 3, 16, 16) * 2 - 1)
        view = d.view.clone()
        view[:, 1] = yaws
        images = model.reconstruct(renderer_for(cfg), d, view=view).image
    # the maps' own view is frontal (zero-initialised heads): the search must find the yaws the images were drawn at
    assert d.view.abs().max() == 0
    found = L.model_preferred_yaw(model, {"image": images}, d)
    assert torch.equal(found, yaws), found


def test_mirror_albedo_recovers_a_symmetric_albedo_at_its_true_view():
    faces = L.world_faces(32, identities=1, seed=0, flat=False)
    r = Renderer(32, 10.0)
    n = 3
    sym = lambda x, dim: (x + x.flip(dim)) / 2  # noqa: E731
    albedo, depth, alpha = sym(faces["albedo"][:1], 3), sym(faces["depth"][:1], 2), sym(faces["alpha"][:1], 2)
    albedo, depth, alpha = albedo.expand(n, -1, -1, -1), depth.expand(n, -1, -1), alpha.expand(n, -1, -1)
    light = faces["light"][:1].expand(n, -1)
    view = torch.zeros(n, 6)
    view[:, 1] = torch.tensor([0.0, 20.0, -35.0])
    image = r.reconstruct_layered(albedo, depth, alpha, light, view, torch.zeros(n, 3, 32, 32), camera_light=True).image
    found = L.mirror_albedo(image, depth, alpha, light, view, r)
    face = (alpha > 0.99)[:, None].expand_as(albedo)
    err = (found - albedo).abs()[face].mean()
    assert err < 0.1, err  # two bilinear resamplings at 32 px (0.016 at frontal)
    # at a wrong view the mirror halves disagree: further from the truth
    wrong = view.clone()
    wrong[:, 1] += 20.0
    assert (L.mirror_albedo(image, depth, alpha, light, wrong, r) - albedo).abs()[face].mean() > err + 0.02


def test_world_part_maps_put_the_neck_below_and_the_hair_above_the_face():
    faces = L.world_faces(32, identities=2, seed=0, flat=True, parts=True)
    rows = torch.arange(32.0)[None, :, None]
    centre = lambda m: float((m * rows).sum() / m.sum())  # noqa: E731  mean row, 0 = top
    assert centre(faces["body"]) > 24 and centre(faces["hair"]) < 14, (centre(faces["body"]), centre(faces["hair"]))
    face = faces["alpha_face"]
    assert 12 < centre(face) < 20 and 0.3 * faces["alpha"].sum() < face.sum() < 0.8 * faces["alpha"].sum()


def test_distances_by_name_have_their_known_values():
    import pytest

    x = torch.zeros(2, 3, 4, 4)
    r = x.clone()
    r[0] += 0.5  # every pixel off by 0.5
    r[1, :, :2] += 2.0  # half the pixels off by 2
    assert L.distance("l1")(r, x).tolist() == pytest.approx([0.5, 1.0])
    assert L.distance("l2")(r, x).tolist() == pytest.approx([0.25, 2.0])
    assert L.distance("trunc:0.3")(r, x).tolist() == pytest.approx([0.3, 0.15])
    assert L.distance("cauchy:0.5")(r, x).tolist() == pytest.approx([float(torch.log(torch.tensor(2.0))),
                                                                      float(torch.log(torch.tensor(5.0))) / 2])
    assert L.distance("rvgg")(x, x).abs().max() == 0
    with pytest.raises(ValueError, match="unknown distance"):
        L.distance("trunc")


def test_truth_rows_score_the_world_layer_at_the_truth_and_at_its_best():
    from dataclasses import replace

    from facedis_aug.decompose import DecomposeConfig, Decomposer

    torch.manual_seed(0)
    cfg = DecomposeConfig(image_size=16, channels=4, bottleneck=8, head_channels=4, conf_channels=4, conf_bottleneck=4)
    model = Decomposer(cfg).eval()
    faces = L.world_faces(16, identities=1, seed=0, flat=False, parts=True)
    with torch.no_grad():
        d = model(faces["image"])
        # images drawn by the model from the world's own face layer at the true yaws: that layer scores 0 there
        world = replace(d, albedo=faces["albedo"], depth=faces["depth"], alpha=faces["alpha"], light=faces["light"],
                        view=torch.zeros_like(d.view))
        world.view[:, 1] = faces["yaw"]
        faces["image"] = model.reconstruct(L.renderer_for(cfg), world).image
        # the background layer that drew them is kept: the nets would predict another from the new images
        d = replace(model(faces["image"]), background=world.background)
    rows = {r["reconstruction"]: r for r in L.truth_rows(model, faces, d, identities=1)}
    assert len(rows) == 6
    assert all(rows["world head layer and light, true yaw"][f"true {y}"] == 0 for y in L.YAWS)
    assert all(rows["world head layer and light, its best yaw"][f"true {y}"] == 0 for y in L.YAWS)
    # the untrained nets' own maps do not draw these faces
    assert all(rows["own maps, own view"][f"true {y}"] > 0.01 for y in L.YAWS)
    face = [rows["world face layer (no hair, neck) and light, true yaw"][f"true {y}"] for y in L.YAWS]
    best = [rows["world face layer (no hair, neck) and light, its best yaw"][f"true {y}"] for y in L.YAWS]
    assert all(b <= f for b, f in zip(best, face)) and min(face) > 0
