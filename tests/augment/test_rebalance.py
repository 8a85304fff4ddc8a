"""PoseRebalanced over a tiny image folder: deficit arithmetic, cache, labels, a timm training loop."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from facedis_aug.augment.rebalance import PoseRebalanced
from facedis_aug.testing import make_tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", onnx=True)


def _png_folder(root, classes: int, per_class: int, size: int, seed: int, prefix: str):
    """classes x per_class PNG images of `size` px (smooth random colour fields) under root/<prefix><c>/."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"{prefix}{c}").mkdir()
        for i in range(per_class):
            small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
            Image.fromarray(small).resize((size, size), Image.BILINEAR).save(root / f"{prefix}{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes x 6 PNG images of 32 px."""
    return _png_folder(tmp_path_factory.mktemp("faces"), 3, 6, 32, seed=0, prefix="person")


def _real(folder):
    return datasets.ImageFolder(str(folder), transform=transforms.ToTensor())


def _tv(h):
    return 0.5 * float(np.abs(np.array(h["fractions"]) - np.array(h["target"])).sum())


def test_histogram_reaches_uniform(bundle, folder, tmp_path):
    ds = PoseRebalanced(_real(folder), bundle, bins=[-90, -45, 0, 45, 90], cache_dir=tmp_path)
    before, after = ds.histogram_before(), ds.histogram_after()
    c = np.array(before["counts"])
    assert c.sum() == 18
    # known answer: N = max_b c_b / (1/4); every bin is topped up to N / 4
    n = int(round(c.max() * 4))
    assert after["counts"] == [n // 4] * 4
    assert ds.num_synthetic == n - 18 and len(ds) == n
    assert _tv(before) > 0.5 and _tv(after) < 1e-9  # the random view head puts every real face in one bin
    png = ds.save_histogram_png(tmp_path / "h.png")
    assert Image.open(png).size[0] > 100
    assert "PoseRebalanced(real=18 images / 3 classes" in repr(ds)


def test_yaw_of_real_images_is_the_view_head_and_is_cached(bundle, folder, tmp_path):
    real = _real(folder)
    ds = PoseRebalanced(real, bundle, bins=4, cache_dir=tmp_path)
    assert ds.cache_hits == 0
    from facedis_aug.augment.engine import Engine, open_bundle

    eng = Engine(open_bundle(bundle))
    x = torch.stack([real[i][0] for i in range(3)]) * 2 - 1
    np.testing.assert_allclose(ds.real_yaw[:3], eng.view(x)[:, 0].numpy(), atol=1e-4)
    cache_files = list(tmp_path.glob("yaw_*.json"))
    assert len(cache_files) == 1 and ds.spec.decomposer_sha256[:16] in cache_files[0].name
    again = PoseRebalanced(real, bundle, bins=4, cache_dir=tmp_path)
    assert again.cache_hits == 18
    np.testing.assert_allclose(again.real_yaw, ds.real_yaw, atol=1e-9)
    # a changed file is re-estimated (key: path, size, mtime)
    f = folder / "person0" / "0.png"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert PoseRebalanced(real, bundle, bins=4, cache_dir=tmp_path).cache_hits == 17
    # the ONNX view head gives the same yaws
    onnx = PoseRebalanced(real, bundle, bins=4, backend="onnx")
    np.testing.assert_allclose(onnx.real_yaw, ds.real_yaw, atol=1e-3)


def test_labels_cap_and_target(bundle, folder):
    real = _real(folder)
    ds = PoseRebalanced(real, bundle, bins=6, images_per_identity=4, max_synthetic=10)
    assert ds.num_synthetic == 10 and ds.synthetic.num_identities == 3
    assert ds.num_classes == 3 + 3
    labels = [ds[i][1] for i in range(len(ds))]
    assert labels[:18] == real.targets and set(labels[18:]) == {3, 4, 5}
    assert _tv(ds.histogram_after()) < _tv(ds.histogram_before())  # capped: moves toward uniform
    skew = PoseRebalanced(real, bundle, bins=3, yaw_range=(-90, 90), target=[0, 1, 0], max_synthetic=0)
    assert skew.num_synthetic == 0 and skew.histogram_before()["target"] == [0, 1, 0]
    with pytest.raises(ValueError, match="weights"):
        PoseRebalanced(real, bundle, bins=3, target=[1, 1])


def test_recognizer_trains_on_rebalanced_folder(bundle, folder):
    import timm

    torch.manual_seed(0)
    ds = PoseRebalanced(_real(folder), bundle, bins=4, images_per_identity=4, max_synthetic=30)
    loader = DataLoader(ds, batch_size=12, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = timm.create_model("resnet10t", pretrained=False, num_classes=ds.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    seen_synthetic, losses = 0, []
    for step, (x, y) in enumerate(loader):
        assert x.shape[1:] == (3, 32, 32) and y.max() < ds.num_classes
        seen_synthetic += int((y >= ds.num_real_classes).sum())
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step == 3:
            break
    assert all(np.isfinite(losses)) and seen_synthetic > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.fixture(scope="module")
def folder48(tmp_path_factory):
    """2 classes x 3 PNG images of 48 px: not the bundle's 32 px."""
    return _png_folder(tmp_path_factory.mktemp("faces48"), 2, 3, 48, seed=1, prefix="p")


def test_drop_in_over_an_image_folder_batches_with_a_default_dataloader(bundle, folder48):
    # the real images are 48 px, the bundle draws 32 px: synthetic ones go through the folder's own transform
    real = datasets.ImageFolder(str(folder48), transform=transforms.Compose([transforms.ToTensor(),
                                                                            transforms.Normalize([0.5] * 3, [0.5] * 3)]))
    ds = PoseRebalanced(real, bundle, bins=4, images_per_identity=2, max_synthetic=6)
    assert ds.num_synthetic == 6 and "base's transform" in ds.synthetic_format
    batches = list(DataLoader(ds, batch_size=4))  # the default collate: raises on mixed kinds or sizes
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.shape == (12, 3, 48, 48) and x.min() >= -1 and x.max() <= 1 and (y >= 2).sum() == 6
    assert x[6:].min() < 0  # synthetic images were normalised like the real ones ([0, 1] -> [-1, 1])
    # without a transform both come out as PIL images of the folder's size
    plain = PoseRebalanced(datasets.ImageFolder(str(folder48)), bundle, bins=4, max_synthetic=2)
    ims = [plain[i][0] for i in range(len(plain))]
    assert plain.num_synthetic == 2
    assert all(isinstance(im, Image.Image) and im.size == (48, 48) and im.mode == "RGB" for im in ims)


class _Uint8Faces(torch.utils.data.Dataset):
    def __init__(self, n=6, size=40):
        g = torch.Generator().manual_seed(0)
        self.x = (torch.rand(n, 3, size, size, generator=g) * 255).to(torch.uint8)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], i % 2


def test_synthetic_items_take_the_kind_of_a_plain_dataset(bundle):
    ds = PoseRebalanced(_Uint8Faces(), bundle, bins=4, max_synthetic=3)
    x, _ = next(iter(DataLoader(ds, batch_size=len(ds))))
    assert x.dtype == torch.uint8 and x.shape == (len(ds), 3, 40, 40)
    assert "tensor [3, 40, 40] uint8" in repr(ds)


def test_bad_bases_are_refused_in_one_line(bundle):
    with pytest.raises(ValueError, match="map-style"):
        PoseRebalanced(None, bundle)
    with pytest.raises(ValueError, match="empty"):
        PoseRebalanced([], bundle)
    with pytest.raises(ValueError, match=r"\(image, label\) pair"):
        PoseRebalanced(["a.jpg", "b.jpg"], bundle)
    with pytest.raises(ValueError, match="PIL image or a"):
        PoseRebalanced([("a.jpg", 0), ("b.jpg", 1)], bundle)
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        PoseRebalanced(_Uint8Faces(), bundle, batch_size=0)
