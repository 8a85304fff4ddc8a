"""Appearance of the synthetic face world: hair region, albedo (skin, eyes, brows, lips, hair,
clothes), screen-space backgrounds, Blinn-Phong lighting, blur and sensor noise.

All per-pixel functions take [B, N] / [B, N, 3] tensors (N = pixels) and return the same; colours
are linear values in [0, 1]. Only `synthetic.py` is meant to import this module.
"""
from __future__ import annotations


import torch

from . import world_geometry as geom

SKIN_TONES = torch.tensor([
    [0.97, 0.82, 0.71], [0.92, 0.72, 0.58], [0.80, 0.59, 0.44], [0.64, 0.44, 0.30], [0.42, 0.28, 0.19],
])
HAIR_COLOURS = torch.tensor([  # black, dark brown, brown, chestnut, dark blond, blond, auburn, grey
    [0.05, 0.04, 0.035], [0.14, 0.09, 0.06], [0.28, 0.18, 0.10], [0.40, 0.24, 0.13],
    [0.55, 0.43, 0.27], [0.78, 0.64, 0.40], [0.50, 0.20, 0.09], [0.62, 0.60, 0.58],
])
HAIR_CDF = torch.tensor([0.30, 0.50, 0.64, 0.74, 0.83, 0.90, 0.95, 1.0])  # black hair is most common
EYE_COLOURS = torch.tensor([[0.10, 0.06, 0.04], [0.25, 0.15, 0.07], [0.33, 0.28, 0.12], [0.25, 0.38, 0.55], [0.24, 0.36, 0.22]])
EYE_CDF = torch.tensor([0.45, 0.70, 0.80, 0.92, 1.0])


def _lerp_palette(pal: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear palette lookup, u [B] in [0,1] -> [B,3]."""
    x = u.clamp(0, 1) * (len(pal) - 1)
    i = x.floor().long().clamp(max=len(pal) - 2)
    w = (x - i)[:, None]
    return pal[i].to(u.dtype) * (1 - w) + pal[i + 1].to(u.dtype) * w


def _pick(pal: torch.Tensor, cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    i = torch.searchsorted(cdf.to(u.dtype), u.contiguous(), right=True).clamp(max=len(pal) - 1)
    return pal[i].to(u.dtype)


def colours(a: geom.Attrs) -> dict[str, torch.Tensor]:
    """Per-identity colours [B,3] (float32)."""
    skin = _lerp_palette(SKIN_TONES, a.skin_tone)
    skin = skin * torch.stack([1 + 0.04 * a.skin_red, 1 - 0.02 * a.skin_red, 1 - 0.03 * a.skin_red], -1)
    hair = (_pick(HAIR_COLOURS, HAIR_CDF, a.hair_col) * a.hair_bright[:, None]).clamp(0, 1)
    lips = skin * torch.stack([0.92 + 0.0 * a.lip_red, 0.62 - 0.12 * a.lip_red, 0.62 - 0.1 * a.lip_red], -1)
    cloth = torch.stack([a.cloth_r, a.cloth_g, a.cloth_b], -1)
    bg1 = torch.stack([a.bg1_r, a.bg1_g, a.bg1_b], -1)
    bg2 = torch.stack([a.bg2_r, a.bg2_g, a.bg2_b], -1)
    eye = _pick(EYE_COLOURS, EYE_CDF, a.eye_col)
    # photo backgrounds are rarely saturated: pull the palette halfway to its grey
    bg1 = 0.5 * bg1 + 0.5 * bg1.mean(-1, keepdim=True)
    bg2 = 0.5 * bg2 + 0.5 * bg2.mean(-1, keepdim=True)
    out = dict(skin=skin, hair=hair, lips=lips, cloth=cloth, bg1=bg1, bg2=bg2, eye=eye)
    return {k: v.float() for k, v in out.items()}


class PixelAttrs:
    """Per-pixel view of per-image attributes: `pa.head_w` -> [M] float32 (gathered by image index).
    Painting on compacted pixel lists keeps the cost proportional to the pixels that need it."""

    def __init__(self, attrs: geom.Attrs, colours: dict, b: torch.Tensor):
        self._a, self._c, self.b = attrs, colours, b
        self._cache: dict[str, torch.Tensor] = {}

    def __getattr__(self, name: str) -> torch.Tensor:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._cache:
            self._cache[name] = getattr(self._a, name).float()[self.b]
        return self._cache[name]

    def col(self, name: str) -> torch.Tensor:  # [M,3]
        key = "col:" + name
        if key not in self._cache:
            self._cache[key] = self._c[name][self.b]
        return self._cache[key]

    def sub(self, idx: torch.Tensor) -> "PixelAttrs":
        return PixelAttrs(self._a, self._c, self.b[idx])


def _soft(x: torch.Tensor, width: float) -> torch.Tensor:
    """Soft step: 0 for x << -width, 1 for x >> width (anti-aliased edges of painted features)."""
    return torch.sigmoid(x / width)


def _hash_noise(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cell noise in [0,1): an integer hash of the unit cell (floor(x), floor(y)). Integer arithmetic
    (not the usual fract(sin(.) * 43758)) so that it is bit-identical on every CPU."""
    h = x.floor().long() * 73856093 ^ y.floor().long() * 19349663
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).float() / float(1 << 24)


def hair_region(q: torch.Tensor, a: PixelAttrs) -> torch.Tensor:
    """Is a point of the hair shell hair? q [M,P,3]: points in the shell's unit-sphere coordinates
    (x right, y up, z front), a: attributes of the M rows. The hairline is high at the front (with a
    side fringe and a wave, both asymmetric), lower at the sides and lowest at the back; a few
    identities are balding. Returns bool [M,P]."""
    qx, qy, qz = q.unbind(-1)
    col = lambda x: x[:, None]  # noqa: E731
    cf = qz / (qx * qx + qz * qz).add(1e-6).sqrt()  # cosine of the azimuth: 1 front, -1 back
    front_h = col(a.hairline) - col(a.fringe) * torch.sigmoid(6 * col(a.part) * qx) + col(a.hair_wave) * torch.sin(11 * qx + col(a.hair_phase))
    long = geom.has_long_hair(a)
    side_h = col(torch.where(long, a.hair_side - 0.45, a.hair_side))
    back_h = col(torch.where(long, a.hair_back - 0.3, a.hair_back))
    line = torch.where(cf > 0, side_h + (front_h - side_h) * cf.clamp_min(0).square(), side_h + (back_h - side_h) * (-cf).clamp_min(0))
    hair = qy > line
    bald = col(a.bald < 0.08)
    return hair & ~(bald & ((qy > 0.35) | (cf > 0.2)))


def _face_paint(c, k, X, Y, Z, q, a: PixelAttrs):
    """Eyes, brows, lips, cheeks, beard, nostrils, mole on skin pixels of the face front. [M,3]."""
    skin = a.col("skin")
    front = _soft(Z - 0.25, 0.05)
    ey0 = a.eye_y
    red = torch.tensor([0.5, -0.25, -0.25])
    for s in (-1.0, 1.0):
        g = torch.exp(-((X - s * 0.36) ** 2 + (Y - ey0 + 0.3) ** 2) / 0.02)
        c = c + (a.cheek_red * g)[:, None] * red
        sock = torch.exp(-((X - s * a.eye_sep) ** 2 / 0.02 + (Y - ey0 + 0.01) ** 2 / 0.01))
        c = c * (1 - 0.3 * sock * front)[:, None]
    # beard / moustache (some identities)
    beard = (a.beard < 0.18) & (k != geom.LIPS)
    stub = _hash_noise(X * 40, Y * 40)
    bmask = (_soft(a.mouth_y + 0.07 - Y, 0.02) * _soft(Z + 0.1, 0.05) * _soft(0.55 - X.abs() + Y, 0.05)
             + _soft(0.035 - (Y - a.mouth_y - a.lip_h * 1.6 - 0.03).abs(), 0.01) * _soft(a.mouth_w + 0.03 - X.abs(), 0.02))
    bden = (bmask.clamp(0, 1) * a.beard_density * (0.6 + 0.4 * stub)) * beard
    c = c + (a.col("hair") - c) * bden[:, None]
    # brows (hair colour, darkened)
    dark = a.brow_dark[:, None]
    browc = a.col("hair") * dark + skin * 0.35 * (1 - dark)
    for s in (-1.0, 1.0):
        bx = (X - s * (a.eye_sep + 0.02)) / a.brow_len
        yb = ey0 + a.brow_dy + a.brow_arch * (1 - bx * bx) + s * a.brow_tilt * bx * 0.1
        thick = a.brow_thick * (1.1 - 0.4 * (bx + 0.3 * s) ** 2).clamp_min(0.2)
        m = _soft(thick - (Y - yb).abs(), 0.008) * _soft(1 - bx.abs(), 0.08) * front
        c = c + (browc - c) * (0.9 * m)[:, None]
    # eyes: almond of sclera, coloured iris, pupil, dark upper lid / lashes
    white = torch.tensor([0.85, 0.82, 0.78])
    for s in (-1.0, 1.0):
        dx, dy = X - s * a.eye_sep, Y - ey0
        ex, ey = dx / a.eye_w, dy / a.eye_h
        inside = _soft(1 - ex * ex - ey * ey * (1 + 0.6 * ex * ex), 0.08) * front
        r = (dx * dx + dy * dy).sqrt() / (a.eye_h * 0.9)
        eyec = white + (a.col("eye") - white) * _soft(1 - r, 0.08)[:, None]
        eyec = eyec * (1 - 0.85 * _soft(0.45 - r, 0.06))[:, None]
        c = c + (eyec - c) * inside[:, None]
        lid = _soft(0.35 - (ex * ex + (ey - 0.85) ** 2 * 2.5 - 0.6).abs(), 0.1) * _soft(ey + 0.2, 0.1) * _soft(1.3 - ex.abs(), 0.1) * front
        c = c * (1 - 0.8 * lid)[:, None]
    # lips and the mouth line
    lipm = (k == geom.LIPS).float() * _soft(1 - (X / (a.mouth_w * 1.02)) ** 2 - ((Y - a.mouth_y) / (a.lip_h * 1.45)) ** 2, 0.1)
    c = c + (a.col("lips") - c) * lipm[:, None]
    line = _soft(0.011 - (Y - a.mouth_y + 0.04 * (X / a.mouth_w) ** 2).abs(), 0.004) * _soft(a.mouth_w * 0.92 - X.abs(), 0.01) * front
    c = c * (1 - 0.7 * line)[:, None]
    # nostrils: undersides of the nose tip and alae
    nose = ((k == geom.TIP) | (k == geom.ALA_L) | (k == geom.ALA_R)).float()
    nos = nose * _soft(-0.61 - q[:, 1], 0.08) * _soft(X.abs() - 0.015, 0.006)
    c = c * (1 - 0.5 * nos)[:, None]
    mole = (a.mole < 0.3) * torch.exp(-((X - a.mole_x) ** 2 + (Y - a.mole_y) ** 2) / 0.0004) * front
    return c * (1 - 0.5 * mole)[:, None]


def albedo(k: torch.Tensor, xl: torch.Tensor, xb: torch.Tensor, q: torch.Tensor, a: PixelAttrs) -> torch.Tensor:
    """Unlit colour [M,3] of hit pixels: primitive id k [M], head-local xl, body-local xb and
    primitive-local unit-sphere coords q (all [M,3])."""
    X, Y, Z = xl.unbind(-1)
    skin = a.col("skin")
    # symmetric base with small asymmetric detail (a tilted low-frequency blotch)
    c = skin * (1 + 0.05 * torch.sin(a.blotch_fx * X + a.blotch_fy * Y + a.blotch_ph))[:, None]
    isface = torch.zeros_like(k, dtype=torch.bool)
    for p in geom.FACE_PRIMS:
        isface |= k == p
    fi = (isface & (Z > 0.05)).nonzero(as_tuple=True)[0]
    if len(fi):
        c[fi] = _face_paint(c[fi], k[fi], X[fi], Y[fi], Z[fi], q[fi], a.sub(fi))
    # ears: darker bowl; neck: shadowed under the jaw
    ear = ((k == geom.EAR_L) | (k == geom.EAR_R)).float() * _soft(0.6 - (q[:, 1] ** 2 + q[:, 2] ** 2).sqrt(), 0.1)
    c = c * (1 - 0.15 * ear)[:, None]
    XB, YB, ZB = xb.unbind(-1)
    neckshade = 1 - 0.35 * _soft(YB + 0.75, 0.1)
    c = torch.where((k == geom.NECK)[:, None], skin * 0.9 * neckshade[:, None], c)
    hi = ((k == geom.HAIR) | (k == geom.LONG_HAIR)).nonzero(as_tuple=True)[0]
    if len(hi):  # hair: strands following the azimuth
        ah = a.sub(hi)
        qx, qy, qz = q[hi].unbind(-1)
        az = torch.atan2(qx, qz)
        strand = torch.sin(37 * az + 9 * qy + 3 * torch.sin(5 * qy + ah.hair_phase)) * torch.sin(11 * az + ah.hair_phase)
        c[hi] = ah.col("hair") * (0.86 + 0.1 * strand + 0.1 * _hash_noise(az * 30, qy * 5))[:, None]
    ti = (k == geom.TORSO).nonzero(as_tuple=True)[0]
    if len(ti):  # clothes, with a round neckline showing skin and optional stripes
        at = a.sub(ti)
        xt, yt, zt = XB[ti], YB[ti], ZB[ti]
        stripes = torch.where(at.stripes < 0.3, 0.8 + 0.2 * torch.sign(torch.sin(at.stripe_f * yt)), torch.ones_like(yt))
        cloth = at.col("cloth") * stripes[:, None]
        neckline = _soft(1 - (xt / 0.55) ** 2 - ((yt + 1.12) / 0.3) ** 2, 0.05) * _soft(zt, 0.05)
        c[ti] = cloth + (at.col("skin") * 0.8 - cloth) * neckline[:, None]
    return c.clamp(0, 1)


def background(u: torch.Tensor, v: torch.Tensor, a: PixelAttrs) -> torch.Tensor:
    """Textured screen-space background [M,3] at image coords u, v [M]: two-colour gradient, a soft
    blob, gratings and fine noise; the identity picks the palette, each image shifts and
    re-brightens it (`a` must also carry the image attributes bg_dx, bg_dy, bg_bright)."""
    U, V = u + a.bg_dx, v + a.bg_dy
    g = torch.sigmoid((U * a.bg_angle.cos() + V * a.bg_angle.sin()) * a.bg_grad)
    c = a.col("bg1") * (1 - g[:, None]) + a.col("bg2") * g[:, None]
    blob = torch.exp(-((U - a.blob_x) ** 2 + (V - a.blob_y) ** 2) / a.blob_r ** 2)
    c = c + (a.blob_amp * blob)[:, None]
    tex = torch.sin(a.bg_fx * U * 3) * torch.sin(a.bg_fy * V * 3 + 2 * U)
    c = c * (1 + a.bg_tex * tex + 0.04 * (_hash_noise(U * 50, V * 50) - 0.5))[:, None]
    return (c * a.bg_bright[:, None]).clamp(0, 1)


def shade(alb, n, view, k, a: PixelAttrs, ambient, diffuse, light) -> torch.Tensor:
    """Blinn-Phong: alb * (ambient + diffuse * max(n.l, 0)) + ks * diffuse * max(n.h, 0)^shin.

    alb, n (unit normals), view (unit, towards the camera), ambient, diffuse, light (unit, towards
    the light, camera frame): all [M,3]."""
    ndl = geom.dot(n, light).clamp_min(0)
    h = torch.nn.functional.normalize(light + view, dim=-1)
    ndh = geom.dot(n, h).clamp_min(0)
    skin = torch.zeros_like(k, dtype=torch.bool)
    for p in geom.SKIN_PRIMS:
        skin |= k == p
    ishair = (k == geom.HAIR) | (k == geom.LONG_HAIR)
    ks = torch.where(skin, a.skin_spec, torch.where(ishair, 0.1, 0.03)) * a.spec_scale
    shin = torch.where(skin, a.skin_shin, torch.where(ishair, 12.0, 6.0))
    spec = ks * ndh.clamp_min(1e-6).pow(shin)
    return alb * (ambient + diffuse * ndl[:, None]) + spec[:, None] * diffuse


def blur(img: torch.Tensor, sigma_px: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma [B] (pixels). A fixed `radius` keeps every
    image's result independent of the rest of the batch."""
    if radius <= 0:
        return img
    offs = torch.arange(-radius, radius + 1, dtype=img.dtype)
    w = torch.exp(-0.5 * (offs[None] / sigma_px[:, None].clamp_min(1e-3)) ** 2)
    w = w / w.sum(1, keepdim=True)  # [B, taps]
    out = img
    for dim in (3, 2):
        pad = [0, 0, 0, 0]
        pad[0 if dim == 3 else 2] = radius
        pad[1 if dim == 3 else 3] = radius
        p = torch.nn.functional.pad(out, pad, mode="replicate")
        L = out.shape[dim]
        acc = torch.zeros_like(out)
        for j in range(2 * radius + 1):
            acc = acc + w[:, j, None, None, None] * p.narrow(dim, j, L)
        out = acc
    return out
