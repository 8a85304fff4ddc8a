"""ONNX export of the generator and view head, checked against PyTorch on the same inputs."""
from __future__ import annotations

import sys

import pytest
import torch

from facedis_aug.testing import tiny_decomposer, tiny_generator
from facedis_aug.export.onnx import (
    OnnxGenerator,
    OnnxUnavailable,
    OnnxViewHead,
    SynthesisForExport,
    ViewHead,
    export_generator,
    export_view_head,
    max_abs_difference,
    noise_buffer_names,
    require_onnxruntime,
)

BOUND = 1e-4  # images in [-1, 1]; measured ~1.3e-5 here (float32 conv reassociation)


@pytest.fixture(scope="module")
def G():
    return tiny_generator(resolution=32, w_dim=32, channels=32, seed=0)


def _w(G, b, seed=1):
    with torch.no_grad():
        return G.mapping(torch.randn(b, G.z_dim, generator=torch.Generator().manual_seed(seed)))


def test_generator_torchscript_dynamic_batch(G, tmp_path):
    path = export_generator(G, tmp_path / "g.onnx", exporter="torchscript")
    gen = OnnxGenerator(path, device="cpu")
    assert gen.providers == ["CPUExecutionProvider"]
    assert gen.metadata == {"kind": "generator", "w_dim": 32, "resolution": 32, "noise": "const"}
    for b in (1, 3):
        w = _w(G, b)
        ref = G.synthesis(w, noise_mode="const")
        out = gen(w)
        assert out.shape == (b, 3, 32, 32)
        assert float((out - ref).abs().max()) < BOUND
    # const noise is baked in: it differs from the noise-free image, so the buffers really are used
    assert float((gen(_w(G, 2)) - G.synthesis(_w(G, 2), noise_mode="none")).abs().max()) > 1e-2
    assert max_abs_difference(G, path, batch=3) < BOUND
    with pytest.raises(ValueError, match="w must be"):
        gen(torch.zeros(2, 5))


def test_generator_dynamo_with_noise_inputs(G, tmp_path):
    path = export_generator(G, tmp_path / "gn.onnx", exporter="dynamo", noise="input")
    gen = OnnxGenerator(path, device="cpu")
    names = noise_buffer_names(G.synthesis)
    assert gen.input_names == ["w"] + [f"noise_{i}" for i in range(len(names))]
    bufs = dict(G.synthesis.named_buffers())
    for b in (1, 3):
        w = _w(G, b, seed=b)
        const = [bufs[n].expand(b, 1, *bufs[n].shape) for n in names]
        # fed the generator's own fixed noise, it reproduces noise_mode="const"
        assert float((gen(w, const) - G.synthesis(w, noise_mode="const")).abs().max()) < BOUND
        # fed zeros, it reproduces noise_mode="none" (a known answer for the input path)
        zeros = [torch.zeros_like(c) for c in const]
        assert float((gen(w, zeros) - G.synthesis(w, noise_mode="none")).abs().max()) < BOUND
        # arbitrary per-sample noise matches the PyTorch module with the same noise
        rnd = [torch.randn(c.shape, generator=torch.Generator().manual_seed(7)) for c in const]
        ref = SynthesisForExport(G.synthesis, "input")(w, *rnd)
        assert float((gen(w, rnd) - ref).abs().max()) < BOUND
    with pytest.raises(ValueError, match="noise inputs"):
        gen(_w(G, 1))


def test_noise_input_needs_dynamo(G, tmp_path):
    with pytest.raises(ValueError, match="dynamo"):
        export_generator(G, tmp_path / "x.onnx", exporter="torchscript", noise="input")


def test_view_head_matches_decomposer(tmp_path):
    D = tiny_decomposer(32, seed=3)
    path = export_view_head(D, tmp_path / "v.onnx", exporter="torchscript")
    head = OnnxViewHead(path, device="cpu")
    assert head.image_size == 32
    for b in (1, 3):
        x = torch.rand(b, 3, 32, 32, generator=torch.Generator().manual_seed(b)) * 2 - 1
        est = D.estimate_view(x)
        ref = torch.stack([est["yaw"], est["pitch"], est["roll"]], 1)  # the documented column order
        assert torch.equal(ViewHead(D)(x), ref)
        assert float((head(x) - ref).abs().max()) < 1e-3  # degrees
    # larger inputs are resized to the head's size the same way in both backends
    big = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(9)) * 2 - 1
    small = torch.nn.functional.interpolate(big, size=(32, 32), mode="area")
    assert float((head(big) - ViewHead(D)(small)).abs().max()) < 1e-3


def test_missing_onnxruntime_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(OnnxUnavailable) as e:
        require_onnxruntime()
    assert "pip install 'facedis-aug[onnx]'" in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ImportError)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_mirror_averaged_view_head_is_mirror_equivariant_and_exports(tmp_path, exporter):
    # averaging a face's reading with its mirror's makes the head exactly equivariant: the mirrored face reads
    # (-yaw, pitch, -roll), and a mirror-symmetric face reads yaw = roll = 0 (no 'mirror bias')
    D = tiny_decomposer(32, seed=3)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(7)) * 2 - 1
    head = ViewHead(D, mirror_average=True)
    a, b = head(x), head(x.flip(-1))
    assert torch.allclose(b, a * torch.tensor([-1.0, 1.0, -1.0]), atol=1e-4)
    sym = torch.cat([x[..., :16], x[..., :16].flip(-1)], dim=-1)
    assert float(head(sym)[:, [0, 2]].abs().max()) < 1e-4
    plain = ViewHead(D)
    assert torch.allclose(a, (plain(x) + plain(x.flip(-1)) * torch.tensor([-1.0, 1.0, -1.0])) / 2, atol=1e-5)
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    path = export_view_head(D, tmp_path / "v.onnx", exporter=exporter, mirror_average=True)
    assert float((OnnxViewHead(path, device="cpu")(x) - a).abs().max()) < 1e-3
    assert max_abs_difference(D, path, mirror_average=True) < 1e-3
