"""PoseExtrapolate on real images: torchvision v2 and albumentations Composes, every accepted input
form, clear errors on bad input, the face check, background blending, and bundles without an encoder."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from facedis_aug.augment.engine import Engine, open_bundle, to_unit_range
from facedis_aug.augment.real import FaceInputError, central_mask
from facedis_aug.testing import make_tiny_bundle
from facedis_aug.augment.transforms import PoseExtrapolate
from facedis_aug.bundle import Bundle, BundleError


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", deg_per_sigma=30.0, encoder=True, onnx=True)


@pytest.fixture(scope="module")
def face(bundle):
    """A 'photo' the bundle can encode: one of its own generator's images, [3, 32, 32] in [0, 1]."""
    return to_unit_range(Bundle.load(bundle).generate(seeds=[11]))[0]


def _expected(bundle, image01, yaw):
    """encode (default refinement) -> Eq. 4 to `yaw` -> decode, by hand through the Engine."""
    spec = open_bundle(bundle)
    eng = Engine(spec)
    w, _ = eng.encode(image01[None] * 2 - 1)
    w2 = spec.edit(w, "yaw", torch.tensor([yaw / 30.0]))
    return to_unit_range(eng.render(w2))[0], w, w2


def test_v2_compose_turns_a_plain_image(bundle, face):
    pe = PoseExtrapolate(bundle, yaw=(40, 60))
    t = v2.Compose([pe, v2.RandomHorizontalFlip(p=1.0)])
    torch.manual_seed(0)
    out = t(face)
    torch.manual_seed(0)
    yaw = pe.get_params()["yaw"]
    assert 40 <= yaw <= 60 and out.shape == face.shape and out.dtype == torch.float32
    expect, w, w2 = _expected(bundle, face, yaw)
    torch.testing.assert_close(out, expect.flip(-1), atol=1e-5, rtol=0)
    spec = open_bundle(bundle)
    assert abs(float(spec.yaw_of(w2)[0]) - yaw) < 1e-3  # Eq. 4 put the latent exactly at the asked yaw
    assert float((out - face.flip(-1)).abs().max()) > 0.01  # it really turned
    # deterministic apply, random draws only in get_params
    a, b = pe.apply(face, yaw=45.0), pe.apply(face, yaw=45.0)
    assert torch.equal(a, b) and pe.apply(face, yaw=45.0, apply=False) is face


def test_v2_compose_with_tv_image_and_uint8(bundle, face):
    pe = PoseExtrapolate(bundle, yaw=(10, 10))
    u8 = tv_tensors.Image((face * 255 + 0.5).to(torch.uint8))
    out = v2.Compose([pe, v2.ToDtype(torch.float32, scale=True)])(u8)
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.float32 and out.shape == (3, 32, 32)


def test_albumentations_compose_encodes_real_images(bundle, face):
    import albumentations as A

    from facedis_aug.augment.transforms import AlbuPoseExtrapolate

    img = (face.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)

    def run(seed):
        t = AlbuPoseExtrapolate(bundle, yaw=(-40, -20), encode=True)
        out = A.Compose([t, A.HorizontalFlip(p=1.0)], seed=seed)(image=img)
        return out["image"], t.params["yaw"]

    (o1, y1), (o2, y2), (_, y3) = run(1), run(1), run(2)
    assert -40 <= y1 <= -20 and y1 == y2 and y1 != y3
    assert o1.dtype == np.uint8 and o1.shape == img.shape and np.array_equal(o1, o2)
    expect, _, _ = _expected(bundle, torch.from_numpy(img).permute(2, 0, 1).float() / 255, y1)
    got = torch.from_numpy(o1[:, ::-1].copy()).permute(2, 0, 1).float() / 255
    assert float((got - expect).abs().max()) <= 1 / 255 + 1e-5  # uint8 rounding only


def test_input_forms_come_back_in_their_form(bundle, face):
    pe = PoseExtrapolate(bundle, yaw=(0, 0), refine_steps=0)
    rgb8 = (face.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    grey = Image.fromarray(rgb8).convert("L").resize((30, 40))  # greyscale, not square
    out = pe(grey)
    assert isinstance(out, Image.Image) and out.mode == "L" and out.size == (30, 40)
    rgba = Image.fromarray(rgb8).convert("RGBA")
    rgba.putalpha(77)
    out = pe(rgba)
    assert out.mode == "RGBA" and np.asarray(out)[..., 3].max() == 77  # alpha kept
    g = face.mean(0)  # [H, W] grey tensor, and [1, H, W]
    assert pe(g).shape == (32, 32) and pe(g[None]).shape == (1, 32, 32)
    assert pe(np.asarray(grey)).shape == (40, 30) and pe(rgb8.astype(np.float32) / 255).dtype == np.float32
    # greyscale is converted to RGB for the model: the grey input gives the grey of the RGB answer
    grey_t = face.mean(0, keepdim=True).expand(3, -1, -1).contiguous()
    y_rgb = pe(grey_t)
    torch.testing.assert_close(pe(grey_t[:1])[0], (y_rgb * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(3, 32, 32), "blank"),
    (torch.rand(3, 12, 40), "at least 16 px"),
    ("face.jpg", "cannot read a str"),
    (torch.rand(3, 32, 32) * 255, "0-255"),
    (torch.rand(2, 3, 32, 32), "one image"),
    (np.zeros((32, 32, 2), np.uint8), "channels last"),
    (torch.full((3, 32, 32), float("nan")), "NaN"),
])  # fmt: skip
def test_bad_inputs_raise_one_clear_error(bundle, bad, message):
    with pytest.raises(FaceInputError, match=message) as err:
        PoseExtrapolate(bundle)(bad)
    assert isinstance(err.value, ValueError)


def test_face_check_refuses_what_the_bundle_cannot_reconstruct(tmp_path, face):
    strict = make_tiny_bundle(tmp_path / "strict", encoder=True, max_l1=1e-4)
    with pytest.raises(FaceInputError, match=r"cannot reconstruct this image as a face \(encoder L1 [0-9.]+ > its limit 0.000"):
        PoseExtrapolate(strict, yaw=(0, 0))(face)
    assert PoseExtrapolate(strict, yaw=(0, 0), face_check=False)(face).shape == face.shape


def test_blend_background_keeps_the_border(bundle, face):
    x = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0))
    plain = PoseExtrapolate(bundle, yaw=(30, 30), refine_steps=0, face_check=False)(x)
    blended = PoseExtrapolate(bundle, yaw=(30, 30), refine_steps=0, face_check=False, blend_background=True)(x)
    m = central_mask(48, 48)
    torch.testing.assert_close(blended, m * plain + (1 - m) * x, atol=1e-6, rtol=0)
    assert torch.equal(blended[:, 0, 0], x[:, 0, 0]) and torch.allclose(blended[:, 24, 24], plain[:, 24, 24])


def test_relative_turns_by_the_offset(bundle, face):
    spec = open_bundle(bundle)
    w, _ = Engine(spec).encode(face[None] * 2 - 1)
    now = float(spec.yaw_of(w)[0])
    pe = PoseExtrapolate(bundle, yaw=(15, 15), relative=True)
    torch.testing.assert_close(pe(face), _expected(bundle, face, max(-90.0, min(90.0, now + 15)))[0], atol=1e-5, rtol=0)
    sample = {"image": face, "w": w[0], "yaw": 20.0}
    assert PoseExtrapolate(bundle, yaw=(15, 15), relative=True)(sample)["yaw"] == 35.0
    assert PoseExtrapolate(bundle, yaw=(80, 80), relative=True)(sample)["yaw"] == 90.0  # clipped to the limit


def test_onnx_backend_matches_torch(bundle, face):
    a = PoseExtrapolate(bundle, backend="torch").apply(face, yaw=-30.0)
    b = PoseExtrapolate(bundle, backend="onnx").apply(face, yaw=-30.0)
    assert float((a - b).abs().max()) < 1e-4


def test_bundle_without_encoder_still_serves_samples_and_says_what_is_missing(tmp_path, face):
    old = make_tiny_bundle(tmp_path / "old")  # the layout of every bundle written before the encoder existed
    b = Bundle.load(old)
    assert not b.has_encoder and b.generate(seeds=[0]).shape == (1, 3, 32, 32)
    with pytest.raises(BundleError, match="encoder.safetensors: this bundle has no encoder"):
        b.encode(face[None])
    pe = PoseExtrapolate(old, yaw=(0, 0))
    sample = {"image": face, "w": b.sample_w(1)[0]}
    assert pe(sample)["image"].shape == (3, 32, 32)  # synthetic samples need no encoder
    with pytest.raises(BundleError, match="no encoder"):
        pe(face)
    import albumentations  # noqa: F401

    from facedis_aug.augment.transforms import AlbuPoseExtrapolate

    with pytest.raises(BundleError, match="no encoder"):
        AlbuPoseExtrapolate(old, encode=True)


def test_targets_beyond_max_s_are_refused_with_the_reachable_range(tmp_path, face):
    weak = make_tiny_bundle(tmp_path / "weak", deg_per_sigma=3.0)  # a weak direction: 60 degrees need s = 20
    with pytest.raises(ValueError, match=r"yaw -60 deg needs s = -20.0 .* This bundle reaches \[-30.0, 30.0\] deg"):
        PoseExtrapolate(weak, yaw=(-60, 60))
    assert PoseExtrapolate(weak, yaw=(-30, 30)).yaw_range == (-30.0, 30.0)
    sample = {"image": face, "w": Bundle.load(weak).sample_w(1)[0], "yaw": 25.0}
    # relative turns are clipped into the reachable range decided at construction: never an error mid-epoch
    rel = PoseExtrapolate(weak, yaw=(10, 10), relative=True)
    assert rel.reachable == pytest.approx((-30.0, 30.0), abs=0.2)  # the tiny bundle's own faces sit near s = 0
    assert rel(sample)["yaw"] == pytest.approx(rel.reachable[1])  # asked 35, delivered the reachable end
    assert "reachable=(" in repr(rel)
    for y in np.linspace(-200, 200, 9):  # any draw, any face
        assert rel.reachable[0] <= rel.apply(sample, yaw=float(y))["yaw"] <= rel.reachable[1]
    assert PoseExtrapolate(weak, yaw=(-60, 60), max_s=None).apply(sample, yaw=60.0)["yaw"] == 60.0
