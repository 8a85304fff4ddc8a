"""The bundle: round trip, every refusal names the file, Eq. 4 edits, calibration, strips."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import facedis_aug.bundle as bundle_mod
from facedis_aug.bundle import FORMAT_VERSION, Bundle, BundleError, draw_strips, write_bundle
from facedis_aug.directions.pictures import manipulation_strip
from facedis_aug.directions.semantics import measure_semantics
from facedis_aug.directions.stage import compute_directions
from facedis_aug.ops.io import load_safetensors, read_json, save_safetensors
from facedis_aug.testing import make_tiny_bundle

# the stand-ins (linear generator, planted decomposer) live in directions/test_stage.py
_spec = importlib.util.spec_from_file_location("_directions_standins", Path(__file__).parent / "directions" / "test_stage.py")
standins = sys.modules.setdefault("_directions_standins", importlib.util.module_from_spec(_spec))
if not hasattr(standins, "StandInG"):
    _spec.loader.exec_module(standins)
_REAL_LOAD_GENERATOR = bundle_mod._load_generator
_REAL_LOAD_DECOMPOSER = bundle_mod._load_decomposer


def _save_module(m: torch.nn.Module, path: Path) -> None:
    save_safetensors(path, m.state_dict(), {"format": "stand-in"})


def _load_into(factory):
    def load(path, device="cpu"):
        m = factory()
        tensors, meta = load_safetensors(path)
        assert meta["format"] == "stand-in"
        m.load_state_dict(tensors)
        return m.to(device).eval()

    return load


@pytest.fixture(autouse=True)
def _standin_loaders(monkeypatch):
    """Bundle loads stand-ins instead of the real StyleGAN2 / decomposer."""
    monkeypatch.setattr(bundle_mod, "_load_generator", _load_into(standins.StandInG))
    monkeypatch.setattr(bundle_mod, "_load_decomposer", _load_into(standins.StandInDecomposer))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A fake run folder with the stage outputs at their pipeline paths."""
    run = tmp_path_factory.mktemp("run")
    G, Dec = standins.StandInG(), standins.StandInDecomposer()
    (run / "gan").mkdir()
    (run / "decompose").mkdir()
    _save_module(G, run / "gan" / "gan.safetensors")
    _save_module(Dec, run / "decompose" / "decomposer.safetensors")
    cfg = standins.tiny_cfg(num_samples=2000)
    compute_directions(G, Dec, cfg, run / "directions", pictures=False, say=lambda s: None)
    return run


def _sources(run: Path) -> dict[str, Path]:
    """The bundle files at their pipeline paths (what the export stage gathers), ONNX when present."""
    src = {"generator.safetensors": run / "gan" / "gan.safetensors",
           "decomposer.safetensors": run / "decompose" / "decomposer.safetensors",
           "directions.safetensors": run / "directions" / "directions.safetensors",
           "directions.json": run / "directions" / "directions.json"}
    if (run / "export" / "generator.onnx").is_file():
        src["generator.onnx"] = run / "export" / "generator.onnx"
    return src


@pytest.fixture()
def bundle_dir(run_dir, tmp_path) -> Path:
    return write_bundle(_sources(run_dir), tmp_path / "bundle", recipe={"run": {"name": "standin"}})


def test_round_trip(bundle_dir, run_dir):
    b = Bundle.load(bundle_dir)
    m = json.loads((bundle_dir / "manifest.json").read_text())
    assert m["format_version"] == FORMAT_VERSION and m["recipe"] == {"run": {"name": "standin"}}
    assert set(m["files"]) == {"generator.safetensors", "decomposer.safetensors", "directions.safetensors", "directions.json"}
    assert b.onnx_path is None
    src, _ = load_safetensors(run_dir / "directions" / "directions.safetensors")
    dirs = b.directions
    assert list(dirs)[:2] == ["pitch", "yaw"] and "local_000" in dirs and "tz" not in dirs
    for k, v in src.items():
        torch.testing.assert_close(dirs[k], v)
    assert b.kind("yaw") == "univariate" and b.kind("local_000") == "local"
    # lazily loaded models are the stand-ins with the saved weights
    G = standins.StandInG()
    torch.testing.assert_close(b.generator.mapping.A, G.mapping.A)
    imgs = b.generate(seeds=[3, 4])
    assert imgs.shape == (2, 3, 64, 64)
    torch.testing.assert_close(b.generate(w=b.sample_w(2, seed=3)), imgs)  # sample_w(n, seed) = seeds seed..seed+n-1


def test_edit_obeys_eq4_with_stored_sigma(bundle_dir):
    b = Bundle.load(bundle_dir)
    w = b.sample_w(4, seed=0)
    v, sigma = b.directions["local_001"], b.sigma("local_001")
    s = torch.tensor([-4.0, 0.0, 1.5, 4.0])
    w2 = b.edit(w, "local_001", s)
    torch.testing.assert_close(w2 @ v, s * sigma, atol=1e-5, rtol=1e-5)  # projection replaced by s * sigma
    torch.testing.assert_close(w2 - (w2 @ v)[:, None] * v, w - (w @ v)[:, None] * v, atol=1e-5, rtol=1e-5)
    with pytest.raises(KeyError, match="no direction named 'nose'"):
        b.edit(w, "nose", 1.0)


def test_yaw_calibration_hits_the_target_angle(bundle_dir):
    b = Bundle.load(bundle_dir)
    w = b.sample_w(3, seed=7)
    for target in (-60.0, 0.0, 35.0):
        s = b.yaw_to_s(target)
        assert b.s_to_yaw(s) == pytest.approx(target)
        yaw = measure_semantics(b.decomposer, b.generate(w=b.edit(w, "yaw", s)))[:, 1]
        torch.testing.assert_close(yaw, torch.full((3,), target), atol=2e-3, rtol=0)
    with pytest.raises(KeyError, match="calibration"):
        b.value_to_s("local_000", 1.0)


def _refused(bundle_dir: Path, needle: str) -> str:
    with pytest.raises(BundleError) as e:
        Bundle.load(bundle_dir)
    assert needle in str(e.value), str(e.value)
    return str(e.value)


@pytest.mark.parametrize("name", ["generator.safetensors", "decomposer.safetensors", "directions.safetensors", "directions.json"])
def test_missing_file_refused_naming_it(bundle_dir, name):
    (bundle_dir / name).unlink()
    assert "missing" in _refused(bundle_dir, name)


@pytest.mark.parametrize("name", ["generator.safetensors", "directions.json"])
def test_corrupt_file_refused_naming_it(bundle_dir, name):
    with open(bundle_dir / name, "r+b") as f:  # flip one byte in the middle
        f.seek(f.seek(0, 2) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert "sha256" in _refused(bundle_dir, name)


def test_wrong_version_and_missing_manifest_refused(bundle_dir):
    m = json.loads((bundle_dir / "manifest.json").read_text())
    m["format_version"] = FORMAT_VERSION + 1
    (bundle_dir / "manifest.json").write_text(json.dumps(m))
    assert "format_version" in _refused(bundle_dir, "manifest.json")
    (bundle_dir / "manifest.json").unlink()
    _refused(bundle_dir, "manifest.json")
    with pytest.raises(BundleError, match="not a bundle folder"):
        Bundle.load(bundle_dir / "nope")
    assert issubclass(BundleError, ValueError)


def test_unlisted_required_file_and_optional_onnx(bundle_dir, run_dir, tmp_path):
    m = json.loads((bundle_dir / "manifest.json").read_text())
    del m["files"]["decomposer.safetensors"]
    (bundle_dir / "manifest.json").write_text(json.dumps(m))
    assert "not listed" in _refused(bundle_dir, "decomposer.safetensors")
    # generator.onnx from the export stage is carried, hashed and reported when present
    (run_dir / "export").mkdir(exist_ok=True)
    (run_dir / "export" / "generator.onnx").write_bytes(b"not really onnx")
    try:
        b = Bundle.load(write_bundle(_sources(run_dir), tmp_path / "with_onnx"))
        assert b.onnx_path == tmp_path / "with_onnx" / "generator.onnx"
        assert "generator.onnx" in b.manifest["files"]
    finally:
        (run_dir / "export" / "generator.onnx").unlink()
    with pytest.raises(BundleError, match="decomposer.safetensors"):
        write_bundle({"generator.safetensors": run_dir / "gan" / "gan.safetensors"}, tmp_path / "incomplete")


def test_strips_written_for_any_bundle_and_seed(bundle_dir, tmp_path):
    from PIL import Image

    paths = draw_strips(bundle_dir, seed=5, out_dir=tmp_path / "pics")
    assert [p.name for p in paths] == ["strips_univariate_seed5.png", "strips_local_seed5.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG"
    one = draw_strips(bundle_dir, seed=5, out_dir=tmp_path / "pics", names=["yaw"])
    assert one[0].name == "strips_seed5.png"
    with pytest.raises(KeyError, match="unknown direction"):
        draw_strips(bundle_dir, seed=5, out_dir=tmp_path / "pics", names=["nose"])
    # the strip is G(Eq. 4 edit) at each s: its measured yaw follows the calibration column by column
    b = Bundle.load(bundle_dir)
    s_vals = [-2.0, 0.0, 2.0]
    imgs = manipulation_strip(b, b.sample_w(2, seed=1), b.directions["yaw"], b.sigma("yaw"), s_vals)
    assert imgs.shape == (6, 3, 64, 64)
    yaw = measure_semantics(b.decomposer, imgs)[:, 1].view(2, 3)
    expect = torch.tensor([b.s_to_yaw(s) for s in s_vals]).expand(2, 3)
    torch.testing.assert_close(yaw, expect, atol=2e-3, rtol=0)


def test_real_tiny_modules_through_stage_and_bundle(tmp_path, monkeypatch):
    """Integration with the real (untrained, tiny) StyleGAN2 and decomposer: no known truth, so this
    checks the plumbing -- 32 px images resized to 64, real loaders, seeds, Eq. 4 on the result."""
    from facedis_aug.decompose.config import DecomposeConfig
    from facedis_aug.decompose.model import Decomposer, save_decomposer
    from facedis_aug.gan.networks import Generator, GeneratorConfig, generate, generator_metadata

    monkeypatch.setattr(bundle_mod, "_load_generator", _REAL_LOAD_GENERATOR)
    monkeypatch.setattr(bundle_mod, "_load_decomposer", _REAL_LOAD_DECOMPOSER)
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16)).eval()
    # random heads (not the zero start), so that view and light vary from face to face as the plumbing needs
    Dec = Decomposer(DecomposeConfig(channels=8, bottleneck=16, head_channels=8, conf_channels=8, conf_bottleneck=8,
                                     zero_init_heads=False)).eval()
    run = tmp_path / "run"
    save_safetensors(run / "gan" / "gan.safetensors", G.state_dict(), generator_metadata(G))
    save_decomposer(Dec, run / "decompose" / "decomposer.safetensors")
    from facedis_aug.directions.config import DirectionsConfig
    from facedis_aug.directions.stage import run_directions_stage

    cfg = DirectionsConfig(num_pairs=24, jacobian_pairs=20, num_samples=200, P=4, iterations=20)
    # the stage's entry: loads both files
    outputs = run_directions_stage(run / "gan" / "gan.safetensors", run / "decompose" / "decomposer.safetensors", cfg,
                                   run / "directions")
    assert (run / "directions" / outputs["strips_univariate"]).is_file()  # 32 px images drawn through the real G
    b = Bundle.load(write_bundle(_sources(run), tmp_path / "bundle"))
    torch.testing.assert_close(b.generate(seeds=[1, 2]), generate(G, seeds=[1, 2]))
    # the stage's strips show the faces of `facedis-aug draw --seed k` (Bundle.sample_w(1, k))
    from facedis_aug.directions.stage import STRIP_SEEDS, strip_latents

    torch.testing.assert_close(strip_latents(G), torch.cat([b.sample_w(1, seed=k) for k in STRIP_SEEDS]))
    info = b.info["directions"]
    assert b.mirror_average  # the default reading, which the bundle's view head then repeats
    assert all(0.0 <= info[k]["r2"] <= 1.0 for k in b.directions if b.kind(k) == "univariate")
    assert info["tz"]["valid"] is False  # the decomposer fixes tz = 0 (unsup3d)
    w = b.sample_w(3, seed=0)
    torch.testing.assert_close(b.edit(w, "yaw", 2.0) @ b.directions["yaw"], torch.full((3,), 2.0 * b.sigma("yaw")))
    yaw = measure_semantics(b.decomposer, b.generate(w=w))[:, 1]
    torch.testing.assert_close(yaw, Dec.estimate_view(torch.nn.functional.interpolate(generate(G, w=w), size=64, mode="bilinear"))["yaw"])


@pytest.mark.parametrize("entry", ["../../../../etc/hostname", "/etc/hostname", "sub/../../x", "C:/x", "link/secret"])
def test_manifest_paths_must_stay_inside_the_bundle(bundle_dir, tmp_path, entry):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not yours")
    (bundle_dir / "link").symlink_to(outside, target_is_directory=True)
    m = json.loads((bundle_dir / "manifest.json").read_text())
    m["files"][entry] = {"sha256": "0" * 64, "bytes": 1}
    (bundle_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="manifest entry refused") as e:
        Bundle.load(bundle_dir)
    assert repr(entry) in str(e.value)


def test_a_calibration_curve_is_what_the_bundle_and_the_augmenters_invert(tmp_path):
    from facedis_aug.augment.engine import open_bundle

    knots = ([-2.0, 0.0, 1.0, 2.0], [-20.0, 0.0, 30.0, 40.0])
    b = Bundle.load(make_tiny_bundle(tmp_path / "curve", yaw_knots=knots))
    assert b.calibration_knots("yaw") == knots
    assert b.yaw_to_s(15.0) == pytest.approx(0.5) and b.s_to_yaw(1.5) == pytest.approx(35.0)
    assert b.yaw_to_s(100.0) == pytest.approx(2.0 + 60.0 / 30.0)  # beyond the knots: the line's slope (30 deg/sigma)
    spec = open_bundle(b, "torch", "cpu")
    assert spec.yaw_knots == knots
    assert spec.yaw_to_s(np.array([-10.0, 35.0])).tolist() == pytest.approx([-1.0, 1.5])
    assert spec.s_to_yaw(-1.0) == pytest.approx(-10.0)
    assert read_json(b.path / "manifest.json")["yaw"]["knots"] == {"s": knots[0], "value": knots[1]}


def test_a_calibration_curve_that_is_not_monotone_is_refused(tmp_path):
    d = make_tiny_bundle(tmp_path / "bad", yaw_knots=([-1.0, 0.0, 1.0], [-5.0, 3.0, 2.0]))
    _refused(d, "strictly monotone")


def test_info_names_the_calibration_curve(tmp_path):
    from facedis_aug.cli import _info

    d = make_tiny_bundle(tmp_path / "curve", yaw_knots=([-2.0, 0.0, 2.0], [-20.0, 0.0, 40.0]), yaw_reach=(-20.0, 40.0))
    assert "a measured curve): s -2.0..+2.0 turns the face -20.0..+40.0 degrees" in _info(str(d))
