"""The export stage (run folder -> bundle with ONNX files), add_to_bundle, and the facedis-aug CLI."""
from __future__ import annotations

import json
import shutil

import pytest

from facedis_aug.testing import make_tiny_bundle
from facedis_aug.cli import main
from facedis_aug.bundle import Bundle, BundleError
from facedis_aug.export.onnx import OnnxGenerator
from facedis_aug.export.stage import add_to_bundle, run_export_stage
from facedis_aug.export.config import ExportConfig
from facedis_aug.pipeline import StageContext, stage_functions
from facedis_aug.recipe import recipe_from_dict


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", onnx=False)


def _run_folder(bundle, root):
    """A run folder laid out as the earlier stages leave it, from a bundle's files."""
    for stage, name, src in [("gan", "gan.safetensors", "generator.safetensors"),
                             ("decompose", "decomposer.safetensors", "decomposer.safetensors"),
                             ("directions", "directions.safetensors", "directions.safetensors"),
                             ("directions", "directions.json", "directions.json")]:  # fmt: skip
        (root / stage).mkdir(parents=True, exist_ok=True)
        shutil.copy(bundle / src, root / stage / name)
    return root


def _export(run, recipe):
    """The pipeline's export stage on a run folder (it gathers the files and calls run_export_stage)."""
    return stage_functions()["export"](StageContext(recipe=recipe, run_dir=run, device="cpu"))


def test_run_export_stage_writes_verified_bundle(plain_bundle, tmp_path):
    run = _run_folder(plain_bundle, tmp_path / "run")
    recipe = recipe_from_dict({"export": {"exporter": "torchscript", "check_batch": 2}})
    out = _export(run, recipe)
    bundle_dir = run / "export" / "bundle"
    b = Bundle.load(bundle_dir)  # verifies every listed hash
    assert set(out["bundle_files"]) == set(b.manifest["files"]) >= {"generator.onnx", "view_head.onnx", "generator.safetensors"}
    assert out["max_abs_diff_generator"] < 1e-3 and out["max_abs_diff_view_head"] < 1e-3
    report = json.loads((run / "export" / "export_report.json").read_text())
    assert report["exporter"] == "torchscript"
    assert b.recipe["export"]["exporter"] == "torchscript"
    # the bundled ONNX reproduces the bundled PyTorch generator
    w = b.sample_w(2, seed=5)
    assert float((OnnxGenerator(bundle_dir / "generator.onnx", device="cpu")(w) - b.generate(w=w)).abs().max()) < 1e-4


def test_run_export_stage_without_onnx(plain_bundle, tmp_path):
    run = _run_folder(plain_bundle, tmp_path / "run")
    out = _export(run, recipe_from_dict({"export": {"onnx": False}}))
    assert set(Bundle.load(run / "export" / "bundle").manifest["files"]) == {
        "generator.safetensors", "decomposer.safetensors", "directions.safetensors", "directions.json"}
    assert "max_abs_diff_generator" not in out


def test_run_export_stage_names_missing_stage_and_file(plain_bundle, tmp_path):
    with pytest.raises(FileNotFoundError, match="gan"):
        _export(tmp_path, recipe_from_dict({}))
    sources = {n: plain_bundle / n for n in ("generator.safetensors", "decomposer.safetensors", "directions.safetensors")}
    sources["directions.json"] = tmp_path / "nowhere.json"
    with pytest.raises(BundleError, match="directions.json"):
        run_export_stage(sources, ExportConfig(onnx=False), tmp_path / "export")


def test_add_to_bundle_rehashes_and_tampering_is_caught(plain_bundle, tmp_path):
    b = shutil.copytree(plain_bundle, tmp_path / "b")
    extra = tmp_path / "x.bin"
    extra.write_bytes(b"hello")
    add_to_bundle(b, {"extra.bin": extra})
    assert Bundle.load(b).manifest["files"]["extra.bin"]["bytes"] == 5
    (b / "extra.bin").write_bytes(b"HELLO")
    with pytest.raises(BundleError, match="extra.bin: sha256 does not match"):
        Bundle.load(b)
    with pytest.raises(BundleError, match="sha256"):  # a corrupt bundle is not extended
        add_to_bundle(b, {"more.bin": extra})


def test_cli_info_export_and_errors(plain_bundle, tmp_path, capsys):
    b = shutil.copytree(plain_bundle, tmp_path / "b")
    assert main(["info", str(b)]) == 0
    out = capsys.readouterr().out
    assert "yaw calibration (least squares over samples): s = 1 turns the face by +30.0 degrees" in out and "ONNX: generator no" in out
    assert "yaw reach: not measured" in out  # a bundle from before the reach was measured
    assert main(["export", str(b), "--exporter", "torchscript"]) == 0
    out = capsys.readouterr().out
    assert "generator.onnx: max |ONNX Runtime - PyTorch|" in out and "view_head.onnx" in out
    assert {"generator.onnx", "view_head.onnx"} <= set(Bundle.load(b).manifest["files"])
    # bad bundles: one line on stderr, exit code 2
    (b / "directions.json").write_text("{}")
    assert main(["info", str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "directions.json: sha256 does not match" in err and err.count("\n") == 1
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert "not a bundle folder" in capsys.readouterr().err
