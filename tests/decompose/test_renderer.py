"""Renderer: known rotations, hand-computed depth and warp, normals, z-buffer, gradients, yaw sign."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from facedis_aug.decompose.renderer import Renderer, grid_faces, rotation_matrix


def _view(pitch=0.0, yaw=0.0, roll=0.0, tx=0.0, ty=0.0, tz=0.0, b=1, dtype=torch.float64):
    return torch.tensor([[pitch, yaw, roll, tx, ty, tz]] * b, dtype=dtype)


def _sphere_cap(r: Renderer, radius: float, center_z: float, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth [1, S, S] of the front of a sphere centred on the optical axis, by ray intersection, and
    the true outward (camera-facing) normals [1, 3, S, S]."""
    s = r.image_size
    v, u = torch.meshgrid(torch.arange(s, dtype=dtype), torch.arange(s, dtype=dtype), indexing="ij")
    q = torch.stack([(u - r.center) / r.focal, (v - r.center) / r.focal, torch.ones_like(u)], -1)
    c = torch.tensor([0.0, 0.0, center_z], dtype=dtype)
    # |t q - c|^2 = radius^2, nearest root
    a, b, cc = (q * q).sum(-1), -2 * (q * c).sum(-1), (c * c).sum() - radius**2
    t = (-b - torch.sqrt(b * b - 4 * a * cc)) / (2 * a)
    p = q * t[..., None]
    n = (p - c) / radius
    return t[None], n.permute(2, 0, 1)[None]


def test_rotation_signs_and_orthonormality():
    facing = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)  # a frontal face looks at the camera
    top = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)  # the top of the head (y points down)
    yaw = rotation_matrix(_view(yaw=30.0)[:, :3])[0]
    pitch = rotation_matrix(_view(pitch=30.0)[:, :3])[0]
    roll = rotation_matrix(_view(roll=30.0)[:, :3])[0]
    s, c = math.sin(math.radians(30)), math.cos(math.radians(30))
    torch.testing.assert_close(yaw @ facing, torch.tensor([-s, 0.0, -c], dtype=torch.float64))  # turns left
    torch.testing.assert_close(pitch @ facing, torch.tensor([0.0, -s, -c], dtype=torch.float64))  # looks up
    torch.testing.assert_close(roll @ top, torch.tensor([s, -c, 0.0], dtype=torch.float64))  # top to the right
    r = rotation_matrix(torch.tensor([[10.0, -70.0, 25.0]], dtype=torch.float64))[0]
    torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64))
    assert torch.det(r).item() == pytest.approx(1.0)


def test_grid_faces_cover_each_cell_twice():
    f = grid_faces(3, 4)
    assert f.shape == (2 * 2 * 3, 3)
    assert f.max().item() == 11 and f.min().item() == 0


@pytest.mark.parametrize("yaw_deg", [30.0, -55.0])
def test_plane_at_known_yaw_gives_hand_computed_depth_and_warp(yaw_deg):
    r = Renderer(32, fov=10.0)
    depth = torch.ones(1, 32, 32, dtype=torch.float64)  # the plane z = 1 through the rotation centre
    img = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    out = r.render(img, depth, _view(yaw=yaw_deg))
    th = math.radians(yaw_deg)
    checked = 0
    for v in range(32):
        for u in range(32):
            qx = (u - r.center) / r.focal
            # ray-plane intersection with the plane's rotated normal (sin th, 0, cos th) through (0, 0, 1)
            z = math.cos(th) / (qx * math.sin(th) + math.cos(th))
            # back to the canonical frame: R_y(-th) about (0, 0, 1); the canonical point has z = 1
            uc = r.focal * (math.cos(th) * z * qx - math.sin(th) * (z - 1.0)) + r.center
            vc = r.focal * z * (v - r.center) / r.focal + r.center
            if 0.5 <= uc <= 30.5 and 0.5 <= vc <= 30.5:
                assert out.mask[0, v, u]
                assert out.depth[0, v, u].item() == pytest.approx(z, abs=1e-9)
                assert out.grid[0, v, u, 0].item() == pytest.approx(uc / 31 * 2 - 1, abs=1e-9)
                assert out.grid[0, v, u, 1].item() == pytest.approx(vc / 31 * 2 - 1, abs=1e-9)
                checked += 1
            elif uc < -0.5 or uc > 31.5:
                assert not out.mask[0, v, u]
    assert checked > 400


def test_plane_with_pitch_and_translation_moves_as_computed():
    r = Renderer(32)
    depth = torch.ones(1, 32, 32, dtype=torch.float64)
    out = r.render(torch.zeros(1, 1, 32, 32, dtype=torch.float64), depth, _view(pitch=20.0, tx=0.01))
    g = out.grid[0]
    th = math.radians(-20.0)  # pitch is R_x(-pitch)
    # the rotated plane has normal R_x(th) e_z = (0, -sin th, cos th) and passes through c + t = (tx, 0, 1)
    for v in (4, 15, 27):
        for u in (6, 16, 25):
            qx, qy = (u - r.center) / r.focal, (v - r.center) / r.focal
            n = (0.0, -math.sin(th), math.cos(th))
            p0 = (0.01, 0.0, 1.0)
            z = (n[0] * p0[0] + n[1] * p0[1] + n[2] * p0[2]) / (n[0] * qx + n[1] * qy + n[2])
            assert out.depth[0, v, u].item() == pytest.approx(z, abs=1e-9)
            x, y = z * qx - 0.01, z * qy
            yc = math.cos(th) * y + math.sin(th) * (z - 1.0)  # R_x(th)^T applied to (y, z - 1)
            assert g[v, u, 0].item() == pytest.approx((r.focal * x + r.center) / 31 * 2 - 1, abs=1e-9)
            assert g[v, u, 1].item() == pytest.approx((r.focal * yc + r.center) / 31 * 2 - 1, abs=1e-9)


def test_normals_of_plane_and_sphere_cap():
    r = Renderer(32)
    n = r.normals(torch.ones(2, 32, 32, dtype=torch.float64))
    torch.testing.assert_close(n, torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64).view(1, 3, 1, 1).expand(2, 3, 32, 32))
    depth, n_true = _sphere_cap(r, radius=0.2, center_z=1.1)
    n_est = r.normals(depth)
    cos = (n_est * n_true).sum(1)[0, 1:-1, 1:-1]
    assert (n_true[0, 2] < 0).all()  # camera-facing
    assert torch.rad2deg(torch.acos(cos.clamp(max=1.0))).max().item() < 0.05  # central differences, O(h^2)


def test_lambertian_shading_known_values():
    normal = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64).view(1, 3, 1, 1)
    light = torch.tensor([[0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 1.0, 0.0]], dtype=torch.float64)
    s = Renderer.shading(normal, light)[0, :, 0, 0]
    cos = 1.0 / math.sqrt(2.0)  # light from 45 degrees to the right
    torch.testing.assert_close(s, torch.tensor([0.1 + 0.5 * cos, 0.2 + 0.6 * cos, 0.3 + 0.7 * cos], dtype=torch.float64))
    facing_right = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)
    left = light.clone()
    left[0, 6] = -1.0  # light from the left: a surface facing right is in shadow, only ambient
    torch.testing.assert_close(Renderer.shading(facing_right, left)[0, :, 0, 0], light[0, :3])


def test_camera_fixed_light_is_the_view_normal_dot_the_light():
    # a still light and a turning head: shading must be (R n) . l, with R the view's rotation
    torch.manual_seed(0)
    normal = torch.nn.functional.normalize(torch.randn(3, 3, 2, 2, dtype=torch.float64) + torch.tensor([0, 0, -2.0],
                                           dtype=torch.float64).view(1, 3, 1, 1), dim=1)
    light = torch.tensor([[0.1, 0.1, 0.1, 0.8, 0.7, 0.6, 0.6, -0.3]], dtype=torch.float64).repeat(3, 1)
    view = torch.zeros(3, 6, dtype=torch.float64)
    view[:, :3] = torch.tensor([[0.0, 0.0, 0.0], [0.0, 40.0, 0.0], [15.0, -70.0, 10.0]], dtype=torch.float64)
    rot = rotation_matrix(view[:, :3])
    n_view = torch.einsum("bij,bjhw->bihw", rot, normal)
    l_dir = torch.nn.functional.normalize(torch.cat([light[:, 6:8], -torch.ones(3, 1, dtype=torch.float64)], 1), dim=1)
    cos = (n_view * l_dir[:, :, None, None]).sum(1, keepdim=True).clamp(min=0)
    want = light[:, :3, None, None] + light[:, 3:6, None, None] * cos
    torch.testing.assert_close(Renderer.shading(normal, light, view), want)
    # frontal views shade alike in both frames; a turned one does not (the canonical light turns with it)
    torch.testing.assert_close(Renderer.shading(normal[:1], light[:1], view[:1]), Renderer.shading(normal[:1], light[:1]))
    assert not torch.allclose(Renderer.shading(normal[1:2], light[1:2], view[1:2]), Renderer.shading(normal[1:2], light[1:2]))
    # a face turned left (yaw > 0) under a light from the image's right: its frontal patch darkens
    face = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64).view(1, 3, 1, 1)
    right = torch.tensor([[0.0, 0, 0, 1, 1, 1, 1.0, 0]], dtype=torch.float64)
    turn = lambda yaw: torch.tensor([[0.0, yaw, 0, 0, 0, 0]], dtype=torch.float64)  # noqa: E731
    assert Renderer.shading(face, right, turn(40.0))[0, 0, 0, 0] < Renderer.shading(face, right, turn(-40.0))[0, 0, 0, 0]


def test_zbuffer_matches_brute_force_with_occlusion():
    torch.manual_seed(0)
    r = Renderer(12)
    depth = torch.full((1, 12, 12), 1.08, dtype=torch.float64)
    depth[:, 3:9, 4:8] = 0.92  # a box standing out of a plane: at yaw it hides part of the plane
    depth = depth + 0.005 * torch.rand_like(depth)
    for yaw in (40.0, -70.0):
        view = _view(yaw=yaw, pitch=10.0)
        pts = r.transform(r.depth_to_points(depth), view)
        zb, covered = r.rasterize(pts)
        # brute force: every triangle against every pixel
        verts = torch.cat([r.project(pts), pts[..., 2:]], -1).reshape(-1, 3)
        tri = verts[grid_faces(12, 12)]
        ref = torch.full((12, 12), float("inf"), dtype=torch.float64)
        for t in tri:
            (u0, v0, z0), (u1, v1, z1), (u2, v2, z2) = t.tolist()
            area = (u1 - u0) * (v2 - v0) - (u2 - u0) * (v1 - v0)
            if abs(area) < 1e-12:
                continue
            for pv in range(12):
                for pu in range(12):
                    b0 = ((u1 - pu) * (v2 - pv) - (u2 - pu) * (v1 - pv)) / area
                    b1 = ((u2 - pu) * (v0 - pv) - (u0 - pu) * (v2 - pv)) / area
                    b2 = 1 - b0 - b1
                    if min(b0, b1, b2) >= -1e-9:
                        ref[pv, pu] = min(ref[pv, pu], 1.0 / (b0 / z0 + b1 / z1 + b2 / z2))
        assert torch.equal(covered[0], torch.isfinite(ref))
        torch.testing.assert_close(zb[0][covered[0]], ref[covered[0]])
        # the box occludes: some pixels see the box although the plane behind also covers them
        assert (zb[0][covered[0]] < 1.0).any() and (zb[0][covered[0]] > 1.0).any()


def test_gradcheck_render_wrt_depth_view_light_albedo():
    torch.manual_seed(1)
    r = Renderer(6, fov=10.0)
    base = 1.0 + 0.03 * F.interpolate(torch.randn(1, 1, 3, 3, dtype=torch.float64), size=6, mode="bilinear", align_corners=True)[:, 0]
    depth = base.clone().requires_grad_()
    view = _view(pitch=7.0, yaw=23.0, roll=4.0, tx=0.003, ty=-0.002).requires_grad_()
    light = torch.tensor([[0.3, 0.4, 0.5, 0.6, 0.5, 0.4, 0.2, -0.3]], dtype=torch.float64, requires_grad=True)
    albedo = (torch.rand(1, 3, 6, 6, dtype=torch.float64) * 2 - 1).requires_grad_()
    mask = r.reconstruct(albedo, depth, light, view).mask.clone()
    assert mask.sum() >= 12

    def f(d, vw, li, al):
        out = r.reconstruct(al, d, li, vw)
        assert torch.equal(out.mask, mask)  # visibility must not change within the finite differences
        return out.image * out.mask[:, None], torch.where(out.mask, out.depth, torch.zeros_like(out.depth))

    assert torch.autograd.gradcheck(f, (depth, view, light, albedo), eps=1e-6, atol=1e-6)


def test_positive_yaw_moves_the_face_towards_the_image_left():
    """A sphere-cap 'face' with a marker on its nose tip and one on its left cheek (the image's right),
    rendered at yaw +30: both markers move left by the amounts the rotation predicts."""
    r = Renderer(64)
    depth, _ = _sphere_cap(r, radius=0.3, center_z=1.25, dtype=torch.float32)  # nose tip at z = 0.95
    depth = depth.clamp(max=1.1)
    albedo = torch.full((1, 3, 64, 64), -1.0)
    v, u = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    nose = ((u - r.center) ** 2 + (v - r.center) ** 2) <= 2.0**2
    cheek_u = r.center + 14.0
    cheek = ((u - cheek_u) ** 2 + (v - r.center) ** 2) <= 2.0**2
    albedo[0, 0][nose] = 1.0  # red nose
    albedo[0, 1][cheek] = 1.0  # green cheek
    light = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])  # ambient only: image = albedo
    out = r.reconstruct(albedo, depth, light, _view(yaw=30.0, dtype=torch.float32))
    img = out.image[0] * out.mask[0]

    def centroid_u(channel):
        wgt = (img[channel] > 0.0).float()
        return (wgt * u).sum().item() / wgt.sum().item()

    th = math.radians(30.0)

    def expected_u(u0):
        z0 = depth[0, int(r.center), int(round(u0))].item() if u0 != r.center else depth[0, 31:33, 31:33].mean().item()
        x, z = (u0 - r.center) / r.focal * z0, z0 - 1.0
        xr, zr = math.cos(th) * x + math.sin(th) * z, -math.sin(th) * x + math.cos(th) * z + 1.0
        return r.focal * xr / zr + r.center

    nose_u, cheek_u_view = centroid_u(0), centroid_u(1)
    assert nose_u < r.center - 5  # the nose moved left
    assert nose_u == pytest.approx(expected_u(r.center), abs=1.0)
    assert cheek_u_view < cheek_u  # the face's left cheek also moves left (towards the image centre)
    assert cheek_u_view == pytest.approx(expected_u(cheek_u), abs=1.0)
    # the right side of the face (image left) turns away: fewer of its pixels are visible than at yaw 0
    g = out.grid[0, ..., 0][out.mask[0]]
    assert (g < 0).sum() < (g > 0).sum()


def test_chunked_zbuffer_matches_one_pass(monkeypatch):
    """Batches are z-buffered in chunks of whole images when candidates exceed MAX_CANDIDATES."""
    import facedis_aug.decompose.renderer as rmod

    torch.manual_seed(3)
    r = Renderer(16)
    depth = 0.9 + 0.2 * torch.rand(5, 16, 16)
    view = torch.zeros(5, 6)
    view[:, 1] = torch.tensor([-80.0, -30.0, 0.0, 45.0, 85.0])
    pts = r.transform(r.depth_to_points(depth), view)
    d1, c1 = r.rasterize(pts)
    monkeypatch.setattr(rmod, "MAX_CANDIDATES", 50)  # forces one chunk per image
    d2, c2 = r.rasterize(pts)
    assert torch.equal(c1, c2) and c1.any()
    torch.testing.assert_close(d1, d2, rtol=0, atol=0)


@pytest.mark.parametrize("true_yaw", [25.0, -25.0])
def test_a_face_rotated_by_yaw_is_re_estimated_at_that_yaw(true_yaw):
    """Render a textured sphere-cap face at a known yaw, then fit the yaw alone by gradient descent on
    the L1 photometric error from a frontal start (albedo, depth and light known): the fit reaches the
    true yaw with its sign, so the renderer's yaw gradient points the right way all the way."""
    r = Renderer(32)
    depth, _ = _sphere_cap(r, radius=0.12, center_z=1.08, dtype=torch.float32)
    depth = torch.nan_to_num(depth, nan=1.06).clamp(max=1.06)  # rays that miss the sphere: background
    v, u = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    albedo = torch.stack([torch.sin(6 * u) * torch.cos(4 * v), torch.cos(5 * u + 2 * v), 0.5 * torch.sin(7 * v)])[None]
    light = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.3, -0.2]])
    target = r.reconstruct(albedo, depth, light, _view(yaw=true_yaw, dtype=torch.float32))
    yaw = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([yaw], lr=1.0)
    for _ in range(150):
        view = torch.cat([torch.zeros(1, 1), yaw[:, None], torch.zeros(1, 4)], 1)
        out = r.reconstruct(albedo, depth, light, view)
        m = (out.mask & target.mask)[:, None].float()
        loss = ((out.image - target.image).abs() * m).sum() / m.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert yaw.item() == pytest.approx(true_yaw, abs=2.0)


def test_render_layer_transparent_surroundings_do_not_occlude_and_alpha_warps_with_the_face():
    r = Renderer(16, fov=10.0)
    depth = torch.full((1, 16, 16), 0.95)
    depth[:, :, :3] = 0.5  # a near wall at the left edge, but transparent
    alpha = torch.zeros(1, 16, 16)
    alpha[:, 4:12, 5:11] = 1.0
    image = torch.rand(1, 3, 16, 16)
    out = r.render_layer(image, depth, alpha, _view())
    # frontal: the opacity is the canonical one where drawn, and the transparent wall draws nothing
    torch.testing.assert_close(out.alpha, alpha * out.mask)
    assert not out.mask[0, :, :2].any()
    # with the wall opaque, it is drawn
    assert r.render_layer(image, depth, torch.ones(1, 16, 16), _view()).mask[0, :, :2].all()
    # turned by +30 degrees yaw the opaque patch moves towards the image's left
    turned = r.render_layer(image, depth, alpha, _view(yaw=30.0))
    cols = torch.arange(16.0)
    centre = lambda a: float((a.sum(0) * cols).sum() / a.sum())  # noqa: E731  (column centroid)
    assert centre(turned.alpha[0]) < centre(out.alpha[0]) - 0.5


def test_layered_composite_and_gradcheck():
    torch.manual_seed(3)
    r = Renderer(6, fov=10.0)
    depth = (0.95 + 0.02 * torch.rand(1, 6, 6, dtype=torch.float64)).requires_grad_()
    alpha = (0.3 + 0.6 * torch.rand(1, 6, 6, dtype=torch.float64)).requires_grad_()
    albedo = (torch.rand(1, 3, 6, 6, dtype=torch.float64) * 2 - 1).requires_grad_()
    bg = (torch.rand(1, 3, 6, 6, dtype=torch.float64) * 2 - 1).requires_grad_()
    light = torch.tensor([[0.3, 0.4, 0.5, 0.6, 0.5, 0.4, 0.2, -0.3]], dtype=torch.float64)
    view = _view(yaw=17.0, pitch=4.0).requires_grad_()
    out = r.reconstruct_layered(albedo, depth, alpha, light, view, bg)
    a = out.alpha[:, None]
    face = r.render_layer(r.shade(albedo, depth, light), depth, alpha, view)
    torch.testing.assert_close(out.image, a * face.image + (1 - a) * bg)
    mask = out.mask.clone()

    def f(d, al, alb, b, vw):
        o = r.reconstruct_layered(alb, d, al, light, vw, b)
        assert torch.equal(o.mask, mask)
        return o.image

    assert torch.autograd.gradcheck(f, (depth, alpha, albedo, bg, view), eps=1e-6, atol=1e-6)


# ------------------------------------------------------------------ the head surface (radius over lon, lat)
def _lonlat_texture(r: Renderer, shift_deg: float, dtype=torch.float64) -> torch.Tensor:
    """[1, 3, S, S] smooth texture of longitude and latitude on the head map, its longitude shifted."""
    lon, lat = r.head_angles(r.image_size, r.image_size, torch.zeros((), dtype=dtype))
    lon = lon + math.radians(shift_deg)
    return torch.stack([torch.sin(2 * lon) * torch.cos(lat), torch.cos(3 * lon) * 0.5, torch.sin(2 * lat)])[None]


@pytest.mark.parametrize("yaw", [20.0, -35.0, 60.0])
def test_head_surface_sphere_turned_by_yaw_is_its_texture_shifted_in_longitude(yaw):
    # a sphere about the rotation centre turns into itself: rendering it at yaw must equal rendering,
    # frontally, its texture with the longitude shifted by the yaw (the canonical longitude phi is seen
    # at view longitude phi - yaw: positive yaw turns the face to the image's left)
    r = Renderer(64, 10.0, surface="head", surface_range=(180.0, 80.0))
    radius = torch.full((1, 64, 64), 0.07, dtype=torch.float64)
    turned = r.render(_lonlat_texture(r, 0.0), radius, _view(yaw=yaw))
    shifted = r.render(_lonlat_texture(r, yaw), radius, _view())
    both = turned.mask & shifted.mask
    assert both.sum() > 0.5 * (turned.mask.sum())  # most of the disc is compared
    err = (turned.image - shifted.image).abs().permute(0, 2, 3, 1)[both]
    assert err.max() < 0.06 and err.mean() < 0.01, (err.max(), err.mean())
    # the silhouette of a sphere does not move when it turns
    assert (turned.mask ^ shifted.mask).sum() <= 0.02 * both.sum()


def test_head_surface_points_normals_and_inverse_warp():
    r = Renderer(32, 10.0, surface="head", surface_range=(90.0, 90.0))
    radius = torch.full((1, 32, 32), 0.05, dtype=torch.float64)
    p = r.depth_to_points(radius)
    c = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.allclose((p - c).norm(dim=-1), radius)
    # the map's centre faces the camera, its right edge is the sphere's right side, its top row the top
    mid = 15.5
    assert p[0, 16, 16, 2] < 1.0 - 0.049 and abs(p[0, 16, 31, 0] - 0.05 * math.cos(math.radians(90 * 0.5 / mid))) < 1e-3
    assert p[0, 0, 16, 1] < -0.0499
    # normals of a sphere point outwards along the radius (towards the camera at the front)
    n = r.normals(radius)[0].permute(1, 2, 0)
    out = (p[0] - c) / 0.05
    inner = (slice(2, -2), slice(2, -2))
    assert torch.allclose(n[inner], out[inner], atol=0.02)
    # rendered frontally, each view pixel samples the map pixel whose ray it sees
    view = _view()
    rendered = r.render(_lonlat_texture(r, 0.0), radius, view)
    pts = r._pixel_rays(32, 32, radius)[None] * rendered.depth[..., None]
    d = pts - c
    lon = torch.atan2(d[..., 0], -d[..., 2])
    expect = torch.sin(2 * lon) * torch.cos(torch.atan2(-d[..., 1], torch.sqrt(d[..., 0] ** 2 + d[..., 2] ** 2)))
    m = rendered.mask[0]
    assert (rendered.image[0, 0][m] - expect[0][m]).abs().max() < 0.05


def test_head_surface_validation():
    with pytest.raises(ValueError, match="surface"):
        Renderer(16, surface="cylinder")
    with pytest.raises(ValueError, match="surface_range"):
        Renderer(16, surface="head", surface_range=(0.0, 90.0))
