"""The yaw-landscape benchmark (benchmarks/bench_yaw_landscape.py): its search finds a known yaw, and
its world faces are in the renderer's units."""
from pathlib import Path

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
