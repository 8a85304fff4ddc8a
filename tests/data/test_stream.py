"""training_batches: pure function of (seed, step, rank, world_size), resume, disjoint ranks, workers."""
from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facedis_aug.data.stream as stream
from facedis_aug.data.config import DataConfig, SyntheticConfig
from facedis_aug.data.folder import ImageFolderFaces
from facedis_aug.data.stream import StepSampler, make_source, permute, step_indices, training_batches

R = 4


class FakeRenderer:
    """Stands in for SyntheticFaces: image i is the constant (i + 1) / (n + 1), so batches reveal indices."""

    def __init__(self, n: int, resolution: int = R):
        self.n, self.resolution, self.calls = n, resolution, 0

    def __len__(self) -> int:
        return self.n

    def batch(self, indices: torch.Tensor):
        assert indices.dtype == torch.long and indices.ndim == 1
        self.calls += 1
        vals = (indices.double() + 1) / (self.n + 1)
        return vals.float().view(-1, 1, 1, 1).expand(-1, 3, self.resolution, self.resolution).clone(), {"id": indices}


def _decode(x: torch.Tensor, n: int) -> list[int]:
    """Indices from a FakeRenderer batch in [-1, 1]."""
    return (((x[:, 0, 0, 0].double() + 1) / 2) * (n + 1) - 1).round().long().tolist()


def _take(it, k: int) -> list[torch.Tensor]:
    return list(itertools.islice(it, k))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 100, 1000])
def test_permute_is_a_bijection_table_and_feistel(n: int, monkeypatch):
    table = permute(np.arange(n), n, seed=3, epoch=1)
    assert np.array_equal(np.sort(table), np.arange(n))
    monkeypatch.setattr(stream, "TABLE_MAX", 0)  # force the Feistel path on the same n
    feistel = permute(np.arange(n), n, seed=3, epoch=1)
    assert np.array_equal(np.sort(feistel), np.arange(n))
    assert np.array_equal(feistel, permute(np.arange(n), n, seed=3, epoch=1))  # deterministic


def test_feistel_path_beyond_the_table_limit():
    n = stream.TABLE_MAX + 3  # past the table: Feistel with cycle-walking, whole range checked
    p = permute(np.arange(n), n, seed=0, epoch=0)
    assert np.array_equal(np.sort(p), np.arange(n))
    huge = 10**12  # a world too large for any table: positions are evaluated one by one
    q = permute(np.arange(1000), huge, seed=0, epoch=0)
    assert len(set(q.tolist())) == 1000 and q.min() >= 0 and q.max() < huge
    assert float(np.corrcoef(np.arange(1000), q)[0, 1]) ** 2 < 0.05  # shuffled, not near-identity


def test_permutations_depend_on_seed_and_epoch():
    base = permute(np.arange(50), 50, 0, 0)
    assert not np.array_equal(base, permute(np.arange(50), 50, 1, 0))
    assert not np.array_equal(base, permute(np.arange(50), 50, 0, 1))
    with pytest.raises(ValueError):
        permute(np.array([50]), 50, 0, 0)


def test_step_indices_cover_each_epoch_once_across_ranks():
    n, b, w = 24, 3, 2  # 4 steps of 2 ranks x 3 = one epoch
    for epoch in range(3):
        seen = [step_indices(n, b, 7, t, r, w) for t in range(4 * epoch, 4 * epoch + 4) for r in range(w)]
        flat = np.concatenate(seen)
        assert sorted(flat.tolist()) == list(range(n))
        assert np.array_equal(flat, permute(np.arange(n), n, 7, epoch))  # the layout t*B*W + r*B + j
    # ranks are disjoint within each step
    for t in range(8):
        assert not set(step_indices(n, b, 7, t, 0, w)) & set(step_indices(n, b, 7, t, 1, w))


def test_step_indices_straddling_epochs_and_tiny_sources():
    idx = step_indices(5, 4, 0, 1)  # positions 4..7: last of epoch 0, first three of epoch 1
    assert idx[0] == permute(np.array([4]), 5, 0, 0)[0]
    assert np.array_equal(idx[1:], permute(np.arange(3), 5, 0, 1))
    many = step_indices(2, 7, 0, 0)  # batch larger than the source: 3.5 epochs in one batch
    assert sorted(many[:6].tolist()) == [0, 0, 0, 1, 1, 1]


def test_render_stream_shape_range_and_known_indices():
    src = FakeRenderer(10)
    batches = _take(training_batches(src, 4, seed=5), 6)
    for t, x in enumerate(batches):
        assert x.shape == (4, 3, R, R) and x.dtype == torch.float32
        assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert _decode(x, 10) == step_indices(10, 4, 5, t).tolist()
    assert src.calls == 6


def test_resume_sees_exactly_the_uninterrupted_batches():
    src = FakeRenderer(13)
    full = _take(training_batches(src, 5, seed=2), 9)
    resumed = _take(training_batches(src, 5, seed=2, start_step=6), 3)
    for a, b in zip(full[6:], resumed):
        assert torch.equal(a, b)
    other_seed = _take(training_batches(src, 5, seed=3), 1)[0]
    assert not torch.equal(other_seed, full[0])


def test_ranks_are_disjoint_and_resume_per_rank():
    src = FakeRenderer(40)
    ids = {r: [_decode(x, 40) for x in _take(training_batches(src, 5, seed=1, rank=r, world_size=2), 4)] for r in (0, 1)}
    flat = [i for r in (0, 1) for b in ids[r] for i in b]
    assert sorted(flat) == list(range(40))  # 4 steps x 2 ranks x 5 = one epoch, nothing shared
    again = _take(training_batches(src, 5, seed=1, rank=1, world_size=2, start_step=3), 1)[0]
    assert _decode(again, 40) == ids[1][3]


@pytest.fixture
def grey_folder(tmp_path: Path) -> Path:
    """11 PNGs, image k a constant grey 20 * k: the folder order is the name order."""
    root = tmp_path / "grey"
    root.mkdir()
    for k in range(11):
        Image.new("L", (6, 6), 20 * k).save(root / f"{k:02d}.png")
    return root


def _grey_ids(x: torch.Tensor) -> list[int]:
    return ((x[:, 0, 0, 0] + 1) / 2 * 255 / 20).round().long().tolist()


def test_folder_stream_order_resume_and_workers(grey_folder: Path):
    ds = ImageFolderFaces(grey_folder, R)
    steps = 8  # 8 x 3 = 24 samples: more than two epochs of 11 images
    base = _take(training_batches(ds, 3, seed=4), steps)
    for t, x in enumerate(base):
        assert x.shape == (3, 3, R, R) and x.dtype == torch.float32
        assert _grey_ids(x) == step_indices(11, 3, 4, t).tolist()
    with_workers = _take(training_batches(ds, 3, seed=4, num_workers=2), steps)
    resumed = _take(training_batches(ds, 3, seed=4, start_step=5, num_workers=2), steps - 5)
    assert all(torch.equal(a, b) for a, b in zip(base, with_workers))
    assert all(torch.equal(a, b) for a, b in zip(base[5:], resumed))


def test_step_sampler_flattens_steps():
    it = iter(StepSampler(7, 2, 0, start_step=3, rank=1, world_size=2))
    got = [next(it) for _ in range(4)]
    assert got == step_indices(7, 2, 0, 3, 1, 2).tolist() + step_indices(7, 2, 0, 4, 1, 2).tolist()


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, ValueError, "seed"),
        ({"start_step": -2}, ValueError, "start_step"),
        ({"rank": 2, "world_size": 2}, ValueError, "rank must be < world_size"),
        ({"world_size": 0}, ValueError, "world_size"),
        ({"num_workers": -1}, ValueError, "num_workers"),
    ],
)
def test_bad_arguments_fail_before_iterating(kwargs: dict, err: type, match: str):
    args = {"batch_size": 2, "seed": 0, **kwargs}
    with pytest.raises(err, match=match):
        training_batches(FakeRenderer(4), args.pop("batch_size"), **args)


def test_bad_sources(grey_folder: Path):
    with pytest.raises(TypeError, match="length"):
        training_batches(object(), 2, seed=0)
    with pytest.raises(ValueError, match="empty"):
        training_batches(FakeRenderer(0), 2, seed=0)
    with pytest.raises(ValueError, match="output='pil'"):
        training_batches(ImageFolderFaces(grey_folder, R, output="pil"), 2, seed=0)

    class Grey(FakeRenderer):
        def batch(self, indices):
            return torch.zeros(len(indices), 1, R, R), {}

    with pytest.raises(ValueError, match=r"\[2, 3, R, R\]"):
        next(training_batches(Grey(4), 2, seed=0))

    class Normalised(FakeRenderer):
        def batch(self, indices):
            return torch.full((len(indices), 3, R, R), -0.5), {}

    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        next(training_batches(Normalised(4), 2, seed=0))


def test_make_source_folder_and_errors(grey_folder: Path):
    with pytest.raises(ValueError, match="no readable images"):  # 6 px images: below data.min_size 16
        make_source(DataConfig(source="folder", path=str(grey_folder)), 8, 100)
    ds = make_source(DataConfig(source="folder", path=str(grey_folder), preprocess="ffhq", min_size=4), 8, 100)
    assert isinstance(ds, ImageFolderFaces) and ds.resolution == 8 and ds.preprocess == "ffhq" and len(ds) == 11
    with pytest.raises(ValueError, match="data.path is not set"):
        make_source(DataConfig(source="folder"), 8, 100)
    with pytest.raises(FileNotFoundError):
        make_source(DataConfig(source="folder", path=str(grey_folder / "nope")), 8, 100)
    with pytest.raises(ValueError, match="data.source='bogus'"):
        make_source(DataConfig(source="bogus"), 8, 100)  # type: ignore[arg-type]


needs_world = pytest.mark.skipif(
    importlib.util.find_spec("facedis_aug.data.synthetic") is None, reason="synthetic world not present"
)


@needs_world
def test_make_source_synthetic_passes_the_recipe_through():
    cfg = DataConfig(synthetic=SyntheticConfig(num_identities=7, pose="uniform", yaw_range=45.0, seed=9))
    src = make_source(cfg, 16, 50)
    assert len(src) == 50 and src.resolution == 16
    assert src.pose == "uniform" and src.yaw_range == 45.0
    assert src.world.seed == 9 and src.world.num_identities == 7
    with pytest.raises(ValueError, match="num_images"):
        make_source(cfg, 16, 0)
    with pytest.raises(ValueError, match="resolution"):
        make_source(cfg, 0, 10)


@needs_world
def test_stream_over_the_real_synthetic_world():
    src = make_source(DataConfig(), 16, 20)
    a = _take(training_batches(src, 2, seed=0), 3)
    b = _take(training_batches(src, 2, seed=0, start_step=2), 1)[0]
    assert a[0].shape == (2, 3, 16, 16) and a[0].dtype == torch.float32
    assert -1.0 <= float(a[0].min()) and float(a[0].max()) <= 1.0 and float(a[0].std()) > 0.05
    assert torch.equal(a[2], b)
    # the batch is exactly the world's images at the stream's indices, mapped to [-1, 1]
    images, _ = src.batch(torch.from_numpy(step_indices(20, 2, 0, 1)))
    assert torch.equal(a[1], images * 2 - 1)
