"""PoseExtrapolate in a torchvision v2 Compose and AlbuPoseExtrapolate in an albumentations Compose."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from facedis_aug.augment.engine import Engine, open_bundle, to_unit_range
from facedis_aug.augment.synthetic import SyntheticPoseFaces
from facedis_aug.testing import make_tiny_bundle
from facedis_aug.augment.transforms import PoseExtrapolate


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", deg_per_sigma=30.0)


def _expected(bundle, w, yaw):
    spec = open_bundle(bundle)
    w2 = spec.edit(w[None], "yaw", torch.tensor([yaw / 30.0]))
    return to_unit_range(Engine(spec).render(w2))[0], w2[0]


def test_v2_compose_rerenders_at_the_drawn_yaw(bundle):
    pe = PoseExtrapolate(bundle, yaw=(60, 80))
    ds = SyntheticPoseFaces(bundle, 2, 2, yaw=(-10, 10), output="sample", transform=v2.Compose([pe, v2.RandomHorizontalFlip(p=1.0)]))
    raw = SyntheticPoseFaces(bundle, 2, 2, yaw=(-10, 10), output="sample")[3][0]
    torch.manual_seed(0)
    sample, ident = ds[3]
    assert ident == 1 and 60 <= sample["yaw"] <= 80
    assert isinstance(sample["image"], tv_tensors.Image) and sample["image"].shape == (3, 32, 32)
    img, w2 = _expected(bundle, raw["w"], sample["yaw"])
    torch.testing.assert_close(sample["w"], w2, atol=1e-5, rtol=0)  # the latent passes the flip untouched
    torch.testing.assert_close(sample["image"].as_subclass(torch.Tensor), img.flip(-1), atol=1e-5, rtol=0)
    assert float((sample["image"] - raw["image"].flip(-1)).abs().max()) > 0.01  # it really re-rendered


def test_get_params_random_apply_deterministic(bundle):
    pe = PoseExtrapolate(bundle, yaw=(-90, 90))
    sample = SyntheticPoseFaces(bundle, 1, 1, output="sample")[0][0]
    torch.manual_seed(3)
    p1 = pe.get_params()
    torch.manual_seed(3)
    assert pe.get_params() == p1
    draws = [pe.get_params()["yaw"] for _ in range(50)]
    assert min(draws) >= -90 and max(draws) <= 90 and np.std(draws) > 20
    a, b = pe.apply(sample, yaw=45.0), pe.apply(sample, yaw=45.0)
    assert torch.equal(a["image"], b["image"]) and a["yaw"] == 45.0
    assert pe.apply(sample, yaw=45.0, apply=False) is sample
    assert PoseExtrapolate(bundle, p=0.0)(sample) is sample
    with pytest.raises(TypeError, match="latent 'w'"):
        pe(torch.zeros(3, 32, 32))
    # a different output size follows the input image
    small = {**sample, "image": tv_tensors.Image(torch.zeros(3, 16, 16))}
    assert pe.apply(small, yaw=10.0)["image"].shape == (3, 16, 16)
    assert "yaw=(-90, 90)" in repr(pe)


def test_albumentations_compose(bundle):
    import albumentations as A

    from facedis_aug.augment.transforms import AlbuPoseExtrapolate

    sample = SyntheticPoseFaces(bundle, 1, 1, output="sample")[0][0]
    img = (sample["image"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    w = sample["w"].numpy()

    def run(seed):
        t = AlbuPoseExtrapolate(bundle, yaw=(20, 40))
        out = A.Compose([t, A.HorizontalFlip(p=1.0)], seed=seed)(image=img, w=w)
        return out, t.params["yaw"]

    (o1, y1), (o2, y2), (_, y3) = run(1), run(1), run(2)
    assert 20 <= y1 <= 40 and y1 == y2 and y1 != y3
    assert o1["image"].dtype == np.uint8 and o1["image"].shape == (32, 32, 3)
    assert np.array_equal(o1["image"], o2["image"])
    expect, _ = _expected(bundle, sample["w"], y1)
    got = torch.from_numpy(o1["image"][:, ::-1].copy()).permute(2, 0, 1).float() / 255
    assert float((got - expect).abs().max()) <= 1 / 255 + 1e-6  # uint8 rounding only
    with pytest.raises(ValueError, match="missing keys: {'w'}"):
        A.Compose([AlbuPoseExtrapolate(bundle)])(image=img)
