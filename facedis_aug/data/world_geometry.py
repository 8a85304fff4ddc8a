"""Geometry of the synthetic face world: identity/image codes, the primitive set, ray casting.

A face is a union of ellipsoids (cranium, jaw, chin, brow ridge, nose bridge, nose tip, two alae,
lips, two ears, a hair shell, optional long hair, neck, torso). Each ellipsoid is intersected with
the camera rays analytically: with the camera at the origin and ray x(t) = t * (s*u, s*v, 1), the
quadratic's coefficients are polynomials of degree <= 2 in the pixel coordinates (u, v); they are
re-expanded around each 8x8 pixel tile and evaluated only on the tiles that a primitive's screen
box touches (see `cast`). `t` is then the camera-space depth (z) of the hit.

Frames. Head-local: x to the image right (at a frontal view), y up, z towards the camera; units of
about one head half-height. Camera: x right, y down (image rows), z forward (depth).
Only `synthetic.py` is meant to import this module.
"""
from __future__ import annotations

import torch

# ---------------------------------------------------------------------------------------------
# Codes: every random quantity is a uniform in [0, 1) drawn per identity (ID) or per image (IMG);
# the tables map each to a named attribute with its range. Appending names keeps old draws valid.
# ---------------------------------------------------------------------------------------------
ID_SPEC: list[tuple[str, float, float]] = [
    # head shape
    ("head_w", 0.70, 0.82), ("head_h", 0.88, 0.98), ("head_d", 0.84, 0.94),
    ("jaw_w", 0.50, 0.68), ("jaw_h", 0.48, 0.60), ("jaw_d", 0.50, 0.60), ("jaw_y", -0.44, -0.34),
    ("chin_r", 0.10, 0.17), ("chin_fwd", -0.02, 0.08),
    ("brow_ridge", -0.03, 0.015),
    # nose
    ("nose_len", 0.26, 0.38), ("nose_w", 0.07, 0.11), ("nose_out", 0.10, 0.22), ("nose_tip_r", 0.07, 0.10),
    # eyes and brows
    ("eye_sep", 0.27, 0.34), ("eye_y", 0.02, 0.10), ("eye_w", 0.10, 0.135), ("eye_h", 0.045, 0.065),
    ("eye_col", 0.0, 1.0), ("brow_dy", 0.13, 0.19), ("brow_thick", 0.022, 0.045), ("brow_tilt", -0.25, 0.25),
    ("brow_arch", 0.0, 0.05), ("brow_len", 0.13, 0.19), ("brow_dark", 0.3, 0.9),
    # mouth
    ("mouth_y", -0.64, -0.54), ("mouth_w", 0.16, 0.25), ("lip_h", 0.035, 0.06), ("lip_out", 0.02, 0.06),
    ("lip_red", 0.0, 1.0),
    # ears
    ("ear_size", 0.17, 0.25), ("ear_y", -0.12, 0.0), ("ear_out", 0.03, 0.1),
    # skin
    ("skin_tone", 0.0, 1.0), ("skin_red", 0.0, 1.0), ("cheek_red", 0.0, 0.12),
    ("skin_spec", 0.04, 0.30), ("skin_shin", 8.0, 30.0),
    # hair
    ("hair_col", 0.0, 1.0), ("hair_bright", 0.75, 1.25), ("hair_vol", 1.05, 1.16), ("hair_top", 0.0, 0.12),
    ("hairline", 0.30, 0.58), ("hair_side", -0.2, 0.15), ("hair_back", -0.85, -0.45),
    ("part", -1.0, 1.0), ("fringe", 0.0, 0.25), ("hair_wave", 0.0, 0.06), ("hair_phase", 0.0, 6.2832),
    ("bald", 0.0, 1.0), ("long_hair", 0.0, 1.0), ("long_w", 0.95, 1.2), ("long_len", 0.8, 1.15),
    ("beard", 0.0, 1.0), ("beard_density", 0.3, 0.9),
    # asymmetric detail
    ("mole", 0.0, 1.0), ("mole_x", -0.45, 0.45), ("mole_y", -0.55, 0.35),
    ("blotch_fx", 2.0, 7.0), ("blotch_fy", 2.0, 7.0), ("blotch_ph", 0.0, 6.2832),
    # body
    ("neck_w", 0.42, 0.52), ("shoulder_w", 0.9, 1.15), ("cloth_r", 0.05, 0.9), ("cloth_g", 0.05, 0.9),
    ("cloth_b", 0.05, 0.9), ("stripes", 0.0, 1.0), ("stripe_f", 10.0, 30.0),
    # background palette
    ("bg1_r", 0.1, 0.95), ("bg1_g", 0.1, 0.95), ("bg1_b", 0.1, 0.95),
    ("bg2_r", 0.05, 0.8), ("bg2_g", 0.05, 0.8), ("bg2_b", 0.05, 0.8),
    ("bg_angle", 0.0, 6.2832), ("bg_grad", 0.5, 3.0),
    ("bg_fx", 1.0, 9.0), ("bg_fy", 1.0, 9.0), ("bg_tex", 0.0, 0.12),
    ("blob_x", -1.0, 1.0), ("blob_y", -1.0, 0.2), ("blob_r", 0.2, 0.6), ("blob_amp", -0.3, 0.3),
]

IMG_SPEC: list[tuple[str, float, float]] = [
    ("identity", 0.0, 1.0), ("yaw_mix", 0.0, 1.0), ("yaw_mag", 0.0, 1.0), ("yaw_sign", 0.0, 1.0),
    ("pitch", 0.0, 1.0), ("roll", 0.0, 1.0), ("tx", -0.06, 0.06), ("ty", -0.06, 0.06), ("tz", -0.06, 0.06),
    ("amb", 0.25, 0.55), ("amb_r", 0.9, 1.1), ("amb_g", 0.9, 1.1), ("amb_b", 0.9, 1.1),
    ("dif", 0.45, 0.85), ("dif_r", 0.85, 1.15), ("dif_g", 0.9, 1.1), ("dif_b", 0.85, 1.15),
    ("light_x", 0.0, 1.0), ("light_y", 0.0, 1.0),
    ("spec_scale", 0.6, 1.4), ("noise", 0.004, 0.025), ("blur", 0.25, 0.75),
    ("bg_dx", -0.3, 0.3), ("bg_dy", -0.3, 0.3), ("bg_bright", 0.8, 1.15),
]
ID_NAMES = {n: i for i, (n, _, _) in enumerate(ID_SPEC)}
IMG_NAMES = {n: i for i, (n, _, _) in enumerate(IMG_SPEC)}


class Attrs:
    """Named view of a [B, N] code tensor in [0, 1): `a.head_w` -> [B] values scaled to the range."""

    def __init__(self, code: torch.Tensor, spec: list[tuple[str, float, float]]):
        lo = torch.tensor([s[1] for s in spec], dtype=code.dtype)
        hi = torch.tensor([s[2] for s in spec], dtype=code.dtype)
        self._v = lo + (hi - lo) * code
        self._names = {n: i for i, (n, _, _) in enumerate(spec)}

    def __getattr__(self, name: str) -> torch.Tensor:
        try:
            return self._v[:, self._names[name]]
        except KeyError:
            raise AttributeError(name) from None


# ---------------------------------------------------------------------------------------------
# Rotations (degrees in, [B,3,3] out), head-local frame (x right, y up, z towards the camera).
# ---------------------------------------------------------------------------------------------
def rot_yaw(deg: torch.Tensor) -> torch.Tensor:
    """Positive yaw turns the face (local +z) towards the image LEFT: (0,0,1) -> (-sin, 0, cos)."""
    a = torch.deg2rad(deg)
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, -s, z, o, z, s, z, c], -1).view(-1, 3, 3)


def rot_pitch(deg: torch.Tensor) -> torch.Tensor:
    """Positive pitch turns the face up: (0,0,1) -> (0, sin, cos)."""
    a = torch.deg2rad(deg)
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, s, z, -s, c], -1).view(-1, 3, 3)


def rot_roll(deg: torch.Tensor) -> torch.Tensor:
    """Positive roll turns the head counter-clockwise in the image: top (0,1,0) -> (-sin, cos, 0)."""
    a = torch.deg2rad(deg)
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).view(-1, 3, 3)


# local (y up, z to camera) -> camera (y down, z forward): a proper rotation (two axis flips)
FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))

CAM_DIST = 10.0  # camera distance to the head pivot (head half-height ~ 1)
HALF_VIEW = 1.2  # half the image width, in head units at the pivot's depth
TAN_HALF_FOV = HALF_VIEW / CAM_DIST  # ~7.7 degrees half field of view
BODY_YAW_SHARE = 0.3  # the torso follows 30% of the head's yaw, none of its pitch/roll

# primitive ids (order matters: the mask and the shading select by id)
CRANIUM, JAW, CHIN, BROW, NOSE, TIP, ALA_L, ALA_R, LIPS, EAR_L, EAR_R, HAIR, LONG_HAIR, NECK, TORSO = range(15)
NUM_PRIMS = 15
FACE_PRIMS = (CRANIUM, JAW, CHIN, BROW, NOSE, TIP, ALA_L, ALA_R, LIPS)  # the "face mask" set
SKIN_PRIMS = FACE_PRIMS + (EAR_L, EAR_R, NECK)


def _front_z(x, y, c, r):
    """z of the front surface of an axis-aligned ellipsoid (centre c [B,3], radii r [B,3]) at (x, y)."""
    q = 1 - ((x - c[:, 0]) / r[:, 0]) ** 2 - ((y - c[:, 1]) / r[:, 1]) ** 2
    return c[:, 2] + r[:, 2] * q.clamp_min(0).sqrt()


def _rot_x(a):  # radians [B] -> [B,3,3] about local x
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], -1).view(-1, 3, 3)


def _rot_y(a):
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).view(-1, 3, 3)


def has_long_hair(a) -> torch.Tensor:
    """35% of identities have long hair (never the balding ones)."""
    return (a.long_hair < 0.35) & (a.bald >= 0.08)


def local_primitives(a: Attrs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Identity attributes -> primitives in head-local (or body-local for neck/torso) coordinates.

    Returns centres [B,K,3], radii [B,K,3], orientations [B,K,3,3] (columns = ellipsoid axes) and
    enabled [B,K] bool (long hair is optional).
    """
    B = a.head_w.shape[0]
    dt = a.head_w.dtype
    zeros, ones = torch.zeros(B, dtype=dt), torch.ones(B, dtype=dt)
    eye3 = torch.eye(3, dtype=dt).expand(B, 3, 3)

    def v3(x, y, z):
        return torch.stack([x + zeros, y + zeros, z + zeros], -1)

    cen, rad, rot = [], [], []

    def add(c, r, R=None):
        cen.append(c), rad.append(r), rot.append(eye3 if R is None else R)

    c_cr, r_cr = v3(0.0, 0.08, -0.05), v3(a.head_w, a.head_h, a.head_d)
    add(c_cr, r_cr)
    c_jaw, r_jaw = v3(0.0, a.jaw_y, 0.2), v3(a.jaw_w, a.jaw_h, a.jaw_d)
    add(c_jaw, r_jaw)

    def front(x, y):  # the face's front surface before the small parts are added
        return torch.maximum(_front_z(x + zeros, y + zeros, c_cr, r_cr), _front_z(x + zeros, y + zeros, c_jaw, r_jaw))

    chin_y = a.jaw_y - a.jaw_h * 0.82
    add(v3(0.0, chin_y, front(0.0, chin_y) - a.chin_r + a.chin_fwd + 0.02), v3(a.chin_r * 1.25, a.chin_r * 0.8, a.chin_r))
    by = a.eye_y + a.brow_dy
    add(v3(0.0, by, front(0.0, by) - 0.1 + a.brow_ridge), v3(0.42 * ones, 0.11 * ones, 0.1 * ones))
    # nose bridge: tilted so that its lower end sticks out more (profile silhouette)
    top, bot = a.eye_y + 0.03, a.eye_y - a.nose_len
    mid = 0.5 * (top + bot)
    tilt = torch.atan2(a.nose_out, a.nose_len)
    add(v3(0.0, mid, front(0.0, mid) - 0.09 + 0.55 * a.nose_out), v3(a.nose_w * 0.75, 0.5 * a.nose_len + 0.04, 0.1 * ones), _rot_x(-tilt))
    zb = front(0.0, bot)
    add(v3(0.0, bot + 0.02, zb + a.nose_out - 0.35 * a.nose_tip_r), v3(a.nose_tip_r, a.nose_tip_r * 0.95, a.nose_tip_r))
    for side in (-1.0, 1.0):
        add(v3(side * (a.nose_w + 0.015), bot + 0.02, zb + 0.3 * a.nose_out - 0.035), v3(0.055 * ones, 0.045 * ones, 0.06 * ones))
    add(v3(0.0, a.mouth_y, front(0.0, a.mouth_y) - 0.06 + a.lip_out), v3(a.mouth_w * 1.05, a.lip_h * 1.6, 0.08 * ones))
    ex = a.head_w * (1 - ((a.ear_y - 0.08) / a.head_h) ** 2).clamp_min(0.2).sqrt()
    for side in (-1.0, 1.0):
        # flat side facing out and a little forward, top leaning back
        R = _rot_y(side * torch.full_like(ex, -0.35)) @ _rot_x(torch.full_like(ex, -0.2))
        add(v3(side * (ex - 0.01 + a.ear_out), a.ear_y, -0.08 + zeros), v3(0.055 * ones, a.ear_size, a.ear_size * 0.62), R)
    # hair shell: a bigger cranium; where it is hair is decided per point (world_shading.hair_region)
    add(c_cr + v3(0.0, 0.02 + 0.5 * a.hair_top, -0.03), r_cr * a.hair_vol[:, None] + v3(0.0, 0.5 * a.hair_top, 0.02))
    add(v3(0.0, -0.45 - 0.25 * a.long_len, -0.32), v3(a.head_w * a.long_w, 0.55 + 0.5 * a.long_len, 0.42 * ones))
    add(v3(0.0, -1.1, -0.1), v3(a.neck_w, 0.75 * ones, a.neck_w))
    add(v3(0.0, -1.88, -0.2), v3(1.8 * a.shoulder_w, 0.75 * ones, 0.65 * ones))
    enabled = torch.ones(B, NUM_PRIMS, dtype=torch.bool)
    long = has_long_hair(a)
    enabled[:, LONG_HAIR] = long
    enabled[:, EAR_L] = enabled[:, EAR_R] = ~long  # long hair covers the ears
    return torch.stack(cen, 1), torch.stack(rad, 1), torch.stack(rot, 1), enabled


def place(cen, rad, rot, M_head, M_body, T):
    """Local primitives -> camera frame. M_* [B,3,3] map local directions to the camera, T [B,3].

    Returns A [B,K,3,3] (x_cam -> unit-sphere coords: q = A (x - c)) and c [B,K,3] in the camera.
    """
    K = cen.shape[1]
    body = torch.zeros(K, dtype=torch.bool)
    body[[NECK, TORSO]] = True
    M = torch.where(body[None, :, None, None], M_body[:, None], M_head[:, None])  # [B,K,3,3]
    c_cam = (M @ cen[..., None])[..., 0] + T[:, None]
    axes_cam = M @ rot  # columns: ellipsoid axes in the camera frame
    A = axes_cam.transpose(-1, -2) / rad[..., None]
    return A, c_cam


def tile_size(res: int) -> int:
    """Pixels are processed in square tiles (culling unit): the largest of 8, 4, 2, 1 dividing res."""
    return next(t for t in (8, 4, 2, 1) if res % t == 0)


def pixel_grid(res: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in normalised image coords [-1, 1]: u (x right), v (y down), each [res*res],
    in TILE-MAJOR order (tile row, tile col, row in tile, col in tile); see `to_raster`."""
    ts = tile_size(res)
    g = (torch.arange(res, dtype=torch.float64) * 2 + 1) / res - 1
    g = g.view(res // ts, ts)
    v = g[:, None, :, None].expand(-1, res // ts, ts, ts)
    u = g[None, :, None, :].expand(res // ts, -1, ts, ts)
    return u.reshape(-1).to(dtype), v.reshape(-1).to(dtype)


def to_raster(x: torch.Tensor, res: int) -> torch.Tensor:
    """[B, res*res, C] in tile-major order -> [B, C, res, res] image."""
    ts, B, C = tile_size(res), x.shape[0], x.shape[-1]
    n = res // ts
    return x.view(B, n, n, ts, ts, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, res, res)


def _shift(coef: torch.Tensor, u0: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """Re-expand p(u,v) = [u^2, uv, v^2, u, v, 1] . coef around (u0, v0): same basis in (u-u0, v-v0).
    Local expansion keeps the float32 evaluation well conditioned."""
    A, Bq, C, D, E, F = coef.unbind(-1)
    return torch.stack([A, Bq, C, 2 * A * u0 + Bq * v0 + D, Bq * u0 + 2 * C * v0 + E,
                        A * u0 * u0 + Bq * u0 * v0 + C * v0 * v0 + D * u0 + E * v0 + F], -1)


BACK_HAIR = NUM_PRIMS  # pseudo primitive id: a hit on the far (inner) side of the hair shell


def screen_bounds(c: torch.Tensor, rad: torch.Tensor):
    """Conservative screen box of each primitive (its bounding sphere): centre (pu, pv) and half
    extents (ext_u, ext_v) in normalised image coords; c [...,3] camera-frame centres, rad [...,3]."""
    s = TAN_HALF_FOV
    r = rad.max(-1).values
    cz = c[..., 2].clamp_min(r * 1.01 + 1e-3)
    ext_u = r * (cz + c[..., 0].abs()) / ((cz - r) * cz) / s
    ext_v = r * (cz + c[..., 1].abs()) / ((cz - r) * cz) / s
    return c[..., 0] / (cz * s), c[..., 1] / (cz * s), ext_u, ext_v


def cast(A: torch.Tensor, c: torch.Tensor, rad: torch.Tensor, enabled: torch.Tensor, res: int, hair_fn):
    """Nearest hit of every pixel ray, with tile culling.

    A [B,K,3,3], c [B,K,3], rad [B,K,3] (float64), enabled [B,K]. hair_fn(q [M,P,3], b [M]) -> bool [M,P]
    says whether a point of the hair shell (its unit-sphere coords, image b) is hair. Returns depth
    t [B,N] (inf = background) and primitive id k [B,N] (BACK_HAIR for the shell's far side), with
    pixels in tile-major order. Each ray-ellipsoid quadratic has coefficients that are quadratics
    in (u, v): they are built per primitive, re-expanded per (image, primitive, tile) and evaluated
    only where the primitive's projected bounding box meets the tile.
    """
    B, K = A.shape[:2]
    s = TAN_HALF_FOV
    P, Q, W = s * A[..., :, 0], s * A[..., :, 1], A[..., :, 2]  # m(u,v) = A d = u P + v Q + W
    o = -(A @ c[..., None])[..., 0]
    dot = lambda x, y: (x * y).sum(-1)  # noqa: E731
    a_coef = torch.stack([dot(P, P), 2 * dot(P, Q), dot(Q, Q), 2 * dot(P, W), 2 * dot(Q, W), dot(W, W)], -1)
    b1, b2, b3 = dot(o, P), dot(o, Q), dot(o, W)
    cc = dot(o, o) - 1
    z = torch.zeros_like(b1)
    b_coef = torch.stack([z, z, z, b1, b2, b3], -1)
    d_coef = torch.stack([b1 * b1, 2 * b1 * b2, b2 * b2, 2 * b1 * b3, 2 * b2 * b3, b3 * b3], -1) - cc[..., None] * a_coef
    pu, pv, ext_u, ext_v = screen_bounds(c, rad)
    ts = tile_size(res)
    nt = res // ts
    tc = (torch.arange(nt, dtype=torch.float64) * ts * 2 + ts) / res - 1  # tile centres
    tv, tu = [x.reshape(-1) for x in torch.meshgrid(tc, tc, indexing="ij")]
    half = ts / res
    act = (((tu - pu[..., None]).abs() <= half + ext_u[..., None]) & ((tv - pv[..., None]).abs() <= half + ext_v[..., None])
           & enabled[..., None])  # [B,K,T]
    bi, ki, ti = act.nonzero(as_tuple=True)
    u0, v0 = tu[ti], tv[ti]
    coef = torch.stack([_shift(a_coef[bi, ki], u0, v0), _shift(b_coef[bi, ki], u0, v0), _shift(d_coef[bi, ki], u0, v0)], 1)
    off = (torch.arange(ts, dtype=torch.float64) * 2 + 1 - ts) / res
    oy, ox = [x.reshape(-1) for x in torch.meshgrid(off, off, indexing="ij")]
    phi = torch.stack([ox * ox, ox * oy, oy * oy, ox, oy, torch.ones_like(ox)])  # [6, ts*ts]
    ev = (coef.float() @ phi.float())  # [M,3,ts*ts]
    qa, qb, disc = ev.unbind(1)
    hit = disc > 0
    sq = disc.clamp_min(0).sqrt()
    t1 = (-qb - sq) / qa
    t = torch.where(hit, t1, torch.full_like(t1, float("inf")))
    hr = (ki == HAIR).nonzero(as_tuple=True)[0]
    if len(hr):
        # pixel ray directions of those rows, then the shell's unit-sphere coords at both hits
        d = torch.stack([(u0[hr, None] + ox) * s, (v0[hr, None] + oy) * s, torch.ones(len(hr), ts * ts, dtype=torch.float64)], -1).float()
        Ah, ch = A[bi[hr], HAIR].float()[:, None], c[bi[hr], HAIR].float()[:, None]  # [H,1,3,3], [H,1,3]
        t2 = (-qb[hr] + sq[hr]) / qa[hr]
        q_of = lambda tt: matvec(Ah, tt[..., None] * d - ch)  # noqa: E731
        reg1, reg2 = hair_fn(q_of(t1[hr]), bi[hr]), hair_fn(q_of(t2), bi[hr])
        h = hit[hr]
        inf = torch.full_like(t2, float("inf"))
        t[hr] = torch.where(h & reg1, t1[hr], inf)
        # the far side of the shell goes to its own slot (a pseudo primitive) of the depth buffer
        kh = torch.full((len(hr),), BACK_HAIR, dtype=ki.dtype)
        bi, ki, ti = torch.cat([bi, bi[hr]]), torch.cat([ki, kh]), torch.cat([ti, ti[hr]])
        t = torch.cat([t, torch.where(h & ~reg1 & reg2, t2, inf)])
    # nearest hit per pixel through a small dense depth buffer [B, K+1, tiles, ts*ts]; min() picks
    # the first primitive on ties, so the result does not depend on the batch
    buf = torch.full((B, K + 1, nt * nt, ts * ts), float("inf"))
    buf[bi, ki, ti] = t
    tmin, kmin = buf.view(B, K + 1, -1).min(1)
    return tmin, kmin


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dot product over a last dim of 3 (explicit: much faster than sum(-1) on CPU)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def matvec(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """M [...,3,3] @ x [...,3] -> [...,3], written out (batched tiny matmuls are slow on CPU)."""
    return M[..., :, 0] * x[..., 0:1] + M[..., :, 1] * x[..., 1:2] + M[..., :, 2] * x[..., 2:3]


def matTvec(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """M^T @ x, M [...,3,3], x [...,3]."""
    return M[..., 0, :] * x[..., 0:1] + M[..., 1, :] * x[..., 1:2] + M[..., 2, :] * x[..., 2:3]


def ray_hit(A: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-ray nearest hit with one ellipsoid each: A [M,3,3], c [M,3], d [M,3] (ray t*d).
    Returns t [M] (inf on a miss) and the unit outward normal [M,3] at the hit."""
    m = matvec(A, d)
    o = -matvec(A, c)
    a, b, cc = dot(m, m), dot(o, m), dot(o, o) - 1
    disc = b * b - a * cc
    t = torch.where(disc > 0, (-b - disc.clamp_min(0).sqrt()) / a, torch.full_like(a, float("inf")))
    q = o + t.nan_to_num(posinf=0.0)[:, None] * m
    n = torch.nn.functional.normalize(matTvec(A, q), dim=-1)
    return t, n
