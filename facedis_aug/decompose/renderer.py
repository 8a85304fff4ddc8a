"""Pure-PyTorch renderer for the decomposer: depth map -> grid mesh -> view, z-buffer, inverse warp.

No learnable parameters and no compiled ops: runs on CPU and GPU, differentiable w.r.t. depth, view
and light (the choice of the front triangle at each pixel is discrete, as in any z-buffer).

Coordinates (as unsup3d): camera at the origin, x to the image's right, y to the image's bottom,
z forward (depth). Pixel (row i, column j) has coordinates u = j, v = i, and a canonical depth map
D[i, j] is the grid mesh whose vertex (i, j) is D[i, j] * K^-1 [j, i, 1] (the canonical view is the
frontal one). `grid_sample` is used with align_corners=True so that vertex and pixel centres agree.

Surfaces. `surface="depth"` (above, unsup3d) can draw only what a frontal view sees: the side of a
turned head is squeezed into the few pixels at the silhouette. `surface="head"` reads the canonical map
as a radius over longitude and latitude about the rotation centre c = (0, 0, rot_center_depth): column
j has longitude lon = (2 j / (W - 1) - 1) * lon_range, row i latitude lat = (1 - 2 i / (H - 1)) * lat_range
(top row up), and vertex (i, j) is c + r[i, j] * (sin lon cos lat, -sin lat, -cos lon cos lat), so that
lon 0 faces the camera and the sides of the head have map pixels of their own. A yaw of a sphere is then
a shift in longitude (the renderer's known-answer test).

View parameters `view` [B, 6] = (pitch, yaw, roll) in degrees, then (tx, ty, tz) in world units. The
rigid transform rotates about the point (0, 0, rot_center_depth) and then translates:
    p_view = R (p_canon - c) + c + t,   R = R_roll @ R_yaw @ R_pitch.
Signs (angles in degrees):
    yaw   > 0: face turned towards the image's LEFT (AFLW2000 convention; the nose moves left);
    pitch > 0: face turned towards the image's TOP (looking up);
    roll  > 0: top of the head tilted towards the image's RIGHT (clockwise on screen).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# z-buffer candidates (triangle, pixel) held at once; ~140 bytes each at the peak
MAX_CANDIDATES = 2_000_000
# a face-layer triangle draws when one of its corners is more opaque than this
ALPHA_DRAWN = 0.02


def rotation_matrix(angles: Tensor) -> Tensor:
    """angles [B, 3] = (pitch, yaw, roll) in degrees -> R [B, 3, 3] with the signs of the module doc."""
    if angles.ndim != 2 or angles.shape[1] != 3:
        raise ValueError(f"angles must be [B, 3], got {tuple(angles.shape)}")
    a = angles * (math.pi / 180.0)
    # pitch rotates about x with the sign flipped so that positive turns the face up (y points down)
    px, yw, rl = -a[:, 0], a[:, 1], a[:, 2]
    one, zero = torch.ones_like(px), torch.zeros_like(px)
    rx = torch.stack([one, zero, zero, zero, px.cos(), -px.sin(), zero, px.sin(), px.cos()], 1).view(-1, 3, 3)
    # standard R_y: the facing direction (0, 0, -1) goes to (-sin yaw, 0, -cos yaw), i.e. left for yaw > 0
    ry = torch.stack([yw.cos(), zero, yw.sin(), zero, one, zero, -yw.sin(), zero, yw.cos()], 1).view(-1, 3, 3)
    rz = torch.stack([rl.cos(), -rl.sin(), zero, rl.sin(), rl.cos(), zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def grid_faces(h: int, w: int, device: torch.device | str = "cpu") -> Tensor:
    """Triangles [2 (h-1)(w-1), 3] (vertex indices, row-major) of an h x w grid mesh."""
    idx = torch.arange(h * w, device=device).view(h, w)
    tl, tr = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)
    bl, br = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    return torch.cat([torch.stack([tl, tr, bl], 1), torch.stack([tr, br, bl], 1)], 0)


@dataclass
class Rendered:
    image: Tensor  # [B, C, H, W] the shaded canonical image warped into the view
    mask: Tensor  # [B, H, W] bool: pixel covered by the mesh and its canonical source inside the map
    depth: Tensor  # [B, H, W] view-space depth of the front surface (rot-centre depth where uncovered)
    grid: Tensor  # [B, H, W, 2] view pixel -> canonical position in grid_sample's [-1, 1] units
    alpha: Optional[Tensor] = None  # [B, H, W] face-layer opacity in the view (layered renders only)


class Renderer(nn.Module):
    """Renders canonical (image, depth) into a view. No parameters; `image_size` fixes K."""

    def __init__(self, image_size: int, fov: float = 10.0, rot_center_depth: float = 1.0, surface: str = "depth",
                 surface_range: tuple[float, float] = (90.0, 90.0)):
        super().__init__()
        if image_size < 2:
            raise ValueError(f"image_size must be >= 2, got {image_size}")
        if surface not in ("depth", "head"):
            raise ValueError(f"surface must be 'depth' or 'head', got {surface!r}")
        if len(surface_range) != 2 or not all(0.0 < a <= 180.0 for a in surface_range):
            raise ValueError(f"surface_range must be (lon, lat) half-ranges in (0, 180] degrees, got {surface_range}")
        self.image_size = int(image_size)
        self.fov = float(fov)
        self.rot_center_depth = float(rot_center_depth)
        self.surface = surface
        self.surface_range = (float(surface_range[0]), float(surface_range[1]))
        # focal length in pixels and principal point, unsup3d's K (pixel centres at integers)
        self.focal = (image_size - 1) / 2.0 / math.tan(math.radians(fov) / 2.0)
        self.center = (image_size - 1) / 2.0

    # ----------------------------------------------------------------- geometry
    def _pixel_rays(self, h: int, w: int, like: Tensor) -> Tensor:
        """K^-1 [u, v, 1] for every pixel: [H, W, 3] with z = 1."""
        v, u = torch.meshgrid(torch.arange(h, dtype=like.dtype, device=like.device),
                              torch.arange(w, dtype=like.dtype, device=like.device), indexing="ij")
        return torch.stack([(u - self.center) / self.focal, (v - self.center) / self.focal, torch.ones_like(u)], -1)

    def depth_to_points(self, depth: Tensor) -> Tensor:
        """Canonical map [B, H, W] (depth, or radius for surface 'head') -> camera-space points [B, H, W, 3]."""
        self._check_depth(depth)
        if self.surface == "head":
            c = torch.tensor([0.0, 0.0, self.rot_center_depth], dtype=depth.dtype, device=depth.device)
            return c + self.head_directions(depth.shape[1], depth.shape[2], depth)[None] * depth[..., None]
        return self._pixel_rays(depth.shape[1], depth.shape[2], depth)[None] * depth[..., None]

    def head_angles(self, h: int, w: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """(longitude, latitude) [H, W] in radians of the head surface's map pixels (see the module doc)."""
        lon_r, lat_r = (math.radians(a) for a in self.surface_range)
        lat, lon = torch.meshgrid(torch.linspace(lat_r, -lat_r, h, dtype=like.dtype, device=like.device),
                                  torch.linspace(-lon_r, lon_r, w, dtype=like.dtype, device=like.device), indexing="ij")
        return lon, lat

    def head_directions(self, h: int, w: int, like: Tensor) -> Tensor:
        """Unit directions [H, W, 3] from the rotation centre to the head surface's map pixels."""
        lon, lat = self.head_angles(h, w, like)
        return torch.stack([lon.sin() * lat.cos(), -lat.sin(), -lon.cos() * lat.cos()], -1)

    def transform(self, points: Tensor, view: Tensor) -> Tensor:
        """Canonical points [B, ..., 3] -> view points, p' = R (p - c) + c + t."""
        rot, t, c = self._rigid(view, points)
        flat = points.reshape(points.shape[0], -1, 3)
        out = (flat - c) @ rot.transpose(1, 2) + c + t[:, None]
        return out.view(points.shape)

    def inverse_transform(self, points: Tensor, view: Tensor) -> Tensor:
        """View points [B, ..., 3] -> canonical points, p = R^T (p' - c - t) + c."""
        rot, t, c = self._rigid(view, points)
        flat = points.reshape(points.shape[0], -1, 3)
        out = (flat - c - t[:, None]) @ rot + c
        return out.view(points.shape)

    def project(self, points: Tensor) -> Tensor:
        """Camera points [..., 3] -> pixel coordinates [..., 2] (u, v)."""
        z = points[..., 2:3]
        return points[..., :2] / z * self.focal + self.center

    def _rigid(self, view: Tensor, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if view.ndim != 2 or view.shape[1] != 6:
            raise ValueError(f"view must be [B, 6] (pitch, yaw, roll deg, tx, ty, tz), got {tuple(view.shape)}")
        c = torch.tensor([0.0, 0.0, self.rot_center_depth], dtype=like.dtype, device=like.device)
        return rotation_matrix(view[:, :3]).to(like.dtype), view[:, 3:].to(like.dtype), c

    def _check_depth(self, depth: Tensor) -> None:
        if depth.ndim != 3 or depth.shape[1] != depth.shape[2] or depth.shape[1] != self.image_size:
            raise ValueError(f"depth must be [B, {self.image_size}, {self.image_size}], got {tuple(depth.shape)}")

    # ----------------------------------------------------------------- z-buffer
    def rasterize(self, view_points: Tensor, keep: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Z-buffer of the grid mesh `view_points` [B, H, W, 3] (view space) onto the H x W pixel grid.
        With `keep` [B, H, W] bool (per vertex), only triangles with a kept corner draw (the face
        layer: its transparent surroundings must not occlude the face).

        Returns depth [B, H, W] (front surface, interpolated perspective-correctly and differentiably
        w.r.t. the vertices; rot-centre depth where uncovered) and covered [B, H, W] bool.

        Each triangle enumerates the pixels of its own bounding box (variable count per triangle, so
        long thin triangles at steep yaw cost only their box); the nearest candidate per pixel (largest
        1/z) wins via scatter_reduce('amax'); the winners' barycentrics are then recomputed with autograd.
        """
        b, h, w, _ = view_points.shape
        faces = grid_faces(h, w, view_points.device)
        verts = torch.cat([self.project(view_points), view_points[..., 2:3]], -1).reshape(b * h * w, 3)
        # global vertex ids of every triangle of every batch item: [3, B*T] (vertex k of triangle i)
        corner = (faces.T[:, None, :] + (torch.arange(b, device=faces.device) * (h * w))[None, :, None]).reshape(3, -1)
        keep_tri = None if keep is None else keep.reshape(-1)[corner].any(0)
        with torch.no_grad():
            tri_id, pix = self._front_triangles(verts.detach(), corner, b, h, w, keep_tri)
        depth = torch.full((b * h * w,), self.rot_center_depth, dtype=verts.dtype, device=verts.device)
        covered = torch.zeros(b * h * w, dtype=torch.bool, device=verts.device)
        if tri_id.numel():
            # the winners' barycentrics and depth again, now with autograd: [3 corners, P, (u, v, z)]
            tri = verts.index_select(0, corner[:, tri_id].reshape(-1)).view(3, -1, 3)
            pu = (pix % w).to(verts.dtype)
            pv = ((pix // w) % h).to(verts.dtype)
            b0, b1, b2 = _barycentric(tri[..., 0], tri[..., 1], pu, pv)
            # perspective-correct: 1/z is affine in screen space, exact for planar triangles
            z = 1.0 / (b0 / tri[0, :, 2] + b1 / tri[1, :, 2] + b2 / tri[2, :, 2])
            depth = depth.index_put((pix,), z)
            covered[pix] = True
        return depth.view(b, h, w), covered.view(b, h, w)

    def _front_triangles(self, verts: Tensor, corner: Tensor, b: int, h: int, w: int,
                         keep_tri: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Non-differentiable visibility. verts [B*H*W, (u, v, z)], corner [3, B*T] vertex ids. Returns,
        for every covered pixel, the global id of its nearest triangle and the global pixel id
        (b * H * W + v * W + u)."""
        flat = corner.reshape(-1)
        u, v, z = (col.index_select(0, flat).view(3, -1) for col in verts.T.contiguous())  # [3, B*T] each
        x0 = u.amin(0).ceil().clamp(0, w - 1).long()
        x1 = u.amax(0).floor().clamp(-1, w - 1).long()
        y0 = v.amin(0).ceil().clamp(0, h - 1).long()
        y1 = v.amax(0).floor().clamp(-1, h - 1).long()
        bw, bh = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
        du1, dv1, du2, dv2 = u[1] - u[0], v[1] - v[0], u[2] - u[0], v[2] - v[0]
        area = du1 * dv2 - du2 * dv1
        # degenerate (edge-on) triangles and vertices behind the camera draw nothing
        ok = (area.abs() > 1e-12) & (z.amin(0) > 1e-6) & (u.amax(0) >= 0) & (u.amin(0) <= w - 1)
        if keep_tri is not None:
            ok = ok & keep_tri
        count = torch.where(ok, bw * bh, torch.zeros_like(bw))
        total = int(count.sum())
        if total == 0:
            empty = torch.empty(0, dtype=torch.long, device=verts.device)
            return empty, empty
        # per triangle: barycentrics b1, b2 and 1/z are affine in screen space; measured from the first
        # vertex (du, dv) = (u - u_0, v - v_0) they are a du + b dv (+ c): this avoids cancellation
        area = torch.where(ok, area, torch.ones_like(area))
        iz0, iz1, iz2 = 1.0 / z[0], 1.0 / z[1], 1.0 / z[2]
        b1u, b1v = dv2 / area, -du2 / area
        b2u, b2v = -dv1 / area, du1 / area
        izu, izv = (iz1 - iz0) * b1u + (iz2 - iz0) * b2u, (iz1 - iz0) * b1v + (iz2 - iz0) * b2v
        table = torch.stack([u[0], v[0], b1u, b1v, b2u, b2v, izu, izv, iz0])  # [9, B*T]
        itab = torch.stack([x0, y0, bw])  # [3, B*T]
        # batch items never share pixels: z-buffer them in chunks that bound the candidate memory
        # (a rough depth map seen at 90 degrees can draw ~300k candidates per 64x64 image)
        n_tri = corner.shape[1] // b
        per_item = count.view(b, n_tri).sum(1).tolist()
        tri_ids: list[Tensor] = []
        pix_ids: list[Tensor] = []
        first, acc = 0, 0
        for i, n in enumerate(per_item):
            if acc and acc + n > MAX_CANDIDATES:
                self._zbuffer(table, itab, count, first, i, n_tri, h, w, tri_ids, pix_ids)
                first, acc = i, 0
            acc += n
        self._zbuffer(table, itab, count, first, b, n_tri, h, w, tri_ids, pix_ids)
        return torch.cat(tri_ids), torch.cat(pix_ids)

    @staticmethod
    def _zbuffer(table: Tensor, itab: Tensor, count: Tensor, item0: int, item1: int, n_tri: int, h: int, w: int,
                 tri_ids: list[Tensor], pix_ids: list[Tensor]) -> None:
        """Z-buffer the triangles of batch items item0..item1-1; append the winners' triangle and pixel ids."""
        t0, t1 = item0 * n_tri, item1 * n_tri
        count = count[t0:t1]
        total = int(count.sum())
        if total == 0:
            return
        device = count.device
        # one candidate per (triangle, pixel of its bounding box); counts vary per triangle
        cand = torch.repeat_interleave(torch.arange(t0, t1, device=device), count)
        start = torch.cumsum(count, 0) - count
        local = torch.arange(total, device=device) - start.index_select(0, cand - t0)
        # (one 1-D gather per column is several times faster than gathering rows of a table)
        cx0, cy0, cbw = (col.index_select(0, cand) for col in itab)
        pu, pv = cx0 + local % cbw, cy0 + local // cbw
        ou, ov, c1u, c1v, c2u, c2v, czu, czv, cz0 = (col.index_select(0, cand) for col in table)
        du, dv = pu.to(ou.dtype) - ou, pv.to(ov.dtype) - ov
        bb1, bb2 = c1u * du + c1v * dv, c2u * du + c2v * dv
        inv_z = czu * du + czv * dv + cz0
        # small tolerance so pixels on shared edges are never dropped (cracks); ties go to depth order
        tol = -1e-6
        inside = (bb1 >= tol) & (bb2 >= tol) & (1.0 - bb1 - bb2 >= tol)
        inv_z = torch.where(inside, inv_z, torch.full_like(inv_z, -float("inf")))
        hw = h * w
        pix = (torch.div(cand, n_tri, rounding_mode="floor") - item0) * hw + pv * w + pu  # chunk-local
        zbuf = torch.full(((item1 - item0) * hw,), -float("inf"), dtype=inv_z.dtype, device=device)
        zbuf.scatter_reduce_(0, pix, inv_z, "amax")  # nearest = largest 1/z
        # among inside candidates at the minimum depth keep one (the highest candidate index) per pixel
        cid = torch.arange(total, device=device)
        best = inside & (inv_z == zbuf.index_select(0, pix))
        win = torch.full(((item1 - item0) * hw,), -1, dtype=torch.long, device=device)
        win.scatter_reduce_(0, pix, torch.where(best, cid, torch.full_like(cid, -1)), "amax")
        win = win[win >= 0]
        tri_ids.append(cand.index_select(0, win))
        pix_ids.append(pix.index_select(0, win) + item0 * hw)

    # ----------------------------------------------------------------- warp and render
    def inverse_warp_grid(self, view_depth: Tensor, view: Tensor) -> Tensor:
        """View depth [B, H, W] -> grid [B, H, W, 2]: where each view pixel comes from in the canonical
        image, in grid_sample units (align_corners=True)."""
        b, h, w = view_depth.shape
        pts = self._pixel_rays(h, w, view_depth)[None] * view_depth[..., None]
        canon = self.inverse_transform(pts, view)
        if self.surface == "head":
            # the map pixel on the ray from the centre through the point: its longitude and latitude
            d = canon - torch.tensor([0.0, 0.0, self.rot_center_depth], dtype=canon.dtype, device=canon.device)
            lon = torch.atan2(d[..., 0], -d[..., 2])
            lat = torch.atan2(-d[..., 1], torch.sqrt(d[..., 0] ** 2 + d[..., 2] ** 2 + 1e-12))
            lon_r, lat_r = (math.radians(a) for a in self.surface_range)
            return torch.stack([lon / lon_r, -lat / lat_r], -1)
        # guard the division; only reachable for rotations beyond the configured ranges
        z = canon[..., 2:3].clamp(min=1e-4)
        uv = canon[..., :2] / z * self.focal + self.center
        return uv / torch.tensor([w - 1.0, h - 1.0], dtype=uv.dtype, device=uv.device) * 2.0 - 1.0

    def render(self, canon_image: Tensor, canon_depth: Tensor, view: Tensor) -> Rendered:
        """Warp canon_image [B, C, H, W] (already shaded) with canon_depth [B, H, W] into `view` [B, 6]."""
        return self._warp(canon_image, canon_depth, view, keep=None)

    def _warp(self, canon_image: Tensor, canon_depth: Tensor, view: Tensor, keep: Optional[Tensor]) -> Rendered:
        """Shared by `render` and `render_layer`: z-buffer (only triangles with a `keep` corner, when
        given), inverse warp, bilinear sampling of canon_image."""
        self._check_depth(canon_depth)
        if canon_image.ndim != 4 or canon_image.shape[0] != canon_depth.shape[0] or canon_image.shape[2:] != canon_depth.shape[1:]:
            raise ValueError(f"canon_image {tuple(canon_image.shape)} does not match depth {tuple(canon_depth.shape)}")
        if view.shape[0] != canon_depth.shape[0]:
            raise ValueError(f"view batch {view.shape[0]} != depth batch {canon_depth.shape[0]}")
        view = view.to(canon_depth.dtype)
        view_points = self.transform(self.depth_to_points(canon_depth), view)
        depth, covered = self.rasterize(view_points, keep=keep)
        grid = self.inverse_warp_grid(depth, view)
        inside = (grid.detach().abs() <= 1.0 + 1e-6).all(-1)
        image = F.grid_sample(canon_image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return Rendered(image=image, mask=covered & inside, depth=depth, grid=grid)

    # ----------------------------------------------------------------- shading
    def normals(self, depth: Tensor) -> Tensor:
        """Unit surface normals [B, 3, H, W] of the canonical depth (or head radius), pointing towards the
        camera (n_z < 0) at the front.

        Central differences of the 3D grid points; the one-pixel border copies its neighbour."""
        self._check_depth(depth)
        p = self.depth_to_points(depth)
        tu = p[:, 1:-1, 2:] - p[:, 1:-1, :-2]  # along +u (image right)
        tv = p[:, 2:, 1:-1] - p[:, :-2, 1:-1]  # along +v (image down)
        # tv x tu points to -z (the camera) for a frontal plane; written out (faster than linalg.cross)
        (ax, ay, az), (bx, by, bz) = tv.unbind(-1), tu.unbind(-1)
        n = torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], -1)
        n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        n = F.pad(n.permute(0, 3, 1, 2), (1, 1, 1, 1), mode="replicate")
        return n

    @staticmethod
    def shading(normal: Tensor, light: Tensor, view: Optional[Tensor] = None) -> Tensor:
        """Lambertian shading [B, 3, H, W] from canonical normals [B, 3, H, W] and light [B, 8] =
        (ambient RGB, diffuse RGB, dx, dy): ambient + diffuse * max(0, n . l), l = unit(dx, dy, -1).

        (dx, dy) > 0 puts the light towards the image's right / bottom; (0, 0) is a frontal light. With
        `view` [B, 6] the light is fixed to the camera, as in photos (the head turns under it: n_view . l =
        n . R^T l); without, it is fixed to the canonical face (unsup3d)."""
        if light.ndim != 2 or light.shape[1] != 8:
            raise ValueError(f"light must be [B, 8], got {tuple(light.shape)}")
        d = torch.cat([light[:, 6:8], -torch.ones_like(light[:, :1])], 1)
        d = d / d.norm(dim=1, keepdim=True)
        if view is not None:
            if view.ndim != 2 or view.shape != (light.shape[0], 6):
                raise ValueError(f"view must be [{light.shape[0]}, 6], got {tuple(view.shape)}")
            d = (d[:, None, :] @ rotation_matrix(view[:, :3]).to(d.dtype))[:, 0]  # R^T l, batched
        cos = (normal * d[:, :, None, None]).sum(1, keepdim=True).clamp(min=0.0)
        return light[:, 0:3, None, None] + light[:, 3:6, None, None] * cos

    def shade(self, albedo: Tensor, depth: Tensor, light: Tensor, view: Optional[Tensor] = None) -> Tensor:
        """Canonical image in [-1, 1]-ish: albedo [B, 3, H, W] in [-1, 1] times shading, as unsup3d
        (`view` given: a camera-fixed light, see `shading`)."""
        shading = self.shading(self.normals(depth), light, view)
        return (albedo / 2.0 + 0.5) * shading * 2.0 - 1.0

    def reconstruct(self, albedo: Tensor, depth: Tensor, light: Tensor, view: Tensor, camera_light: bool = False) -> Rendered:
        """The full image model: shade the canonical albedo with the depth's normals, warp into `view`."""
        return self.render(self.shade(albedo, depth, light, view if camera_light else None), depth, view)

    def render_layer(self, canon_image: Tensor, canon_depth: Tensor, canon_alpha: Tensor, view: Tensor) -> Rendered:
        """Warp a face layer (canon_image [B, C, H, W], its depth [B, H, W] and opacity canon_alpha
        [B, H, W] in [0, 1]) into `view`. Only triangles with a corner of opacity > ALPHA_DRAWN draw; the
        opacity is warped with the same grid as the image and is 0 where nothing is drawn."""
        if canon_alpha.shape != canon_depth.shape:
            raise ValueError(f"canon_alpha {tuple(canon_alpha.shape)} does not match depth {tuple(canon_depth.shape)}")
        out = self._warp(torch.cat([canon_image, canon_alpha[:, None]], 1), canon_depth, view,
                         keep=canon_alpha.detach() > ALPHA_DRAWN)
        alpha = out.image[:, -1] * out.mask.to(out.image.dtype)
        return Rendered(image=out.image[:, :-1], mask=out.mask, depth=out.depth, grid=out.grid, alpha=alpha)

    def reconstruct_layered(self, albedo: Tensor, depth: Tensor, alpha: Tensor, light: Tensor, view: Tensor,
                            background: Tensor, camera_light: bool = False) -> Rendered:
        """The layered image model: the shaded face layer (albedo [B, 3, H, W], depth and alpha [B, H, W]
        in the canonical frame) rendered into `view` and alpha-composited over `background` [B, 3, H, W],
        which stays in the image frame (photos keep their background still while the head turns).
        camera_light: the light is fixed to the camera rather than to the face (see `shading`).
        `image` is the composite, `alpha` the face's opacity in the view, `mask` where the face is drawn."""
        if background.shape != albedo.shape:
            raise ValueError(f"background {tuple(background.shape)} does not match albedo {tuple(albedo.shape)}")
        face = self.render_layer(self.shade(albedo, depth, light, view if camera_light else None), depth, alpha, view)
        a = face.alpha[:, None]
        return Rendered(image=a * face.image + (1 - a) * background, mask=face.mask, depth=face.depth, grid=face.grid,
                        alpha=face.alpha)


def _barycentric(u: Tensor, v: Tensor, pu: Tensor, pv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Screen-space barycentric coordinates (3 x [P]) of points (pu, pv) [P] in triangles whose corner
    coordinates are u, v [3, P]."""
    def edge(i: int, j: int) -> Tensor:
        return (u[j] - u[i]) * (pv - v[i]) - (v[j] - v[i]) * (pu - u[i])

    area = (u[1] - u[0]) * (v[2] - v[0]) - (u[2] - u[0]) * (v[1] - v[0])
    return edge(1, 2) / area, edge(2, 0) / area, edge(0, 1) / area
