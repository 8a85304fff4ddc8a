"""encoder.onnx: export, agreement with PyTorch, resizing outside the graph, and `facedis-aug export`
adding it to a bundle that has an encoder."""
from __future__ import annotations

import torch

from facedis_aug.testing import make_tiny_bundle, tiny_encoder, tiny_generator
from facedis_aug.bundle import Bundle
from facedis_aug.encode.model import fit_images
from facedis_aug.export.config import ExportConfig
from facedis_aug.export.encoder_onnx import OnnxEncoder, encoder_max_abs_difference, export_encoder
from facedis_aug.export.stage import export_bundle_onnx


def test_encoder_onnx_matches_pytorch(tmp_path):
    E, _ = tiny_encoder(tiny_generator(32, 16, 16))
    path = export_encoder(E, tmp_path / "encoder.onnx", exporter="torchscript")
    assert encoder_max_abs_difference(E, path, batch=3) < 1e-4
    x = torch.rand(2, 3, 48, 40) * 2 - 1  # another size: both sides resize with fit_images
    onnx = OnnxEncoder(path, device="cpu")
    assert onnx.w_dim == 16 and onnx.image_size == 32
    with torch.no_grad():
        torch.testing.assert_close(onnx(x), E(fit_images(x, 32)), atol=1e-4, rtol=0)


def test_export_bundle_onnx_adds_the_encoder(tmp_path):
    b = make_tiny_bundle(tmp_path / "b", encoder=True)
    report = export_bundle_onnx(b, ExportConfig(exporter="torchscript", view_head=False))
    assert report["max_abs_diff"]["encoder.onnx"] < 1e-3
    assert {"generator.onnx", "encoder.onnx"} <= set(Bundle.load(b).manifest["files"])
    plain = make_tiny_bundle(tmp_path / "plain")  # no encoder: nothing to export, no error
    assert "encoder.onnx" not in export_bundle_onnx(plain, ExportConfig(exporter="torchscript", view_head=False))["files"]
