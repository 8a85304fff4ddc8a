"""`SyntheticPoseFaces`: new identities at the poses you ask for, as a torchvision-style Dataset.

    ds = SyntheticPoseFaces("bundle/", num_identities=1000, images_per_identity=16)   # yaw uniform over the reach
    image, identity = ds[0]             # float32 [3, R, R] in [0, 1], int in [0, 1000)
    loader = DataLoader(ds, batch_size=64, num_workers=4)   # renders each batch in one call

Identity k is w_k = F(z_k) with z_k seeded by (seed, k). Its images are Eq. 4 edits along v_yaw,
w' = w_k - (w_k . v) v + s sigma v, which replaces the yaw component of w_k (so identity k is
really w_k with its yaw removed) by the one that gives the drawn yaw; s comes from degrees through
the bundle's calibration. With `lighting`, the light directions (ambient / diffuse RGB, light
direction) are edited first, with s ~ N(0, lighting^2), and yaw last so that the yaw stays exact
under the linear model.

Every draw depends only on (seed, index): the same index gives the same image in any process,
any batch, any number of workers.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .engine import BundleSpec, Engine, identity_z, open_bundle, to_unit_range

OUTPUTS = ("tensor", "pil", "sample")


def largest_remainder(weights: Sequence[float], n: int) -> np.ndarray:
    """Split n items over bins proportionally to `weights` (integers summing to n exactly)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("histogram weights must be non-negative, finite and not all zero")
    quota = w / w.sum() * n
    counts = np.floor(quota).astype(np.int64)
    rest = n - int(counts.sum())
    order = np.argsort(-(quota - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def count_arg(name: str, value: Any, minimum: int = 1) -> int:
    """An integer argument >= minimum (bools, strings and fractional numbers refused, naming `name`)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class YawDistribution:
    """Where the yaw of sample i comes from: uniform over (lo, hi) degrees, or a histogram.

    A histogram (edges [K+1], weights [K]) is matched exactly, not just in expectation: the
    number of samples per bin is fixed by largest-remainder rounding, the bins are shuffled over
    the indices with the seed, and the yaw is uniform inside its bin.
    """

    def __init__(self, yaw: Any, n: int, seed: int, spec: BundleSpec):
        self.edges: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self.bin_of: np.ndarray | None = None
        if isinstance(yaw, str):
            if yaw != "uniform":
                raise ValueError(f"yaw must be 'uniform', (lo, hi) degrees or a histogram; got {yaw!r}")
            self.lo, self.hi = spec.uniform_yaws()
        elif isinstance(yaw, dict):
            self._histogram(yaw.get("edges"), yaw.get("weights", yaw.get("counts")), n, seed)
        elif isinstance(yaw, (tuple, list)) and len(yaw) == 2 and all(np.ndim(v) == 0 for v in yaw):
            self.lo, self.hi = float(yaw[0]), float(yaw[1])
            if not (np.isfinite([self.lo, self.hi]).all() and self.lo < self.hi):
                raise ValueError(f"yaw range must be (lo, hi) with lo < hi, got {tuple(yaw)}")
        elif isinstance(yaw, (tuple, list)) and len(yaw) == 2:
            self._histogram(yaw[0], yaw[1], n, seed)
        else:
            raise ValueError(f"yaw must be 'uniform', (lo, hi) degrees or a histogram (edges, weights); got {yaw!r}")
        spec.check_yaws(self.lo, self.hi)

    def _histogram(self, edges: Any, weights: Any, n: int, seed: int) -> None:
        if edges is None or weights is None:
            raise ValueError("a yaw histogram needs 'edges' [K+1] and 'weights' [K]")
        e = np.asarray(edges, dtype=np.float64)
        if e.ndim != 1 or len(e) < 2 or not (np.diff(e) > 0).all():
            raise ValueError("yaw histogram edges must be increasing, at least 2 of them")
        if len(np.asarray(weights)) != len(e) - 1:
            raise ValueError(f"yaw histogram: {len(e)} edges need {len(e) - 1} weights, got {len(np.asarray(weights))}")
        self.edges = e
        self.counts = largest_remainder(weights, n)
        bins = np.repeat(np.arange(len(self.counts)), self.counts)
        self.bin_of = np.random.default_rng([int(seed), 0xB1]).permutation(bins)
        self.lo, self.hi = float(e[0]), float(e[-1])

    def draw(self, index: int, rng: np.random.Generator) -> float:
        if self.bin_of is None:
            return float(rng.uniform(self.lo, self.hi))
        b = int(self.bin_of[index])
        return float(rng.uniform(self.edges[b], self.edges[b + 1]))

    def describe(self) -> str:
        if self.edges is None:
            return f"uniform({self.lo:g}, {self.hi:g})"
        return f"histogram({len(self.counts)} bins over [{self.lo:g}, {self.hi:g}])"


class SyntheticPoseFaces(Dataset):
    """Synthetic identities at target yaws from a bundle. Returns (image, identity).

    bundle: a bundle folder or `Bundle`; num_identities x images_per_identity samples (or
    `num_images`, which may cut the last identity short); yaw: "uniform" (over the bundle's measured
    reach, `spec.yaw_bounds`; +-the decomposer's rot_range for bundles without one), (lo, hi) degrees,
    or a histogram dict(edges=[K+1],
    weights=[K]) / tuple (edges, weights); lighting: False, True (s ~ N(0, 1)) or the std of s;
    output: "tensor" ([3, R, R] in [0, 1]), "pil", or "sample" (a dict with image, w, yaw,
    identity, for `PoseExtrapolate`); backend: "torch" or "onnx" (same images within ~1e-4);
    device: where the models run ("cpu" in DataLoader workers unless they are spawned).
    """

    def __init__(
        self,
        bundle: Any,
        num_identities: int,
        images_per_identity: int,
        yaw: Any = "uniform",
        lighting: bool | float = False,
        seed: int = 0,
        output: str = "tensor",
        backend: str = "torch",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        num_images: int | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ):
        num_identities = count_arg("num_identities", num_identities)
        images_per_identity = count_arg("images_per_identity", images_per_identity)
        batch_size = count_arg("batch_size", batch_size)
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}; got {output!r}")
        self.spec: BundleSpec = open_bundle(bundle, backend, device)
        self.num_identities = int(num_identities)
        self.images_per_identity = int(images_per_identity)
        full = self.num_identities * self.images_per_identity
        self.num_images = full if num_images is None else count_arg("num_images", num_images)
        if not 1 <= self.num_images <= full:
            raise ValueError(f"num_images must be in [1, {full}], got {num_images}")
        self.seed = int(seed)
        if isinstance(lighting, str) or not isinstance(lighting, (bool, int, float, np.integer, np.floating)):
            raise ValueError(f"lighting must be False, True or a std >= 0, got {lighting!r}")
        self.lighting = 1.0 if lighting is True else float(lighting or 0.0)
        if not np.isfinite(self.lighting) or self.lighting < 0:
            raise ValueError(f"lighting must be False, True or a std >= 0, got {lighting}")
        if self.lighting > 0 and not self.spec.light_names():
            raise ValueError(f"{self.spec.path}: lighting=True but the bundle has no light directions")
        self.yaw_dist = YawDistribution(yaw, self.num_images, self.seed, self.spec)
        self.output, self.backend, self.device = output, backend, device
        self.transform, self.target_transform = transform, target_transform
        self.batch_size = int(batch_size)
        self.engine = Engine(self.spec)

    # ------------------------------------------------------------------ the plan of a sample
    def __len__(self) -> int:
        return self.num_images

    def identity_of(self, index: int) -> int:
        return self._check(index) // self.images_per_identity

    def _check(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return index

    def plan(self, index: int) -> dict[str, Any]:
        """What sample `index` will be: identity, yaw (degrees), s_yaw, and light edits {name: s}."""
        index = self._check(index)
        rng = np.random.default_rng([self.seed, index, 0x5A])
        yaw = self.yaw_dist.draw(index, rng)
        light = {n: float(rng.normal(0.0, self.lighting)) for n in self.spec.light_names()} if self.lighting > 0 else {}
        return {"identity": index // self.images_per_identity, "yaw": yaw, "s_yaw": float(self.spec.yaw_to_s(yaw)), "light": light}

    def yaws(self) -> np.ndarray:
        """Target yaw (degrees) of every sample, without rendering. [len]"""
        return np.array([self.plan(i)["yaw"] for i in range(len(self))])

    def latents(self, indices: Sequence[int]) -> Tensor:
        """Edited latents w' [B, d] of the given samples (what gets rendered)."""
        plans = [self.plan(i) for i in indices]
        ids = sorted({p["identity"] for p in plans})
        w_id = dict(zip(ids, self.engine.mapping(identity_z(self.seed, ids, self.spec.z_dim))))
        w = torch.stack([w_id[p["identity"]] for p in plans])
        for name in self.spec.light_names() if self.lighting > 0 else ():
            w = self.spec.edit(w, name, torch.tensor([p["light"][name] for p in plans]))
        return self.spec.edit(w, "yaw", torch.tensor([p["s_yaw"] for p in plans]))

    # ------------------------------------------------------------------ rendering
    def render(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, list[dict[str, Any]]]:
        """(images [B, 3, R, R] in [0, 1], w' [B, d], plans): no transforms applied."""
        indices = [self._check(i) for i in indices]
        w = self.latents(indices)
        chunks = [self.engine.render(w[i : i + self.batch_size]) for i in range(0, len(indices), self.batch_size)]
        images = to_unit_range(torch.cat(chunks)) if chunks else torch.zeros(0, 3, self.spec.resolution, self.spec.resolution)
        return images, w, [self.plan(i) for i in indices]

    def _finish(self, image: Tensor, w: Tensor, plan: dict[str, Any]) -> tuple[Any, Any]:
        if self.output == "pil":
            from torchvision.transforms.functional import to_pil_image

            out: Any = to_pil_image(image)
        elif self.output == "sample":
            from torchvision import tv_tensors

            out = {"image": tv_tensors.Image(image), "w": w, "yaw": plan["yaw"], "identity": plan["identity"]}
        else:
            out = image
        target: Any = plan["identity"]
        if self.transform is not None:
            out = self.transform(out)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return out, target

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        """Batched fetch: DataLoader calls this with a whole batch of indices (one render call)."""
        images, w, plans = self.render(indices)
        return [self._finish(images[j], w[j], plans[j]) for j in range(len(plans))]

    def get_batch(self, indices: Sequence[int]) -> tuple[Any, Tensor]:
        """(images, targets [B]) for a batch: images stacked to [B, 3, R, R] when every sample is a
        tensor of one shape after the transform, else a list."""
        items = self.__getitems__(indices)
        imgs = [x for x, _ in items]
        if imgs and all(isinstance(x, Tensor) and x.shape == imgs[0].shape for x in imgs):
            imgs = torch.stack(imgs)  # type: ignore[assignment]
        return imgs, torch.as_tensor([t for _, t in items])

    def __repr__(self) -> str:
        light = f", lighting={self.lighting:g}" if self.lighting else ""
        return (
            f"SyntheticPoseFaces(bundle={str(self.spec.path)!r}, identities={self.num_identities}, "
            f"images_per_identity={self.images_per_identity}, len={len(self)}, yaw={self.yaw_dist.describe()}{light}, "
            f"resolution={self.spec.resolution}, output={self.output!r}, backend={self.backend!r}, seed={self.seed})"
        )
