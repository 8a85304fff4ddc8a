"""Stage 3 end to end on stand-ins with KNOWN answers.

The stand-in generator is linear (w = A z + b) and paints w into the image; the stand-in decomposer
reads w back and returns semantics and canonical maps that are planted linear functions of w. So the
true univariate gradients, sigma_w, the calibration and J* are known exactly, and J* is planted as
a sparse, localized factorisation U V^T whose components the stage must find and place.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from facedis_aug.directions.config import DirectionsConfig
from facedis_aug.directions.jacobian import canonical_scales, canonical_stack, jacobian_from_samples
from facedis_aug.directions.semantics import (SEMANTICS, decompose_latents, measure_semantics,
                                              sample_w, univariate_from_samples)
from facedis_aug.directions.stage import compute_directions, region_masks
from facedis_aug.ops.io import load_safetensors, read_json

D = 8  # latent size of the stand-ins
SIZE = 64  # canonical map side


class _Mapping(nn.Module):
    def __init__(self, A: Tensor, b: Tensor):
        super().__init__()
        self.register_buffer("A", A)
        self.register_buffer("b", b)
        self.register_buffer("w_avg", b.clone())
        self.z_dim, self.w_dim = A.shape[1], A.shape[0]

    def forward(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        w = z @ self.A.T + self.b
        return self.w_avg.lerp(w, truncation_psi) if truncation_psi != 1.0 else w


PAINT = 64.0  # the stand-in image holds w / PAINT: inside [-1, 1] even 12 sigma along a direction


class _Synthesis(nn.Module):
    """Writes w / PAINT into the first d values of the image (the rest is 0)."""

    def __init__(self, w_dim: int, resolution: int):
        super().__init__()
        self.w_dim, self.resolution = w_dim, resolution

    def forward(self, w: Tensor, noise_mode: str = "const") -> Tensor:
        img = torch.zeros(w.shape[0], 3 * self.resolution**2, dtype=w.dtype, device=w.device)
        img[:, : self.w_dim] = w / PAINT
        return img.view(-1, 3, self.resolution, self.resolution)


class StandInG(nn.Module):
    """Same interface as gan.networks.Generator: mapping, synthesis, z_dim, w_dim."""

    def __init__(self, seed: int = 0, z_dim: int = D, w_dim: int = D, resolution: int = SIZE):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.mapping = _Mapping(0.7 * torch.randn(w_dim, z_dim, generator=g), 0.3 * torch.randn(w_dim, generator=g))
        self.synthesis = _Synthesis(w_dim, resolution)
        self.z_dim, self.w_dim, self.resolution = z_dim, w_dim, resolution
        self.anchor = nn.Parameter(torch.zeros(1))  # so next(G.parameters()) names the device


@dataclass
class _Out:
    view: Tensor
    light: Tensor
    albedo: Tensor
    depth: Tensor


def planted_factorisation(d: int = D, seed: int = 1) -> tuple[Tensor, Tensor, list[str]]:
    """Sparse U_true [S, 4] (disjoint blobs: 3 on the face, 1 in the background corner) and
    orthonormal V_true [d, 4]; returns (U, V, the true region of each component)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    blobs = [(22, 24, 0, 1.0), (22, 40, 1, 0.8), (44, 32, 3, 0.6), (4, 4, 2, 0.45)]  # row, col, channel, amplitude
    U = torch.zeros(4, SIZE, SIZE, 4, dtype=torch.float64)
    for p, (r, c, ch, amp) in enumerate(blobs):
        U[ch, :, :, p] = amp * ((y - r).abs() <= 3) * ((x - c).abs() <= 3)
    V, _ = torch.linalg.qr(torch.randn(d, 4, generator=g, dtype=torch.float64))
    return U.reshape(-1, 4), V, ["face", "face", "face", "background"]


class StandInDecomposer(nn.Module):
    """Reads w back from the stand-in image and returns planted linear semantics and maps."""

    def __init__(self, d: int = D, seed: int = 2):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        Av = torch.randn(6, d, generator=g, dtype=torch.float64) * torch.tensor([4.0, 10.0, 2.0, 0.05, 0.05, 0.0])[:, None]
        self.register_buffer("Av", Av)  # tz row is 0: the semantic never moves (like unsup3d's tz)
        self.register_buffer("cv", torch.tensor([1.0, -3.0, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64))
        self.register_buffer("Al", 0.1 * torch.randn(8, d, generator=g, dtype=torch.float64))
        self.register_buffer("cl", torch.full((8,), 0.5, dtype=torch.float64))
        U, V, _ = planted_factorisation(d)
        self.register_buffer("J", U @ V.T)  # [S, d] raw (albedo and depth units)
        self.image_size = SIZE
        self.d = d

    def forward(self, img: Tensor) -> _Out:
        assert img.shape[-1] == SIZE
        w = img.flatten(1)[:, : self.d].double() * PAINT
        maps = (w @ self.J.T).view(-1, 4, SIZE, SIZE) + 0.5
        return _Out(view=(w @ self.Av.T + self.cv).float(), light=(w @ self.Al.T + self.cl).float(),
                    albedo=maps[:, :3].float(), depth=maps[:, 3].float())  # fmt: skip


def tiny_cfg(**kw) -> DirectionsConfig:
    # the stand-in reads w off the image's first pixels, which a mirror moves: its readings are plain
    base = dict(num_pairs=48, num_samples=4000, jacobian_pairs=48, P=6, alpha=0.02, beta=1.0,
                solver="fast", iterations=40, num_clusters=2, seed=0, mirror_average=False)  # fmt: skip
    base.update(kw)
    return DirectionsConfig(**base)


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory) -> tuple[Path, dict, StandInG, StandInDecomposer]:
    torch.manual_seed(0)
    G, Dec = StandInG(), StandInDecomposer()
    out = tmp_path_factory.mktemp("directions")
    outputs = compute_directions(G, Dec, tiny_cfg(), out, batch_size=32, say=lambda s: None)
    return out, outputs, G, Dec


def _true_sigma(G: StandInG, v: Tensor) -> float:
    A = G.mapping.A.double()
    return float(torch.sqrt(v.double() @ A @ A.T @ v.double()))


# ------------------------------------------------------------------------------------------------


def test_planted_univariate_direction_recovered_end_to_end(stage_run):
    out, outputs, G, Dec = stage_run
    dirs, _ = load_safetensors(out / outputs["directions"])
    info = read_json(out / outputs["info"])["directions"]
    for j, name in enumerate(SEMANTICS[:6]):
        a = Dec.Av[j]
        if name == "tz":  # never moves: no direction, flagged, and not in the safetensors
            assert name not in dirs and info[name]["valid"] is False
            continue
        v = dirs[name].double()
        assert abs(float(v.norm()) - 1) < 1e-5
        assert float(v @ a / a.norm()) > 0.99, name  # same direction AND sign (s > 0 raises the semantic)
        assert info[name]["r2"] == pytest.approx(1.0, abs=1e-6)


def test_sigma_and_calibration_match_the_planted_world(stage_run):
    out, outputs, G, Dec = stage_run
    dirs, _ = load_safetensors(out / outputs["directions"])
    e = read_json(out / outputs["info"])["directions"]["yaw"]
    v = dirs["yaw"].double()
    sigma = _true_sigma(G, v)
    assert e["sigma"] == pytest.approx(sigma, rel=0.05)  # 4000 samples: std error ~1.1 %
    # read off edits (float32 images, a fitted direction): the planted slope to 1e-4
    assert e["units_per_sigma"] == pytest.approx(float(Dec.Av[1].norm()) * e["sigma"], rel=1e-4)
    assert e["regression_calibration"]["units_per_sigma"] == pytest.approx(float(Dec.Av[1].norm()) * e["sigma"], rel=1e-5)
    assert e["intercept"] == pytest.approx(float(Dec.cv[1]), abs=0.02)  # of a 90 deg-per-sigma planted yaw
    assert e["regression_calibration"]["intercept"] == pytest.approx(float(Dec.cv[1]), abs=1e-4)
    assert e["unit"] == "degrees"
    # the calibration predicts what an Eq. 4 edit does to the measured yaw
    from facedis_aug.ops.linear import edit_latent

    w = G.mapping(torch.randn(5, D, generator=torch.Generator().manual_seed(9)))
    s = torch.tensor([-4.0, -1.0, 0.0, 2.5, 4.0])
    yaw = measure_semantics(Dec, G.synthesis(edit_latent(w, v.float(), s, e["sigma"])))[:, 1]
    torch.testing.assert_close(yaw.double(), e["intercept"] + e["units_per_sigma"] * s.double(), atol=0.02, rtol=1e-4)


def test_jacobian_of_planted_linear_map_recovered():
    G, Dec = StandInG(), StandInDecomposer()
    z = torch.randn(96, D, generator=torch.Generator().manual_seed(3))
    w = G.mapping(z)
    out = Dec(G.synthesis(w))
    maps = canonical_stack(out.albedo, out.depth)
    res = jacobian_from_samples(w, maps, chunk=5000)  # chunk not dividing S: exercises the tail
    scales = res["scales"]
    per_row = torch.cat([scales[0].repeat(3 * SIZE * SIZE), scales[1].repeat(SIZE * SIZE)])
    torch.testing.assert_close(res["J"].double() * per_row[:, None], Dec.J, atol=2e-4, rtol=1e-3)
    # pixels that move are fitted exactly; pixels that never move have no R^2
    moving = Dec.J.abs().sum(1) > 0
    assert torch.all(res["r2"][moving] > 0.9999) and torch.isnan(res["r2"][~moving]).all()
    # normalisation: albedo untouched, depth brought to the albedo's pooled std
    from facedis_aug.directions.jacobian import normalise_maps

    assert float(scales[0]) == 1.0
    s2 = canonical_scales(normalise_maps(maps, scales))
    torch.testing.assert_close(s2, torch.ones(2, dtype=torch.float64), atol=1e-5, rtol=0)
    # from sampled latents (generate -> decompose -> regress, as the stage does) the same planted J
    w = sample_w(G, 48, 1, "cpu")
    dec = decompose_latents(G, Dec, w, 16, keep_maps=True)
    res2 = jacobian_from_samples(w.cpu(), canonical_stack(dec.albedo, dec.depth))
    per_row2 = torch.cat([res2["scales"][0].repeat(3 * SIZE * SIZE), res2["scales"][1].repeat(SIZE * SIZE)])
    torch.testing.assert_close(res2["J"].double() * per_row2[:, None], Dec.J, atol=2e-4, rtol=1e-3)


def test_canonical_scales_known_values():
    g = torch.Generator().manual_seed(0)
    maps = torch.cat([0.5 * torch.randn(4000, 3, 2, 2, generator=g), 0.02 * torch.randn(4000, 1, 2, 2, generator=g)], 1)
    torch.testing.assert_close(canonical_scales(maps), torch.tensor([1.0, 0.04], dtype=torch.float64), rtol=0.03, atol=0)
    # a group that never varies is left alone
    assert canonical_scales(torch.cat([maps[:, :3], torch.ones(4000, 1, 2, 2)], 1))[1] == 1.0


def test_localized_components_found_placed_and_clustered(stage_run):
    out, outputs, G, Dec = stage_run
    info = read_json(out / outputs["info"])
    dirs, _ = load_safetensors(out / outputs["directions"])
    local = {k: v for k, v in info["directions"].items() if v["kind"] == "local"}
    _, V_true, regions = planted_factorisation()
    assert info["localized"]["kept"] == len(local) == 4  # the P - 4 spare components are pruned
    for p in range(4):
        cos = {k: abs(float(dirs[k].double() @ V_true[:, p])) for k in local}
        best = max(cos, key=cos.get)
        assert cos[best] > 0.95, (p, cos)
        assert local[best]["region"] == regions[p]
        assert abs(float(dirs[best].norm()) - 1) < 1e-5
    assert info["localized"]["outside_face"] == 1 and info["localized"]["background"] == 1
    assert {e["cluster"] for e in local.values()} <= {0, 1}
    makeup = info["localized"]["clusters"]
    assert sum(c["size"] for c in makeup.values()) == 4 and sum(c["background"] for c in makeup.values()) == 1
    for c in makeup.values():
        assert c["size"] == c["face"] + c["around"] + c["background"]
    # local_000 is the strongest component
    norms = [local[k]["u_norm"] for k in sorted(local)]
    assert norms == sorted(norms, reverse=True)
    assert all(local[k]["sigma"] == pytest.approx(_true_sigma(G, dirs[k]), rel=0.05) for k in local)


def test_stage_writes_pictures_and_resumes(stage_run, tmp_path):
    out, outputs, G, Dec = stage_run
    from PIL import Image

    for key in ("strips_univariate", "strips_local", "strips_yaw", "reach_yaw", "dendrogram", "components"):
        with Image.open(out / outputs[key]) as im:
            assert im.format == "PNG" and im.size[0] > 64 and im.size[1] > 32, key
    # univariate strips: 13 valid semantics x 2 faces rows, 9 columns of s
    with Image.open(out / outputs["strips_univariate"]) as im:
        assert im.size[1] > 13 * 2 * SIZE
    with Image.open(out / outputs["strips_yaw"]) as im:  # 6 faces x 9 values of s along v_yaw
        assert im.size[1] > 6 * SIZE and im.size[0] > 9 * SIZE
    # a re-run with the same settings reuses both checkpoints and gives identical directions
    mtimes = {n: (out / n).stat().st_mtime_ns for n in ("regression.safetensors", "localized.safetensors")}
    compute_directions(G, Dec, tiny_cfg(), out, batch_size=32, pictures=False, say=lambda s: None)
    assert mtimes == {n: (out / n).stat().st_mtime_ns for n in mtimes}
    # changed settings are not served from the checkpoint
    compute_directions(G, Dec, tiny_cfg(P=5), out, batch_size=32, pictures=False, say=lambda s: None)
    assert (out / "localized.safetensors").stat().st_mtime_ns != mtimes["localized.safetensors"]


def test_univariate_needs_more_pairs_than_dims():
    with pytest.raises(ValueError, match="num_pairs"):
        compute_directions(StandInG(), StandInDecomposer(), tiny_cfg(num_pairs=D), Path("/nonexistent-never-written"),
                           say=lambda s: None)  # fmt: skip
    with pytest.raises(ValueError, match="jacobian_pairs"):
        compute_directions(StandInG(), StandInDecomposer(), tiny_cfg(jacobian_pairs=D), Path("/nonexistent-never-written"),
                           say=lambda s: None)  # fmt: skip


def test_univariate_from_sampled_latents():
    G, Dec = StandInG(), StandInDecomposer()
    w = sample_w(G, 80, 5, "cpu")
    sem = decompose_latents(G, Dec, w, 16, keep_maps=False).semantics
    res = univariate_from_samples(w, sem, sample_w(G, 200, 6, "cpu"))
    assert set(res["directions"]) == set(SEMANTICS) - {"tz"}


def test_region_masks_are_nested_ellipses():
    face, around = region_masks(SIZE)
    assert face[SIZE // 2, SIZE // 2] and not face[0, 0] and not around[0, 0]
    assert not (face & around).any()
    assert around[SIZE // 2, int(SIZE * 0.85)] and not face[SIZE // 2, int(SIZE * 0.85)]


def test_world_region_masks_are_central_disjoint_and_sized():
    from facedis_aug.data.config import SyntheticConfig
    from facedis_aug.directions.stage import world_region_masks

    face, around, source = world_region_masks(32, SyntheticConfig(), num_faces=8)
    assert face.shape == around.shape == (32, 32) and "synthetic world" in source
    assert not (face & around).any()
    assert 0.1 < face.float().mean() < 0.6 and around.any()
    assert face[16, 16] and not face[0, 0] and not around[0, 0]  # the face is central, corners are background


# ------------------------------------------------------------------------------------------------ calibration read off edits


class SaturatingDecomposer(StandInDecomposer):
    """The stand-in whose yaw reading stops at `lo` and `hi` degrees (a view head that saturates):
    linear in w inside, so the calibration line is known, and the reach follows from the clip alone."""

    def __init__(self, lo: float, hi: float, per_sigma: float = 5.0, G: StandInG | None = None):
        super().__init__()
        self.lo, self.hi = lo, hi
        a = self.Av[1]  # rescaled so that one sigma of w along it is `per_sigma` degrees, like a real view head
        self.Av[1] = a * per_sigma / (float(a.norm()) * _true_sigma(G or StandInG(), a / a.norm()))

    def forward(self, img: Tensor) -> _Out:
        out = super().forward(img)
        out.view[:, 1] = out.view[:, 1].clamp(self.lo, self.hi)
        return out


def test_delivered_reach_walks_outward_and_stops_at_the_first_miss():
    from facedis_aug.directions.reach import delivered_reach

    asked = [-30, -20, -10, 0, 10, 20, 30, 40]
    delivered = [-22, -19, -10, 0, 10, 20, 40, 40]  # -30 misses (8 > 4.5); +30 misses, +40 would pass again
    assert delivered_reach(asked, delivered) == (-20.0, 20.0)
    assert delivered_reach(asked, delivered, tol=0.3) == (-30.0, 20.0)
    assert delivered_reach([-5, 5, 10], [-5.9, 6.0, 10.0]) == (0.0, 0.0)  # 15% of 5 is 0.75: both miss at once
    assert delivered_reach([-5, 5, 10], [-5.9, 6.0, 10.0], floor=1.0) == (-5.0, 10.0)
    assert delivered_reach([-5, 5], [float("nan"), 5.0]) == (0.0, 5.0)  # a NaN reading is a miss
    with pytest.raises(ValueError, match="alike"):
        delivered_reach([1, 2], [1])


def test_edit_calibration_is_the_planted_line_and_reach_the_planted_saturation():
    from facedis_aug.directions.reach import REACH_TOL, calibrate_by_edits

    G = StandInG()
    lo, hi = -25.0, 40.0
    dec = SaturatingDecomposer(lo, hi)
    a = dec.Av[1]
    v = (a / a.norm()).float()
    w_fit, w_check = sample_w(G, 32, 5), sample_w(G, 32, 6)
    sigma = _true_sigma(G, v)
    k, c = float(a.norm()) * sigma, float(dec.cv[1])  # reading = c + k s inside the clip (edit_latent: w'.v = s sigma)
    assert c + 3 * k < hi and c - 3 * k > lo  # the fit window (+-2 sigma about the faces' mean) is linear
    cal = calibrate_by_edits(G, dec, v, sigma, "yaw", w_fit, w_check)
    assert cal["units_per_sigma"] == pytest.approx(k, rel=1e-4)
    assert cal["intercept"] == pytest.approx(c, abs=1e-3)
    assert k == pytest.approx(5.0)
    # beyond the clip the reading is the clip value, within 15% while asked <= hi / 0.85 (and >= lo / 0.85)
    asked = torch.tensor(cal["curve"]["asked"], dtype=torch.float64)
    want_hi = float(asked[asked <= hi / (1 - REACH_TOL)].max())
    want_lo = float(asked[asked >= lo / (1 - REACH_TOL)].min())
    assert cal["reach"] == pytest.approx([want_lo, want_hi], abs=1e-2)
    assert hi < want_hi and want_lo < lo  # the clip was reached inside the grid on both sides
    torch.testing.assert_close(torch.tensor(cal["curve"]["delivered_check"], dtype=torch.float64),
                               asked.clamp(lo, hi), atol=2e-3, rtol=0)


def test_stage_stores_the_edit_calibration_beside_eq3s(tmp_path):
    torch.manual_seed(0)
    # the samples' yaw spreads +-3 sigma = +-15 deg about -3: some are clipped; the fit window (+-2 sigma) is not
    G, dec = StandInG(), SaturatingDecomposer(-14.0, 12.0)
    outputs = compute_directions(G, dec, tiny_cfg(edit_faces=16, edit_curve=False), tmp_path, batch_size=32, pictures=False,
                                 say=lambda s: None)
    e = read_json(tmp_path / outputs["info"])["directions"]["yaw"]
    assert e["calibration"] == "edits" and "knots" not in e
    # the last asked value (the grid steps 5 degrees) within 15% of the clip on each side
    assert 12.0 / 0.85 - 5.0 < e["reach"][1] <= 12.0 / 0.85 and -14.0 / 0.85 <= e["reach"][0] < -14.0 / 0.85 + 5.0
    # the edits read the planted line along the stored direction; Eq. 3's answer is kept beside it
    v = load_safetensors(tmp_path / outputs["directions"])[0]["yaw"].double()
    a = dec.Av[1]
    line = float(a @ v) * e["sigma"]
    assert e["units_per_sigma"] == pytest.approx(line, rel=1e-3)
    assert e["regression_calibration"]["units_per_sigma"] == pytest.approx(line, rel=0.05)
    assert e["regression_calibration"]["units_per_sigma"] != e["units_per_sigma"]
    assert len(e["edit_check"]["curve"]["s"]) == 21
    # other semantics keep Eq. 3's calibration; [] turns the edit calibration off
    assert "calibration" not in read_json(tmp_path / outputs["info"])["directions"]["pitch"]
    off = compute_directions(G, dec, tiny_cfg(edit_calibration=[]), tmp_path / "off", batch_size=32, pictures=False, say=lambda s: None)
    assert "reach" not in read_json(tmp_path / "off" / off["info"])["directions"]["yaw"]


class TanhDecomposer(SaturatingDecomposer):
    """A view head whose yaw reading bends like the measured ones (S-shaped): a * tanh(linear / a)."""

    def __init__(self, a: float = 30.0, **kw):
        super().__init__(-1e9, 1e9, **kw)
        self.a = a

    def forward(self, img: Tensor) -> _Out:
        out = super().forward(img)
        out.view[:, 1] = self.a * torch.tanh(out.view[:, 1] / self.a)
        return out


def test_edit_calibration_curve_follows_an_s_shaped_response_where_the_line_overshoots():
    from facedis_aug.directions.reach import calibrate_by_edits
    from facedis_aug.ops.linear import curve_s_to_value, curve_value_to_s

    G, dec = StandInG(), TanhDecomposer(30.0)
    a = dec.Av[1]
    v = (a / a.norm()).float()
    sigma = _true_sigma(G, v)
    w_fit, w_check = sample_w(G, 32, 5), sample_w(G, 32, 6)
    line = calibrate_by_edits(G, dec, v, sigma, "yaw", w_fit, w_check)
    cal = calibrate_by_edits(G, dec, v, sigma, "yaw", w_fit, w_check, curve=True)
    assert line["knots"] is None and cal["units_per_sigma"] == line["units_per_sigma"]
    c = cal["curve"]
    s, truth = torch.tensor(c["s"], dtype=torch.float64), torch.tensor(c["delivered_fit"], dtype=torch.float64)
    # the reading is monotone over the whole grid here, so the knots are every reading, and asked == delivered
    assert cal["knots"]["s"] == pytest.approx(c["s"], abs=1e-4) and cal["knots"]["value"] == pytest.approx(c["delivered_fit"], abs=1e-3)
    torch.testing.assert_close(torch.tensor(c["asked"], dtype=torch.float64), torch.tensor(c["delivered_check"], dtype=torch.float64),
                               atol=2e-3, rtol=0)
    assert cal["reach"] == pytest.approx([min(c["asked"]), max(c["asked"])], abs=1e-3)  # the whole grid
    assert line["reach"][0] > cal["reach"][0] + 5 and line["reach"][1] < cal["reach"][1] - 5  # the line overshoots: shorter
    # the bundle inverts it: s for a value between knots, and back
    ks, kv = cal["knots"]["s"], cal["knots"]["value"]
    target = 0.5 * (kv[-2] + kv[-1])
    s_t = curve_value_to_s(target, ks, kv, cal["units_per_sigma"])
    assert ks[-2] < s_t < ks[-1] and curve_s_to_value(s_t, ks, kv, cal["units_per_sigma"]) == pytest.approx(target)
    assert truth.diff().gt(0).all()


class _LopsidedSynthesis(_Synthesis):
    """The stand-in image plus, on the left of its centre, a patch of (w.v / sigma - s0)^2: the image is its own
    mirror exactly at s = s0 along v, and its mirror asymmetry is a parabola in s."""

    def __init__(self, w_dim: int, resolution: int, v: Tensor, sigma: float, s0: float):
        super().__init__(w_dim, resolution)
        self.v, self.sigma, self.s0 = v, sigma, s0

    def forward(self, w: Tensor, noise_mode: str = "const") -> Tensor:
        img = super().forward(w, noise_mode).clone()
        p = (w @ self.v.to(w.dtype)) / self.sigma - self.s0
        img[:, :, 24:40, 20:30] += 0.004 * p.square()[:, None, None, None]
        return img


def test_symmetry_zero_puts_zero_degrees_where_the_edited_faces_are_their_own_mirror():
    import numpy as np

    from facedis_aug.directions.reach import calibrate_by_edits

    G, dec = StandInG(), SaturatingDecomposer(-1e9, 1e9)
    a = dec.Av[1]
    v = (a / a.norm()).float()
    sigma = _true_sigma(G, v)
    s0 = 1.3
    G.synthesis = _LopsidedSynthesis(G.w_dim, G.resolution, v, sigma, s0)
    w_fit, w_check = sample_w(G, 32, 5), sample_w(G, 32, 6)
    k, c = float(a.norm()) * sigma, float(dec.cv[1])  # the reader: c + k s, so it says 0 at s = -c / k, not at s0
    plain = calibrate_by_edits(G, dec, v, sigma, "yaw", w_fit, w_check)
    cal = calibrate_by_edits(G, dec, v, sigma, "yaw", w_fit, w_check, zero="symmetry")
    assert plain["zero"] is None and plain["intercept"] == pytest.approx(c, abs=1e-3)
    assert cal["zero"]["s"] == pytest.approx(s0, abs=1e-3) and cal["zero"]["shift"] == pytest.approx(c + k * s0, abs=1e-2)
    assert cal["intercept"] == pytest.approx(-k * s0, abs=1e-2) and cal["units_per_sigma"] == pytest.approx(k, rel=1e-4)
    # its readings are taken to be off by the same shift: asked and (shifted) delivered agree over the grid
    c_ = cal["curve"]
    assert c_["delivered_check"] == pytest.approx([x - cal["zero"]["shift"] for x in plain["curve"]["delivered_check"]], abs=1e-3)
    assert c_["asked"] == pytest.approx(c_["delivered_check"], abs=2e-3)
    with_curve = calibrate_by_edits(G, dec, v, sigma, "yaw", w_fit, w_check, zero="symmetry", curve=True)
    assert with_curve["zero"] == cal["zero"]
    assert float(np.interp(s0, with_curve["knots"]["s"], with_curve["knots"]["value"])) == pytest.approx(0.0, abs=1e-2)
    with pytest.raises(ValueError, match="zero must be"):
        calibrate_by_edits(G, dec, v, sigma, "yaw", w_fit, w_check, zero="mean")


def test_a_reader_that_gives_no_curve_leaves_the_line(monkeypatch):
    import facedis_aug.directions.reach as reach

    def no_curve(*a, **k):
        raise ValueError("monotone_knots: the readings do not rise")

    G, dec = StandInG(), TanhDecomposer(30.0)
    a = dec.Av[1]
    v = (a / a.norm()).float()
    sigma = _true_sigma(G, v)
    w = sample_w(G, 16, 5)
    monkeypatch.setattr(reach, "monotone_knots", no_curve)
    cal = reach.calibrate_by_edits(G, dec, v, sigma, "yaw", w, w, curve=True)
    line = [cal["intercept"] + cal["units_per_sigma"] * x for x in cal["curve"]["s"]]
    assert cal["knots"] is None and cal["curve"]["asked"] == pytest.approx(line, abs=1e-2)


def test_stage_stores_the_calibration_curve_and_the_bundle_uses_it(tmp_path):
    G, dec = StandInG(), TanhDecomposer(20.0)
    outputs = compute_directions(G, dec, tiny_cfg(edit_faces=16, edit_curve=True, edit_zero="symmetry"), tmp_path, batch_size=32,
                                 pictures=False, say=lambda s: None)
    e = read_json(tmp_path / outputs["info"])["directions"]["yaw"]
    ks, kv = e["knots"]["s"], e["knots"]["value"]
    assert len(ks) == len(kv) >= 2 and all(b > a for a, b in zip(kv, kv[1:]))
    assert e["edit_check"]["curve"]["asked"][0] == pytest.approx(e["edit_check"]["curve"]["delivered_fit"][0], abs=1e-2)
    assert e["zero"]["by"] == "mirror symmetry" and "shift" in e["zero"]  # the stand-in's images: asymmetry has some least
    assert DirectionsConfig().edit_curve is False and DirectionsConfig().edit_zero == "reader"  # measured: the line, the reader's zero
    with pytest.raises(ValueError, match="edit_zero"):
        DirectionsConfig(edit_zero="middle")


class _MirrorStandIn(nn.Module):
    """Planted readings: every view/light output = its own image feature + a bias. The features of yaw,
    roll, tx and light_x (left half minus right half, scaled) turn sign in the mirror; the others (the
    whole image's mean, scaled) do not."""

    image_size = SIZE

    def __init__(self):
        super().__init__()
        self.bias = torch.linspace(1.0, 3.0, 14)
        self.scale = torch.linspace(0.5, 2.0, 14)

    def forward(self, img: Tensor) -> _Out:
        half = img.shape[-1] // 2
        odd = img[..., :half].mean((1, 2, 3)) - img[..., half:].mean((1, 2, 3))
        even = img.mean((1, 2, 3))
        feat = torch.stack([odd if n in ("yaw", "roll", "tx", "light_x") else even for n in SEMANTICS], 1)
        sem = feat * self.scale + self.bias
        return _Out(view=sem[:, :6], light=sem[:, 6:], albedo=img, depth=img[:, 0])


def test_mirror_average_removes_the_bias_of_mirror_odd_semantics_only():
    from facedis_aug.directions.semantics import MIRROR_SIGN, decompose

    dec = _MirrorStandIn()
    img = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4)) * 2 - 1
    plain, mirrored = decompose(dec, img), decompose(dec, img, mirror_average=True)
    odd = torch.tensor([s < 0 for s in MIRROR_SIGN])
    assert [n for n, s in zip(SEMANTICS, MIRROR_SIGN) if s < 0] == ["yaw", "roll", "tx", "light_x"]
    # odd semantics: the feature alone (the bias cancels); even ones: unchanged, bias included
    torch.testing.assert_close(mirrored.semantics[:, odd], plain.semantics[:, odd] - dec.bias[odd])
    torch.testing.assert_close(mirrored.semantics[:, ~odd], plain.semantics[:, ~odd])
    torch.testing.assert_close(mirrored.albedo, plain.albedo)  # the maps are the image's own, not the mirror's
    torch.testing.assert_close(measure_semantics(dec, img, mirror_average=True), mirrored.semantics)
