"""SyntheticPoseFaces: planted yaw answer, determinism, backends, workers, bad bundles."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from facedis_aug.augment.engine import identity_z
from facedis_aug.augment.synthetic import SyntheticPoseFaces, largest_remainder
from facedis_aug.testing import make_tiny_bundle
from facedis_aug.bundle import Bundle, BundleError

DEG_PER_SIGMA = 30.0  # planted calibration of the tiny bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", onnx=True, deg_per_sigma=DEG_PER_SIGMA)


def test_latents_carry_exact_yaw_and_keep_identity(bundle):
    ds = SyntheticPoseFaces(bundle, num_identities=3, images_per_identity=4, yaw=(-70, 70), seed=4)
    v, sigma = ds.spec.directions["yaw"], ds.spec.sigma["yaw"]
    idx = list(range(len(ds)))
    w = ds.latents(idx)
    yaws = np.array([ds.plan(i)["yaw"] for i in idx])
    assert ((yaws >= -70) & (yaws <= 70)).all()
    # Eq. 4 with the planted calibration: w'.v = s sigma, s = yaw / 30
    np.testing.assert_allclose((w @ v).numpy(), yaws / DEG_PER_SIGMA * sigma, atol=1e-4)
    # identity k = its w with the yaw component removed; all its images share that part
    b = Bundle.load(bundle)
    with torch.no_grad():
        w_id = b.generator.mapping(identity_z(4, [0, 1, 2], ds.spec.z_dim))
    ortho = lambda x: x - (x @ v)[:, None] * v[None]  # noqa: E731
    for i in idx:
        torch.testing.assert_close(ortho(w[i : i + 1]), ortho(w_id[ds.identity_of(i)][None]), atol=1e-5, rtol=0)


def test_lighting_edits_are_planted(bundle):
    ds = SyntheticPoseFaces(bundle, 2, 3, yaw=(-30, 30), lighting=0.5, seed=1)
    w = ds.latents(range(6))
    for name in ds.spec.light_names():
        v, sigma = ds.spec.directions[name], ds.spec.sigma[name]
        s = np.array([ds.plan(i)["light"][name] for i in range(6)])
        assert s.std() > 0
        np.testing.assert_allclose((w @ v).numpy(), s * sigma, atol=1e-4)  # directions are orthonormal here
    assert "lighting=0.5" in repr(ds)


def test_deterministic_per_seed_and_index(bundle):
    a = SyntheticPoseFaces(bundle, 3, 2, seed=0)
    b = SyntheticPoseFaces(bundle, 3, 2, seed=0)
    c = SyntheticPoseFaces(bundle, 3, 2, seed=1)
    xa, ya = a.get_batch(range(6))
    xb, yb = b.get_batch([5, 4, 3, 2, 1, 0])
    torch.testing.assert_close(xa, xb.flip(0), atol=1e-5, rtol=0)  # order / batch composition does not matter
    assert ya.tolist() == [0, 0, 1, 1, 2, 2]
    torch.testing.assert_close(a[3][0], xa[3], atol=1e-5, rtol=0)
    xc, _ = c.get_batch(range(6))
    assert float((xa - xc).abs().max()) > 0.05
    assert xa.shape == (6, 3, 32, 32) and 0.0 <= float(xa.min()) and float(xa.max()) <= 1.0


def test_histogram_yaw_is_matched_exactly(bundle):
    edges = [-90, -30, 0, 30, 90]
    ds = SyntheticPoseFaces(bundle, 5, 4, yaw={"edges": edges, "weights": [1, 0, 2, 1]}, seed=2)
    counts = np.histogram(ds.yaws(), bins=edges)[0]
    assert counts.tolist() == [5, 0, 10, 5]
    assert largest_remainder([1, 1, 1], 10).tolist() == [4, 3, 3]
    with pytest.raises(ValueError, match="weights"):
        SyntheticPoseFaces(bundle, 2, 2, yaw={"edges": [0, 1], "weights": [1, 2]})
    with pytest.raises(ValueError, match="lo < hi"):
        SyntheticPoseFaces(bundle, 2, 2, yaw=(10, -10))


def test_uniform_uses_bundle_rot_range(bundle):
    ds = SyntheticPoseFaces(bundle, 20, 5)
    y = ds.yaws()
    assert y.min() >= -90 and y.max() <= 90 and y.min() < -60 and y.max() > 60
    assert "uniform(-90, 90)" in repr(ds)


def test_torch_and_onnx_backends_agree(bundle):
    t = SyntheticPoseFaces(bundle, 2, 3, lighting=True, backend="torch")
    o = SyntheticPoseFaces(bundle, 2, 3, lighting=True, backend="onnx")
    xt, yt = t.get_batch(range(6))
    xo, yo = o.get_batch(range(6))
    assert torch.equal(yt, yo)
    assert float((xt - xo).abs().max()) < 1e-4


def test_workers_give_identical_samples(bundle):
    ds = SyntheticPoseFaces(bundle, 3, 4, lighting=True, seed=7, backend="onnx")
    got = [b for b in DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")]
    assert ds.engine._pid is None and ds.engine._models == {}  # workers built their own sessions; the parent none
    ref = [b for b in DataLoader(ds, batch_size=4, num_workers=0)]
    assert len(ref) == len(got) == 3
    for (x0, y0), (x1, y1) in zip(ref, got):
        assert torch.equal(y0, y1)
        torch.testing.assert_close(x0, x1, atol=1e-6, rtol=0)
    assert "onnx_generator" in ds.engine._models  # the num_workers=0 pass ran here


def test_pil_output_and_transforms(bundle):
    ds = SyntheticPoseFaces(bundle, 2, 2, output="pil", transform=lambda im: im.resize((16, 16)), target_transform=lambda t: t + 100)
    img, target = ds[2]
    assert img.size == (16, 16) and img.mode == "RGB" and target == 101
    with pytest.raises(IndexError):
        ds[4]


def _copy(bundle, tmp_path):
    return shutil.copytree(bundle, tmp_path / "b")


def test_bad_bundles_are_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    (b / "generator.onnx").write_bytes(b"junk")
    with pytest.raises(BundleError, match=r"generator.onnx: sha256 does not match"):
        SyntheticPoseFaces(b, 1, 1)
    b = shutil.copytree(bundle, tmp_path / "c")
    (b / "decomposer.safetensors").unlink()
    with pytest.raises(BundleError, match="decomposer.safetensors: listed in the manifest but missing"):
        SyntheticPoseFaces(b, 1, 1)
    b = shutil.copytree(bundle, tmp_path / "d")
    m = json.loads((b / "manifest.json").read_text())
    m["format_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="format_version 99 is not supported") as e:
        SyntheticPoseFaces(b, 1, 1)
    assert "\n" not in str(e.value)
    plain = make_tiny_bundle(tmp_path / "plain", onnx=False)
    with pytest.raises(BundleError, match="backend='onnx' needs it; run `facedis-aug export"):
        SyntheticPoseFaces(plain, 1, 1, backend="onnx")
    with pytest.raises(ValueError, match="backend must be"):
        SyntheticPoseFaces(plain, 1, 1, backend="tensorrt")


@pytest.mark.parametrize("kw, match", [
    (dict(yaw=(1e6, 2e6)), r"beyond what the bundle .* delivers: \[-90.0, 90.0\] deg, the decomposer's view range \(\|yaw\| <= 90"),
    (dict(yaw=(-500, 500)), "beyond"),
    (dict(yaw={"edges": [-120, 0, 120], "weights": [1, 1]}), "beyond"),
    (dict(num_identities="5"), "num_identities must be an integer >= 1, got '5'"),
    (dict(num_identities=2.7), "num_identities must be an integer"),
    (dict(images_per_identity=True), "images_per_identity must be an integer"),
    (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
    (dict(num_images=0), "num_images must be an integer >= 1"),
    (dict(lighting="yes"), "lighting must be"),
])
def test_bad_arguments_are_one_clear_error(bundle, kw, match):
    args = dict(num_identities=2, images_per_identity=2) | kw
    with pytest.raises(ValueError, match=match) as e:
        SyntheticPoseFaces(bundle, **args)
    assert "\n" not in str(e.value)


def test_the_yaw_limit_is_the_decomposers_own_rot_range(tmp_path):
    b = make_tiny_bundle(tmp_path / "b60", rot_range=60.0)
    assert "uniform(-60, 60)" in repr(SyntheticPoseFaces(b, 2, 2))
    with pytest.raises(ValueError, match=r"\|yaw\| <= 60"):
        SyntheticPoseFaces(b, 2, 2, yaw=(-70, 0))
    assert SyntheticPoseFaces(b, 2.0, 2).num_identities == 2  # a whole float is an integer


def test_a_measured_reach_bounds_every_yaw_request(tmp_path):
    from facedis_aug.augment.rebalance import PoseRebalanced
    from facedis_aug.augment.transforms import PoseExtrapolate
    from facedis_aug.ops.io import read_json

    b = make_tiny_bundle(tmp_path / "reach", yaw_reach=(-20.0, 35.0))
    assert Bundle.load(b).yaw_reach == (-20.0, 35.0)
    assert read_json(b / "manifest.json")["yaw"] == {"intercept": 0.0, "units_per_sigma": DEG_PER_SIGMA, "calibration": "edits",
                                                     "reach": [-20.0, 35.0]}  # fmt: skip
    from facedis_aug.cli import _info

    assert "yaw calibration (read off edits)" in _info(str(b)) and "yaw reach (delivered within 15%): [-20.0, +35.0]" in _info(str(b))
    ds = SyntheticPoseFaces(b, 20, 5)  # "uniform" is over the reach, not the view range
    y = ds.yaws()
    assert y.min() >= -20 and y.max() <= 35 and y.min() < -15 and y.max() > 30 and "uniform(-20, 35)" in repr(ds)
    for yaw in [(-30, 0), (0, 36), {"edges": [-10, 0, 40], "weights": [1, 1]}]:
        with pytest.raises(ValueError, match=r"delivers: \[-20.0, 35.0\] deg, its measured reach") as e:
            SyntheticPoseFaces(b, 2, 2, yaw=yaw)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"target yaw \(40, 40\) .* measured reach"):
        PoseExtrapolate(b, yaw=(0, 40))
    assert PoseExtrapolate(b).yaw_range == (-20.0, 35.0)
    rel = PoseExtrapolate(b, yaw=(-90, 90), relative=True)
    assert -20.0 <= rel.reachable[0] and rel.reachable[1] <= 35.0  # relative turns are clipped into the reach
    assert PoseExtrapolate(b, yaw=(0, 40), max_s=None).yaw_range == (0, 40)  # max_s=None renders anyway
    with pytest.raises(ValueError, match=r"PoseRebalanced's bins \(-40, 40\) .* measured reach"):
        PoseRebalanced([(torch.zeros(3, 32, 32), 0)], b, bins=4, yaw_range=(-40, 40))
    # a reach without width: "uniform" cannot be served (one error naming it); explicit yaws inside it can
    flat = make_tiny_bundle(tmp_path / "flat", yaw_reach=(0.0, 0.0))
    for make in (lambda: SyntheticPoseFaces(flat, 2, 2), lambda: PoseExtrapolate(flat),
                 lambda: PoseRebalanced([(torch.zeros(3, 32, 32), 0)], flat, bins=2)):
        with pytest.raises(ValueError, match=r"measured reach of \[0.0, 0.0\] degrees: its edits along v_yaw deliver no turn"):
            make()
    assert PoseExtrapolate(flat, yaw=(0, 0)).yaw_range == (0.0, 0.0)
    # a reach that does not hold 0 is refused when the bundle loads, naming the file
    info = json.loads((b / "directions.json").read_text())
    info["directions"]["yaw"]["reach"] = [5.0, 30.0]
    (b / "directions.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match=r"directions.json: reach must be \[lo <= 0, hi >= 0\]"):
        Bundle.load(b, verify=False)
