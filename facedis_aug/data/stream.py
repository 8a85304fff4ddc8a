"""Reproducible, resumable training-batch streams over any face source.

    for step, x in enumerate(training_batches(source, 16, seed=0, start_step=k), start=k):
        ...  # x: float32 [16, 3, R, R] in [-1, 1]

The batch at global step t on rank r is a pure function of (seed, t, r, world_size) and of the
source's content: a run resumed at step t (start_step=t) sees exactly the batches an uninterrupted
run sees from step t on, which GAN resume exactness depends on.

Order. Samples are laid out on one endless line of positions; step t, rank r takes positions
p = t*B*W + r*B + j (j < B, W = world_size). Position p is item perm_e(p mod N) of epoch e = p // N,
where perm_e is a seeded bijection of range(N) keyed by (seed, e). So every item is seen once per
epoch and ranks never share an item within an epoch. Up to 2**20 items perm_e is a uniform shuffle
(numpy PCG64, built once per epoch); above, so that a 10**9-image synthetic world needs no table,
it is a keyed Feistel network on the next even power of two >= N with cycle-walking, evaluated only
at the positions asked for. Both are deterministic for a given numpy/Python install; resume within
one environment is what they promise. Only a batch that straddles an epoch boundary can hold
one item twice.

The same order serves both kinds of source:
- map-style Datasets (`ImageFolderFaces`, or anything whose items are images or (image, ...) with
  images float [3, R, R] in [0, 1]) through a DataLoader whose sampler yields that order, so
  `num_workers` > 0 gives the same batches as 0;
- batch renderers (`SyntheticFaces` or any object with `__len__` and `batch(LongTensor) ->
  (images [B, 3, R, R] in [0, 1], labels)`), called once per step in this process.
Labels and targets are dropped: the GAN trains on images only. Random transforms on a folder break
the pure-function property (their RNG state is per worker); augment after the stream instead.
"""
from __future__ import annotations

import functools
import itertools
import os
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from .config import DataConfig

FEISTEL_ROUNDS = 6
TABLE_MAX = 1 << 20  # up to here a stored permutation (8 MB of int64, built once per epoch)
_STREAM_TAG = 0x5EED_BA7C  # separates these permutation keys from any other use of the same seed
_M1 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64 finaliser constants (good avalanche on 64 bits)
_M2 = np.uint64(0x94D049BB133111EB)


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


def _mix64(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> np.uint64(30))
    z = z * _M1  # uint64 arrays wrap on overflow, which is what a hash wants
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


def _feistel(v: np.ndarray, half: int, keys: np.ndarray) -> np.ndarray:
    """Balanced Feistel network on 2*half-bit integers: a bijection of [0, 4**half)."""
    sh, mask = np.uint64(half), np.uint64((1 << half) - 1)
    left, right = v >> sh, v & mask
    for k in keys:
        left, right = right, left ^ (_mix64(right ^ k) & mask)
    return (left << sh) | right


@functools.lru_cache(maxsize=4)
def _table(n: int, seed: int, epoch: int) -> np.ndarray:
    perm = np.random.Generator(np.random.PCG64(np.random.SeedSequence([_STREAM_TAG, seed, epoch]))).permutation(n)
    perm.flags.writeable = False
    return perm


def permute(offsets: np.ndarray, n: int, seed: int, epoch: int) -> np.ndarray:
    """Images of `offsets` (int array, values in [0, n)) under the bijection perm_(seed, epoch) of range(n).

    Up to `TABLE_MAX` items the permutation is a stored uniform shuffle (a Feistel network on a
    handful of bits reaches only a few of the n! orders); above, a keyed Feistel network.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.size and (offsets.min() < 0 or offsets.max() >= n):
        raise ValueError(f"offsets must lie in [0, {n})")
    if n <= TABLE_MAX:
        return _table(n, seed, epoch)[offsets]
    bits = max(2, (n - 1).bit_length())
    half = (bits + 1) // 2  # domain 4**half < 4n, so cycle-walking takes < 4 passes on average
    keys = np.random.SeedSequence([_STREAM_TAG, seed, epoch]).generate_state(FEISTEL_ROUNDS, dtype=np.uint64)
    y = _feistel(offsets.astype(np.uint64), half, keys)
    # cycle-walking: re-apply until inside [0, n); restricted to [0, n) this is again a bijection
    out = y >= np.uint64(n)
    while out.any():
        y[out] = _feistel(y[out], half, keys)
        out = y >= np.uint64(n)
    return y.astype(np.int64)


def step_indices(n: int, batch_size: int, seed: int, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Item indices (int64 [batch_size]) of the batch at global `step` for `rank`; see the module doc."""
    b, w = batch_size, world_size
    pos = np.arange(b, dtype=np.int64) + (step * b * w + rank * b)  # Python ints: no overflow below 2**63
    epochs, offsets = np.divmod(pos, n)
    idx = np.empty(b, dtype=np.int64)
    for e in np.unique(epochs):  # one epoch, or two at a boundary (more only when n < B)
        sel = epochs == e
        idx[sel] = permute(offsets[sel], n, seed, int(e))
    return idx


class StepSampler(Sampler[int]):
    """Endless sampler yielding `step_indices` for steps start_step, start_step + 1, ... (flattened)."""

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size

    def __iter__(self) -> Iterator[int]:
        for t in itertools.count(self.start_step):
            yield from step_indices(self.n, self.batch_size, self.seed, t, self.rank, self.world_size).tolist()


def _collate_images(items: list[Any]) -> torch.Tensor:
    images = [it[0] if isinstance(it, (tuple, list)) else it for it in items]
    if not all(isinstance(x, torch.Tensor) for x in images):
        raise TypeError(
            f"training_batches needs image tensors from the dataset, got {type(images[0]).__name__} "
            "(use output='tensor', or a transform that returns tensors)"
        )
    return torch.stack(images)


def _batch_to_model_range(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    if x.ndim != 4 or x.shape[0] != batch_size or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise ValueError(f"source images must be [{batch_size}, 3, R, R], got {tuple(x.shape)}")
    x = x.float()
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"source images must lie in [0, 1], got values in [{lo:.3f}, {hi:.3f}]")
    return x * 2.0 - 1.0


def training_batches(
    source: Any,
    batch_size: int,
    *,
    seed: int,
    start_step: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[torch.Tensor]:
    """Endless iterator of float32 [batch_size, 3, R, R] batches in [-1, 1], from step `start_step` on.

    `source`: an object with `batch(indices) -> (images, labels)` and `__len__` (SyntheticFaces), or a
    map-style Dataset of images in [0, 1] (ImageFolderFaces), read through a DataLoader with
    `num_workers` workers (the batches do not depend on `num_workers`).
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    start_step = _check_int("start_step", start_step, 0)
    world_size = _check_int("world_size", world_size, 1)
    rank = _check_int("rank", rank, 0)
    num_workers = _check_int("num_workers", num_workers, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size, got rank={rank}, world_size={world_size}")
    if not hasattr(source, "__len__"):
        raise TypeError(f"source must have a length, got {type(source).__name__}")
    n = len(source)
    if n < 1:
        raise ValueError("source is empty")
    if callable(getattr(source, "batch", None)):
        return _render_stream(source, n, batch_size, seed, start_step, rank, world_size)
    if hasattr(source, "__getitem__"):
        if getattr(source, "output", "tensor") != "tensor" and getattr(source, "transform", None) is None:
            raise ValueError("an ImageFolderFaces with output='pil' cannot feed training batches; use output='tensor'")
        return _loader_stream(source, n, batch_size, seed, start_step, rank, world_size, num_workers, pin_memory)
    raise TypeError(f"source must be a Dataset or have a batch(indices) method, got {type(source).__name__}")


def _render_stream(source: Any, n: int, b: int, seed: int, start: int, rank: int, world: int) -> Iterator[torch.Tensor]:
    for t in itertools.count(start):
        idx = torch.from_numpy(step_indices(n, b, seed, t, rank, world))
        out = source.batch(idx)
        images = out[0] if isinstance(out, (tuple, list)) else out
        yield _batch_to_model_range(images, b)


def _loader_stream(
    source: Any, n: int, b: int, seed: int, start: int, rank: int, world: int, workers: int, pin: bool
) -> Iterator[torch.Tensor]:
    loader = DataLoader(
        source,
        batch_size=b,
        sampler=StepSampler(n, b, seed, start, rank, world),
        num_workers=workers,
        collate_fn=_collate_images,
        pin_memory=pin,
        # seeds the workers' RNGs; the batches themselves do not depend on it
        generator=torch.Generator().manual_seed(seed),
    )
    for images in loader:
        yield _batch_to_model_range(images, b)


def real_dataset(path: str | os.PathLike, resolution: int, preprocess: str = "none", min_size: int = 1) -> Any:
    """Real faces at `path`: `RecordFaces` for an insightface .rec (with its .idx), else `ImageFolderFaces`
    (a folder tree or a .zip); float32 [3, R, R] in [0, 1] with int labels."""
    if str(path).endswith(".rec"):
        from .recordio import RecordFaces

        return RecordFaces(path, resolution, preprocess=preprocess, min_size=min_size)  # type: ignore[arg-type]
    from .folder import ImageFolderFaces

    return ImageFolderFaces(path, resolution, preprocess=preprocess, min_size=min_size)  # type: ignore[arg-type]


def make_source(data_cfg: DataConfig, resolution: int, num_images: int | None = None) -> Any:
    """Build the recipe's data source: `SyntheticFaces(num_images, ...)`, `ImageFolderFaces(path, ...)` or,
    for a path ending in .rec, `RecordFaces(path, ...)`.

    `num_images` (synthetic only) defaults to `data.synthetic.num_images`.

    Pass `data_cfg.num_workers` to `training_batches` (it only matters for folders).
    """
    resolution = _check_int("resolution", resolution, 1)
    if data_cfg.source == "synthetic":
        from .synthetic import SyntheticFaces  # imported here: the folder path must not need it

        num_images = _check_int("num_images", data_cfg.synthetic.num_images if num_images is None else num_images, 1)
        return SyntheticFaces.from_config(data_cfg.synthetic, num_images, resolution)
    if data_cfg.source == "folder":
        if not data_cfg.path:
            raise ValueError("data.source is 'folder' but data.path is not set (give --data DIR or data.path=DIR)")
        return real_dataset(data_cfg.path, resolution, data_cfg.preprocess, data_cfg.min_size)
    raise ValueError(f"data.source={data_cfg.source!r} is not valid; choices: 'synthetic', 'folder'")
