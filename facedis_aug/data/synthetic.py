"""The synthetic face world: procedural 3D faces with known pose, light, depth and albedo.

It is the embedded default data set and the ground truth of every benchmark. An identity is a
seed-drawn 3D face (a union of ellipsoids: cranium, jaw, chin, brow ridge, nose, alae, lips, ears,
hair shell with an asymmetric hairline, optional long hair, neck, torso) with a symmetric albedo
plus small asymmetric detail (mole, blotch, fringe, parting) and a textured background. It is
ray-cast analytically in plain PyTorch and lit with Blinn-Phong (specular highlights), then
slightly blurred and given sensor noise: things photos have and the unsup3d image model lacks.

Conventions (all angles in degrees):
- yaw > 0: the face turns towards the image's LEFT (AFLW2000 Pose_Para); at yaw = +90 the nose
  points to the left edge. pitch > 0: the face turns up. roll > 0: the head turns
  counter-clockwise in the image (its top moves left). Rotation R = R_roll R_pitch R_yaw about the
  head centre; the torso follows 30% of the yaw and none of the pitch/roll.
- tx, ty: where the head centre projects, in normalised image coordinates ([-1, 1] across the
  image; +x right, +y down). tz: relative change of the camera distance (+0.05 = 5% farther).
- light_dir (lx, ly): the light comes from normalize(lx, ly, 1) in a frame with x to the image
  right, y to the image TOP and z towards the camera; (0, 0) is a frontal light. ambient and
  diffuse are RGB intensities. Image = albedo * (ambient + diffuse * max(n.l, 0)) + specular.
- Canonical maps (with_maps=True, always 64x64): the frontal (yaw = pitch = roll = 0, no
  translation), unlit view: 'depth' is camera-space depth in head units (larger = farther; the
  camera is CAM_DIST = 10 from the head centre, background at CAM_DIST + 3), 'albedo' [3,64,64] in
  [0, 1] (background included), 'mask' the face skin (forehead, cheeks, jaw, chin, nose, with the
  painted eyes, brows and lips; not hair, ears, neck, clothes or background).
- Determinism: image i depends only on (seed, i) (counter-based torch.Generator seeding, no global
  RNG); it is the same whether rendered alone or in any batch, up to float rounding (< 1e-5).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch

from ..ops.seeds import counter_seed
from . import world_geometry as geom
from . import world_shading as shading
from .config import SyntheticConfig

POSES = ("uniform", "casia", "fixed")


def _uniforms(seed: int, stream: int, index: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(counter_seed(seed, stream, index))
    return torch.rand(n, generator=g, dtype=torch.float64)


_STREAM_IMAGE, _STREAM_NOISE, _STREAM_IDENTITY = 1, 2, 3


@dataclass
class FaceParams:
    """Everything that determines a batch of images. Angles in degrees; see the module docstring.

    Edit with `dataclasses.replace` (e.g. new `yaw`) before `SyntheticWorld.render`.
    """

    index: torch.Tensor  # [B] long, image index in the world
    identity: torch.Tensor  # [B] long
    yaw: torch.Tensor  # [B]
    pitch: torch.Tensor  # [B]
    roll: torch.Tensor  # [B]
    tx: torch.Tensor  # [B] normalised image units
    ty: torch.Tensor  # [B]
    tz: torch.Tensor  # [B] relative camera distance change
    ambient: torch.Tensor  # [B,3]
    diffuse: torch.Tensor  # [B,3]
    light_dir: torch.Tensor  # [B,2]
    id_code: torch.Tensor  # [B, len(ID_SPEC)] float64 in [0,1): the identity's shape and colours
    img_code: torch.Tensor  # [B, len(IMG_SPEC)] float64 in [0,1): nuisances (noise, blur, background jitter)
    noise_seed: torch.Tensor  # [B] long, seeds the sensor noise of each image

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def select(self, idx: Any) -> "FaceParams":
        """Sub-batch (index, slice or mask over B)."""
        return FaceParams(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

    def labels(self) -> dict[str, torch.Tensor]:
        return {
            "identity": self.identity, "yaw": self.yaw, "pitch": self.pitch, "roll": self.roll,
            "tx": self.tx, "ty": self.ty, "tz": self.tz, "ambient": self.ambient,
            "diffuse": self.diffuse, "light_dir": self.light_dir,
        }


def _check_pose(pose: str, yaw_range: float, frontal_share: float, frontal_yaw: float, fixed_yaws) -> None:
    if pose not in POSES:
        raise ValueError(f"pose must be one of {POSES}, got {pose!r}")
    if not 0 < yaw_range <= 90:
        raise ValueError(f"yaw_range must be in (0, 90] degrees, got {yaw_range}")
    if not 0 <= frontal_share <= 1:
        raise ValueError(f"frontal_share must be in [0, 1], got {frontal_share}")
    if frontal_yaw <= 0:
        raise ValueError(f"frontal_yaw must be > 0 degrees, got {frontal_yaw}")
    if pose == "fixed" and not fixed_yaws:
        raise ValueError("pose='fixed' needs a non-empty fixed_yaws list")
    if fixed_yaws is not None and any(abs(float(y)) > 90 for y in fixed_yaws):
        raise ValueError(f"fixed_yaws must lie in [-90, 90] degrees, got {list(fixed_yaws)}")


PART_NAMES = ("cranium", "jaw", "chin", "brow_ridge", "nose_bridge", "nose_tip", "ala_left", "ala_right", "lips",
              "ear_left", "ear_right", "hair", "long_hair", "neck", "torso")  # ids of 'view_part'


class SyntheticWorld:
    """Renderer plus identity/pose sampling of the synthetic face world.

    resolution: output size R; seed: the world's seed; num_identities: people in the world;
    supersample: render at R*supersample and average down (anti-aliasing; 1 is fastest).
    """

    def __init__(self, resolution: int = 64, seed: int = 0, num_identities: int = 1000, supersample: int = 1):
        if resolution < 8:
            raise ValueError(f"resolution must be >= 8, got {resolution}")
        if num_identities < 1:
            raise ValueError(f"num_identities must be >= 1, got {num_identities}")
        if supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        self.resolution, self.seed, self.num_identities, self.supersample = int(resolution), int(seed), int(num_identities), int(supersample)
        self._id_cache: dict[int, torch.Tensor] = {}

    def __repr__(self) -> str:
        return f"SyntheticWorld(resolution={self.resolution}, seed={self.seed}, num_identities={self.num_identities}, supersample={self.supersample})"

    # ---------------------------------------------------------------- sampling
    def identity_code(self, identities: torch.Tensor) -> torch.Tensor:
        """[B] long -> [B, len(ID_SPEC)] float64 codes, from (seed, identity) only."""
        rows = []
        for i in identities.tolist():
            if i not in self._id_cache:
                if len(self._id_cache) > 100_000:
                    self._id_cache.clear()
                self._id_cache[i] = _uniforms(self.seed, _STREAM_IDENTITY, i, len(geom.ID_SPEC))
            rows.append(self._id_cache[i])
        return torch.stack(rows) if rows else torch.zeros(0, len(geom.ID_SPEC), dtype=torch.float64)

    def sample_params(
        self,
        indices: torch.Tensor | Sequence[int],
        pose: str = "casia",
        yaw_range: float = 90.0,
        frontal_share: float = 0.85,
        frontal_yaw: float = 30.0,
        fixed_yaws: Optional[Sequence[float]] = None,
        identities: torch.Tensor | Sequence[int] | None = None,
    ) -> FaceParams:
        """Parameters of images `indices` [B]. Depends only on (seed, index) and the pose arguments.

        pose: 'uniform' (yaw ~ U[-yaw_range, yaw_range]); 'casia' (a share `frontal_share` with
        |yaw| < frontal_yaw, denser near 0, the rest a thinning tail out to yaw_range); 'fixed'
        (yaw = fixed_yaws[index % k]; images k*g .. k*g+k-1 show the same identity, light and
        background, one per yaw: an evaluation set). `identities` [B] overrides the drawn identity.
        """
        _check_pose(pose, yaw_range, frontal_share, frontal_yaw, fixed_yaws)
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if (idx < 0).any():
            raise ValueError("indices must be >= 0")
        k = len(fixed_yaws) if pose == "fixed" else 1
        groups = (idx // k).tolist()
        code = torch.stack([_uniforms(self.seed, _STREAM_IMAGE, g, len(geom.IMG_SPEC)) for g in groups]) if len(groups) else torch.zeros(0, len(geom.IMG_SPEC), dtype=torch.float64)
        img = geom.Attrs(code, geom.IMG_SPEC)
        if identities is None:
            ident = (img.identity * self.num_identities).floor().long().clamp(max=self.num_identities - 1)
        else:
            ident = torch.as_tensor(identities, dtype=torch.long).reshape(-1).expand(len(idx)).clone()
        sign = torch.where(img.yaw_sign < 0.5, -1.0, 1.0).to(torch.float64)
        tri = 1 - (1 - img.yaw_mag).sqrt()  # triangular on [0,1): most mass near 0
        if pose == "uniform":
            yaw = (2 * img.yaw_mag - 1) * yaw_range
        elif pose == "casia":
            fy = min(frontal_yaw, yaw_range)
            tail = fy + (yaw_range - fy) * tri
            yaw = sign * torch.where((img.yaw_mix < frontal_share) | (yaw_range <= fy), fy * tri, tail)
        else:
            yaw = torch.tensor([float(fixed_yaws[i % k]) for i in idx.tolist()], dtype=torch.float64)
        nd = lambda u: torch.special.ndtri(u.clamp(1e-6, 1 - 1e-6))  # noqa: E731
        amb = img.amb[:, None] * torch.stack([img.amb_r, img.amb_g, img.amb_b], -1)
        dif = img.dif[:, None] * torch.stack([img.dif_r, img.dif_g, img.dif_b], -1)
        light = torch.stack([(0.5 * nd(img.light_x)).clamp(-1.2, 1.2), (0.4 * nd(img.light_y) + 0.2).clamp(-1.2, 1.2)], -1)
        f32 = lambda x: x.to(torch.float32)  # noqa: E731
        return FaceParams(
            index=idx, identity=ident, yaw=f32(yaw), pitch=f32((7 * nd(img.pitch)).clamp(-20, 20)),
            roll=f32((3 * nd(img.roll)).clamp(-8, 8)), tx=f32(img.tx), ty=f32(img.ty), tz=f32(img.tz),
            ambient=f32(amb), diffuse=f32(dif), light_dir=f32(light), id_code=self.identity_code(ident),
            img_code=code, noise_seed=torch.tensor([counter_seed(self.seed, _STREAM_NOISE, i) for i in idx.tolist()], dtype=torch.long),
        )

    def identity_params(self, identity: int, yaws: Sequence[float], index: int = 0) -> FaceParams:
        """One identity at the given yaws, everything else as image `index` (for recognition tests)."""
        p = self.sample_params(torch.full((len(yaws),), index), pose="fixed", fixed_yaws=[0.0], identities=torch.full((len(yaws),), identity))
        # own sensor noise per view (the rest of the image code is shared)
        noise = torch.tensor([counter_seed(self.seed, _STREAM_NOISE + 16 + j, index) for j in range(len(yaws))], dtype=torch.long)
        return dataclasses.replace(p, yaw=torch.tensor(list(yaws), dtype=torch.float32), noise_seed=noise)

    def landmarks(self, params: FaceParams) -> dict[str, torch.Tensor]:
        """Projected 3D landmarks in pixel coordinates of the R x R image, each [B,2] as (x, y)
        (x right, y down, pixel centres at integers; visibility is not checked): 'head' (the
        rotation centre), 'nose_tip', 'eye_left' / 'eye_right' (image-left / image-right eye at a
        frontal view), 'mouth'."""
        a = geom.Attrs(params.id_code.to(torch.float64), geom.ID_SPEC)
        cen, rad, _, _ = geom.local_primitives(a)
        d64 = lambda x: x.to(torch.float64)  # noqa: E731
        M = geom.FLIP @ geom.rot_roll(d64(params.roll)) @ geom.rot_pitch(d64(params.pitch)) @ geom.rot_yaw(d64(params.yaw))
        Z = geom.CAM_DIST * (1 + d64(params.tz))
        T = torch.stack([d64(params.tx) * geom.TAN_HALF_FOV * Z, d64(params.ty) * geom.TAN_HALF_FOV * Z, Z], -1)
        zero = torch.zeros_like(a.eye_y)
        tip = cen[:, geom.TIP] + torch.stack([zero, zero, rad[:, geom.TIP, 2]], -1)
        lips = cen[:, geom.LIPS] + torch.stack([zero, zero, rad[:, geom.LIPS, 2]], -1)
        eye_z = cen[:, geom.BROW, 2] + 0.02  # roughly the eye surface
        pts = {
            "head": torch.zeros_like(tip), "nose_tip": tip, "mouth": lips,
            "eye_left": torch.stack([-a.eye_sep, a.eye_y, eye_z], -1), "eye_right": torch.stack([a.eye_sep, a.eye_y, eye_z], -1),
        }
        out = {}
        for name, p in pts.items():
            x = (M @ p[..., None])[..., 0] + T
            uv = x[:, :2] / (x[:, 2:] * geom.TAN_HALF_FOV)  # normalised image coords
            out[name] = ((uv + 1) * self.resolution / 2 - 0.5).float()
        return out

    # ---------------------------------------------------------------- rendering
    def render(self, params: FaceParams, with_maps: bool = False, with_view_maps: bool = False) -> dict[str, torch.Tensor]:
        """'image' [B,3,R,R] in [0,1]; with_maps adds canonical 'depth' [B,64,64], 'albedo' [B,3,64,64]
        in [0,1] and 'mask' [B,64,64] bool (see the module docstring); with_view_maps adds the
        posed view's 'view_depth' [B,R,R], 'view_mask' [B,R,R] bool (face skin) and 'view_part'
        [B,R,R] long (primitive id, see PART_NAMES; -1 = background), at R*supersample."""
        B = len(params)
        for name, shape in (("yaw", (B,)), ("pitch", (B,)), ("roll", (B,)), ("tx", (B,)), ("ty", (B,)), ("tz", (B,)),
                            ("ambient", (B, 3)), ("diffuse", (B, 3)), ("light_dir", (B, 2)),
                            ("id_code", (B, len(geom.ID_SPEC))), ("img_code", (B, len(geom.IMG_SPEC))), ("noise_seed", (B,))):
            if tuple(getattr(params, name).shape) != shape:
                raise ValueError(f"FaceParams.{name} must be {shape}, got {tuple(getattr(params, name).shape)}")
        R, ss = self.resolution, self.supersample
        if B == 0:
            out = {"image": torch.zeros(0, 3, R, R)}
            if with_view_maps:
                out.update(view_depth=torch.zeros(0, R * ss, R * ss), view_mask=torch.zeros(0, R * ss, R * ss, dtype=torch.bool),
                           view_part=torch.zeros(0, R * ss, R * ss, dtype=torch.long))
            if with_maps:
                out.update(depth=torch.zeros(0, 64, 64), albedo=torch.zeros(0, 3, 64, 64), mask=torch.zeros(0, 64, 64, dtype=torch.bool))
            return out
        a = geom.Attrs(params.id_code.to(torch.float64), geom.ID_SPEC)
        both = geom.Attrs(torch.cat([params.id_code, params.img_code], 1).to(torch.float64), geom.ID_SPEC + geom.IMG_SPEC)
        prims = geom.local_primitives(a)
        col = shading.colours(a)
        d64 = lambda x: x.to(torch.float64)  # noqa: E731
        flip = geom.FLIP.expand(B, 3, 3)
        M_head = flip @ geom.rot_roll(d64(params.roll)) @ geom.rot_pitch(d64(params.pitch)) @ geom.rot_yaw(d64(params.yaw))
        M_body = flip @ geom.rot_yaw(geom.BODY_YAW_SHARE * d64(params.yaw))
        Z = geom.CAM_DIST * (1 + d64(params.tz))
        T = torch.stack([d64(params.tx) * geom.TAN_HALF_FOV * Z, d64(params.ty) * geom.TAN_HALF_FOV * Z, Z], -1)
        lx, ly = params.light_dir.float().unbind(-1)
        light = torch.nn.functional.normalize(torch.stack([lx, -ly, -torch.ones_like(lx)], -1), dim=-1)
        lit = (params.ambient.float(), params.diffuse.float(), light)
        r = self._raster(both, col, prims, M_head, M_body, T, R * ss, lit)
        im = geom.to_raster(r["color"], R * ss)
        if ss > 1:
            im = torch.nn.functional.avg_pool2d(im, ss)
        # optics blur, then sensor noise (seeded per image, so batch-independent)
        im = shading.blur(im, both.blur.float() * (R / 64.0), radius=max(1, int(round(2.3 * 0.75 * R / 64))))
        noise = torch.stack([torch.randn(3, R, R, generator=torch.Generator().manual_seed(int(s))) for s in params.noise_seed.tolist()])
        out = {"image": (im + both.noise.float()[:, None, None, None] * noise).clamp(0, 1)}
        if with_view_maps:
            out["view_depth"] = geom.to_raster(r["depth"][..., None], R * ss)[:, 0]
            out["view_mask"] = geom.to_raster(r["face"][..., None], R * ss)[:, 0]
            out["view_part"] = geom.to_raster(r["part"][..., None], R * ss)[:, 0]
        if with_maps:
            zero = torch.zeros(B, dtype=torch.float64)
            Tc = torch.stack([zero, zero, zero + geom.CAM_DIST], -1)
            m = self._raster(both, col, prims, flip, flip, Tc, 64, None)
            out["depth"] = geom.to_raster(m["depth"][..., None], 64)[:, 0]
            out["albedo"] = geom.to_raster(m["color"], 64)
            out["mask"] = geom.to_raster(m["face"][..., None], 64)[:, 0]
        return out

    def _raster(self, a: geom.Attrs, col, prims, M_head, M_body, T, res, lit):
        """Cast, shade and composite at `res`; per-pixel outputs in tile-major order [B,N,...]."""
        cen, rad, rot, enabled = prims
        A, c = geom.place(cen, rad, rot, M_head, M_body, T)
        B, K = A.shape[:2]
        bshell = lambda q, b: shading.hair_region(q, shading.PixelAttrs(a, col, b))  # noqa: E731
        rad_cam = rad  # radii are frame independent
        tmin, kmin = geom.cast(A, c, rad_cam, enabled, res, bshell)
        N = tmin.shape[1]
        u, v = geom.pixel_grid(res)
        d = torch.stack([u * geom.TAN_HALF_FOV, v * geom.TAN_HALF_FOV, torch.ones_like(u)], -1)  # [N,3] ray directions
        fg = torch.isfinite(tmin)
        color = torch.empty(B * N, 3)
        fi = fg.reshape(-1).nonzero(as_tuple=True)[0]
        bi = (~fg).reshape(-1).nonzero(as_tuple=True)[0]
        # background pixels
        pb = shading.PixelAttrs(a, col, bi // N)
        color[bi] = shading.background(u[bi % N], v[bi % N], pb)
        # surface pixels: geometry of the hit primitive, then albedo and light
        b, pix = fi // N, fi % N
        k = kmin.reshape(-1)[fi]
        back = k == geom.BACK_HAIR
        k = torch.where(back, geom.HAIR, k)
        t = tmin.reshape(-1)[fi]
        x = t[:, None] * d[pix]
        Ac = torch.cat([A.float().reshape(B, K, 9), c.float()], -1)[b, k]
        Ak, ck = Ac[:, :9].view(-1, 3, 3), Ac[:, 9:]
        q = geom.matvec(Ak, x - ck)  # unit-sphere coords of the hit primitive
        n = torch.nn.functional.normalize(geom.matTvec(Ak, q), dim=-1)  # outward normal
        n = torch.where(back[:, None], -n, n)  # the shell seen from inside
        n = self._blend_normals(n, t, k, b, torch.stack([u[pix], v[pix]], -1), A, c, rad)
        Tb = T.float()[b]
        xl = geom.matTvec(M_head.float()[b], x - Tb)  # head-local coordinates
        xb = geom.matTvec(M_body.float()[b], x - Tb)
        pa = shading.PixelAttrs(a, col, b)
        alb = shading.albedo(k, xl, xb, q, pa)
        if lit is None:
            color[fi] = alb
        else:
            amb, dif, light = lit
            view = -torch.nn.functional.normalize(x, dim=-1)
            color[fi] = shading.shade(alb, n, view, k, pa, amb[b], dif[b], light[b]).clamp(0, 1)
        face = torch.zeros_like(k, dtype=torch.bool)
        for p in geom.FACE_PRIMS:
            face |= k == p
        face_all = torch.zeros(B * N, dtype=torch.bool)
        face_all[fi] = face
        return {
            "color": color.view(B, N, 3),
            "depth": torch.where(fg, tmin, torch.full_like(tmin, geom.CAM_DIST + 3.0)),
            "face": face_all.view(B, N),
            "part": torch.where(fg, torch.where(kmin == geom.BACK_HAIR, geom.HAIR, kmin), -1),
        }

    @staticmethod
    def _blend_normals(n, t, k, b, uv, A, c, rad):
        """Smooth the creases between cranium, jaw, chin, brow ridge and nose parts: where another
        of them is hit within BLEND of the visible depth, average the normals with weights
        exp(-(t_j - t) / BLEND). Each part is only tested on the pixels inside its screen box."""
        BLEND = 0.12
        parts = (geom.CRANIUM, geom.JAW, geom.CHIN, geom.BROW, geom.NOSE, geom.TIP, geom.ALA_L, geom.ALA_R)
        isp = torch.zeros_like(k, dtype=torch.bool)
        for p in parts:
            isp |= k == p
        sel = isp.nonzero(as_tuple=True)[0]
        if not len(sel):
            return n
        bs, ts, us, vs = b[sel], t[sel], uv[sel, 0], uv[sel, 1]
        pu, pv, eu, ev = [x.float() for x in geom.screen_bounds(c, rad)]
        acc = torch.zeros(len(sel), 3)
        d = torch.stack([us * geom.TAN_HALF_FOV, vs * geom.TAN_HALF_FOV, torch.ones_like(us)], -1)
        for p in parts:
            near = (((us - pu[bs, p]).abs() <= eu[bs, p]) & ((vs - pv[bs, p]).abs() <= ev[bs, p])).nonzero(as_tuple=True)[0]
            if not len(near):
                continue
            bn = bs[near]
            tp, npn = geom.ray_hit(A[bn, p].float(), c[bn, p].float(), d[near])
            w = torch.exp(-((tp - ts[near]).clamp_min(0) / BLEND)).nan_to_num(0.0)
            acc.index_add_(0, near, w[:, None] * npn)
        n = n.clone()
        n[sel] = torch.nn.functional.normalize(acc, dim=-1)
        return n


class SyntheticFaces(torch.utils.data.Dataset):
    """torchvision-style Dataset over the synthetic face world.

    item i -> (image, labels): image [3,R,R] float in [0,1] (or a PIL image with output='pil'),
    then `transform`; labels: identity, yaw, pitch, roll, tx, ty, tz, ambient [3], diffuse [3],
    light_dir [2] (+ depth, albedo, mask with with_maps), then `target_transform`.
    `batch(indices)` is the fast path for training loops (no transforms).
    """

    def __init__(
        self,
        num_images: int,
        resolution: int = 64,
        seed: int = 0,
        num_identities: int = 1000,
        pose: str = "casia",
        yaw_range: float = 90.0,
        frontal_share: float = 0.85,
        frontal_yaw: float = 30.0,
        fixed_yaws: Optional[Sequence[float]] = None,
        output: str = "tensor",
        with_maps: bool = False,
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        supersample: int = 1,
    ):
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        if output not in ("tensor", "pil"):
            raise ValueError(f"output must be 'tensor' or 'pil', got {output!r}")
        _check_pose(pose, yaw_range, frontal_share, frontal_yaw, fixed_yaws)
        self.world = SyntheticWorld(resolution, seed, num_identities, supersample)
        self.num_images = int(num_images)
        self.pose, self.yaw_range, self.frontal_share, self.frontal_yaw = pose, float(yaw_range), float(frontal_share), float(frontal_yaw)
        self.fixed_yaws = [float(y) for y in fixed_yaws] if fixed_yaws is not None else None
        self.output, self.with_maps = output, bool(with_maps)
        self.transform, self.target_transform = transform, target_transform

    @classmethod
    def from_config(cls, cfg: SyntheticConfig, num_images: int, resolution: int, **kw) -> "SyntheticFaces":
        args = dict(seed=cfg.seed, num_identities=cfg.num_identities, pose=cfg.pose, yaw_range=cfg.yaw_range,
                    frontal_share=cfg.frontal_share, frontal_yaw=cfg.frontal_yaw, fixed_yaws=cfg.fixed_yaws,
                    supersample=cfg.supersample)
        args.update(kw)
        return cls(num_images, resolution, **args)

    @property
    def resolution(self) -> int:
        return self.world.resolution

    def __len__(self) -> int:
        return self.num_images

    def params(self, indices) -> FaceParams:
        return self.world.sample_params(indices, self.pose, self.yaw_range, self.frontal_share, self.frontal_yaw, self.fixed_yaws)

    def batch(self, indices) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images [B,3,R,R] in [0,1] and batched labels for `indices` (no transforms applied)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.num_images):
            raise IndexError(f"indices out of range for {self.num_images} images")
        p = self.params(idx)
        out = self.world.render(p, with_maps=self.with_maps)
        labels = p.labels()
        if self.with_maps:
            labels.update(depth=out["depth"], albedo=out["albedo"], mask=out["mask"])
        return out["image"], labels

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list:
        """Several items rendered as one batch (torch's DataLoader calls this when it exists)."""
        idx = []
        for i in indices:
            i = int(i)
            if i < 0:
                i += self.num_images
            if not 0 <= i < self.num_images:
                raise IndexError(f"index {i} out of range for {self.num_images} images")
            idx.append(i)
        images, labels = self.batch(idx)
        return [self._finish(images[j], {k: v[j] for k, v in labels.items()}) for j in range(len(idx))]

    def _finish(self, image: Any, labels: dict):
        if self.output == "pil":
            from PIL import Image

            from ..ops import to_uint8_image

            image = Image.fromarray(to_uint8_image(image, (0.0, 1.0)))
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            labels = self.target_transform(labels)
        return image, labels

    def __repr__(self) -> str:
        lines = [
            f"Dataset {type(self).__name__}",
            f"    Number of datapoints: {self.num_images}",
            f"    Resolution: {self.resolution}x{self.resolution}, output: {self.output}, with_maps: {self.with_maps}",
            f"    Identities: {self.world.num_identities}, seed: {self.world.seed}" + (f", supersample: {self.world.supersample}" if self.world.supersample > 1 else ""),
            f"    Pose: {self.pose}" + (f" (fixed_yaws={self.fixed_yaws})" if self.pose == "fixed" else
                                     f" (yaw_range={self.yaw_range}" + (f", frontal_share={self.frontal_share}, frontal_yaw={self.frontal_yaw})" if self.pose == "casia" else ")")),
        ]
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}")
        if self.target_transform is not None:
            lines.append(f"    Target transform: {self.target_transform!r}")
        return "\n".join(lines)
