"""`PoseRebalanced`: a real labelled dataset plus synthetic identities at the poses it lacks.

    real = torchvision.datasets.ImageFolder("casia/", transform=T.Compose([T.Resize(64), T.ToTensor()]))
    ds = PoseRebalanced(real, "bundle/", target="uniform", bins=12, cache_dir="cache/")
    ds.histogram_before(), ds.histogram_after(); ds.save_histogram_png("yaw.png")

1. The yaw of every real image is estimated with the bundle's view head (PyTorch or ONNX) and
   cached on disk: `cache_dir/yaw_<decomposer sha256[:16]>.json`, keyed by file (path, size,
   mtime) for datasets that expose their files (torchvision DatasetFolder `samples`,
   `facedis_aug.ImageFolderFaces`); other datasets are estimated every time (no safe key).
   The images are read through `base[i]`: give the base dataset a deterministic transform (no
   random flips), or the estimated yaw is of a flipped face.
2. Per yaw bin b with real count c_b and target share t_b, the smallest total N with
   N t_b >= c_b for every bin is N = max_b c_b / t_b; each bin gets d_b = round(N t_b - c_b)
   synthetic images (scaled down together when `max_synthetic` caps the total), so the combined
   histogram equals the target (up to rounding) unless capped.
3. The synthetic part is a `SyntheticPoseFaces` with the deficit histogram (matched exactly, see
   `YawDistribution`); its identity labels are offset after the real classes.
The bins span the bundle's measured reach by default (`spec.yaw_bounds`); bins beyond it are refused,
since the synthetic images there would not have the yaw of their bin. Real yaws outside the bin range
are counted in the end bins.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..ops.io import read_json, write_json
from ..ops.resize import resize_bilinear, resize_square
from .engine import Engine, open_bundle
from .synthetic import SyntheticPoseFaces, count_arg, largest_remainder


def _file_key(base: Any, i: int) -> str | None:
    """A cache key for base[i]'s file (absolute path, size, mtime), or None when unknown."""
    samples = getattr(base, "samples", None)
    if samples is None or i >= len(samples):
        return None
    item = samples[i]
    rel = item[0] if isinstance(item, (tuple, list)) else getattr(item, "rel", None)
    if rel is None:
        return None
    root = getattr(base, "root", None)
    path = Path(rel) if Path(rel).is_absolute() or root is None else Path(root) / rel
    try:
        if path.is_file():
            st = path.stat()
            return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if root is not None and Path(root).is_file():  # a member of a zip: key by the archive
            st = Path(root).stat()
            return f"{Path(root).resolve()}!{rel}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        return None
    return None


def _image_to_model_range(image: Any) -> Tensor:
    """A Dataset image (PIL, or a [C, H, W] tensor in [0, 1]) -> [3, H, W] float in [-1, 1]."""
    if not isinstance(image, Tensor):
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        if not isinstance(image, Image.Image):
            raise ValueError(f"PoseRebalanced: base items must be (image, label) with a PIL image or a [C, H, W] tensor, "
                             f"got an image of type {type(image).__name__}")
        image = pil_to_tensor(image.convert("RGB")).float() / 255.0
    x = image.float()
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"PoseRebalanced: base images must be PIL or [1|3, H, W] tensors, got shape {tuple(x.shape)}")
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x * 2.0 - 1.0


def _like_base(base: Any) -> tuple[str, Callable | None, str]:
    """How synthetic images must come out to look like base's items to a DataLoader's collate:
    (SyntheticPoseFaces output, transform, description).

    A torchvision folder dataset (`loader`, `samples`, `transform`) gets a PIL image at the size and mode
    of its first file, then its own transform, exactly as its real images; any other dataset gets its
    first item's kind: a PIL image of the same size and mode, or a tensor of the same shape and dtype
    (float tensors are taken to be in [0, 1], uint8 in [0, 255])."""
    def pil_like(size: tuple[int, int], mode: str) -> Callable:
        def convert(x: Any) -> Any:  # x: PIL RGB image at the bundle's resolution
            x = x.resize(size, resample=3)  # bicubic
            return x if x.mode == mode else x.convert(mode)
        return convert

    samples, loader = getattr(base, "samples", None), getattr(base, "loader", None)
    if samples and callable(loader) and hasattr(base, "transform"):
        first = samples[0][0] if isinstance(samples[0], (tuple, list)) else None
        raw = loader(first) if isinstance(first, (str, os.PathLike)) else None
        if raw is not None and hasattr(raw, "size") and hasattr(raw, "mode"):
            own = base.transform
            to_raw = pil_like(raw.size, raw.mode)
            fn = (lambda x: own(to_raw(x))) if own is not None else to_raw  # noqa: E731
            return "pil", fn, f"PIL {raw.size[0]}x{raw.size[1]} {raw.mode} + the base's transform"
    image = base[0][0]
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"PoseRebalanced: base images are tensors of shape {tuple(image.shape)}; pass "
                             "synthetic_transform to make synthetic [3, R, R] images in [0, 1] look like them")
        shape, dtype = tuple(image.shape), image.dtype

        def tensor_like(x: Tensor) -> Tensor:
            x = resize_bilinear(x, shape[1:]).clamp(0, 1)
            if shape[0] == 1:
                x = (0.299 * x[0:1] + 0.587 * x[1:2] + 0.114 * x[2:3])
            return (x * 255).round().to(dtype) if dtype == torch.uint8 else x.to(dtype)
        return "tensor", tensor_like, f"tensor {list(shape)} {str(dtype).replace('torch.', '')}"
    if hasattr(image, "size") and hasattr(image, "mode"):
        return "pil", pil_like(image.size, image.mode), f"PIL {image.size[0]}x{image.size[1]} {image.mode}"
    raise ValueError(f"PoseRebalanced: base images of type {type(image).__name__} are neither PIL nor tensors; pass "
                     "synthetic_transform to make synthetic images look like them")


def _kind(x: Any) -> tuple:
    if isinstance(x, Tensor):
        return ("tensor", tuple(x.shape), x.dtype)
    if hasattr(x, "size") and hasattr(x, "mode"):
        return ("PIL", tuple(x.size), x.mode)
    return (type(x).__name__,)


class PoseRebalanced(Dataset):
    """Real (image, label) samples first, then synthetic ones (label = identity + num_real_classes).

    base: any (image, label) Dataset; bundle: bundle folder or `Bundle`; target: "uniform" or K
    weights over the bins; bins: number of equal bins over `yaw_range` or explicit edges;
    yaw_range: default the bundle's measured reach (`spec.yaw_bounds`; +-rot_range without one); images_per_identity:
    synthetic images per new identity; max_synthetic: cap on the synthetic count;
    synthetic_transform / synthetic_target_transform: applied to synthetic samples only. Without
    synthetic_transform, synthetic images come out like the base's (same type, size and mode, and a
    torchvision folder dataset's own transform applied to them: see `_like_base`), so that a default
    DataLoader batches the two together; `synthetic_format` says what was chosen.
    """

    def __init__(
        self,
        base: Dataset,
        bundle: Any,
        target: str | Sequence[float] = "uniform",
        bins: int | Sequence[float] = 12,
        yaw_range: tuple[float, float] | None = None,
        cache_dir: str | os.PathLike | None = None,
        images_per_identity: int = 8,
        max_synthetic: int | None = None,
        lighting: bool | float = False,
        seed: int = 0,
        backend: str = "torch",
        device: str = "cpu",
        synthetic_transform: Callable | None = None,
        synthetic_target_transform: Callable | None = None,
        num_real_classes: int | None = None,
        batch_size: int = 64,
        progress: bool = False,
    ):
        if base is None or not hasattr(base, "__getitem__") or not hasattr(base, "__len__"):
            raise ValueError(f"PoseRebalanced: base must be a map-style (image, label) Dataset, got {type(base).__name__}")
        if len(base) == 0:  # type: ignore[arg-type]
            raise ValueError("PoseRebalanced: base dataset is empty")
        batch_size = count_arg("batch_size", batch_size)
        if max_synthetic is not None:
            max_synthetic = count_arg("max_synthetic", max_synthetic, minimum=0)
        self.base = base
        self.spec = open_bundle(bundle, backend, device)
        lo, hi = yaw_range if yaw_range is not None else self.spec.uniform_yaws()
        if isinstance(bins, int):
            if bins < 1:
                raise ValueError(f"bins must be >= 1, got {bins}")
            self.edges = np.linspace(float(lo), float(hi), bins + 1)
        else:
            self.edges = np.asarray(bins, dtype=np.float64)
            if self.edges.ndim != 1 or len(self.edges) < 2 or not (np.diff(self.edges) > 0).all():
                raise ValueError("bins must be a count or increasing edges (at least 2)")
        self.spec.check_yaws(float(self.edges[0]), float(self.edges[-1]), "PoseRebalanced's bins")
        k = len(self.edges) - 1
        t = np.full(k, 1.0 / k) if isinstance(target, str) and target == "uniform" else np.asarray(target, dtype=np.float64)
        if isinstance(target, str) and target != "uniform":
            raise ValueError(f"target must be 'uniform' or {k} bin weights, got {target!r}")
        if t.shape != (k,) or (t < 0).any() or t.sum() <= 0:
            raise ValueError(f"target must have {k} non-negative weights (one per bin), not all zero")
        self.target = t / t.sum()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size, self.progress = int(batch_size), progress
        self.synthetic_target_transform = synthetic_target_transform
        self.engine = Engine(self.spec)

        self.real_view, labels = self._estimate_real()  # [N, 3] yaw, pitch, roll degrees
        self.real_yaw = self.real_view[:, 0]
        if num_real_classes is None:
            classes = getattr(base, "classes", None)
            num_real_classes = len(classes) if classes is not None else (int(max(labels)) + 1 if labels else 0)
        self.num_real_classes = int(num_real_classes)

        self.real_counts = self._bin_counts(self.real_yaw)
        self.deficit = self._deficit(self.real_counts, max_synthetic)
        n_syn = int(self.deficit.sum())
        self.synthetic: SyntheticPoseFaces | None = None
        self.synthetic_format = "as given (synthetic_transform)" if synthetic_transform is not None else ""
        if n_syn > 0:
            ipi = count_arg("images_per_identity", images_per_identity)
            output, transform = "tensor", synthetic_transform
            if synthetic_transform is None:
                output, transform, self.synthetic_format = _like_base(base)
            self.synthetic = SyntheticPoseFaces(
                self.spec, num_identities=math.ceil(n_syn / ipi), images_per_identity=ipi, num_images=n_syn,
                yaw={"edges": self.edges, "weights": self.deficit}, lighting=lighting, seed=seed, output=output,
                backend=backend, device=device, transform=transform, batch_size=batch_size,
            )  # fmt: skip
            self._check_same_kind(user_transform=synthetic_transform is not None)

    def _check_same_kind(self, user_transform: bool) -> None:
        """A default DataLoader collate needs real and synthetic items of one kind and size: check the first
        of each now, not mid-epoch."""
        assert self.synthetic is not None
        real, syn = _kind(self.base[0][0]), _kind(self.synthetic[0][0])
        if real != syn:
            msg = (f"PoseRebalanced: real images come out as {real} but synthetic ones as {syn}; a default DataLoader "
                   "cannot batch them together")
            if not user_transform:
                raise ValueError(msg + "; pass synthetic_transform")
            import warnings

            warnings.warn(msg + " (synthetic_transform given: left as it is)", stacklevel=3)

    # ------------------------------------------------------------------ yaw of the real images
    def _cache_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"yaw_{self.spec.decomposer_sha256[:16]}.json"

    def _estimate_real(self) -> tuple[np.ndarray, list[int]]:
        n = len(self.base)  # type: ignore[arg-type]
        keys = [_file_key(self.base, i) for i in range(n)]
        path = self._cache_path()
        cache: dict[str, list[float]] = {}
        if path is not None and path.is_file():
            data = read_json(path)
            if data.get("decomposer_sha256") == self.spec.decomposer_sha256:
                cache = data.get("entries", {})
        view = np.zeros((n, 3))
        labels: list[int] = []
        todo_idx: list[int] = []
        todo_img: list[Tensor] = []

        def flush() -> None:
            if todo_idx:
                out = self.engine.view(torch.stack(todo_img)).numpy().astype(np.float64)
                for j, i in enumerate(todo_idx):
                    view[i] = out[j]
                    if keys[i] is not None:
                        cache[keys[i]] = [float(v) for v in out[j]]
                todo_idx.clear()
                todo_img.clear()

        it = range(n)
        if self.progress:
            from tqdm import tqdm

            it = tqdm(it, desc="estimating yaw of real images")
        fresh = 0
        for i in it:
            key = keys[i]
            if key is not None and key in cache:
                view[i] = cache[key]
                labels.append(self._label_of(i))
                continue
            item = self.base[i]
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(f"PoseRebalanced: base[{i}] must be an (image, label) pair, got {type(item).__name__}")
            image, label = item
            labels.append(int(label))
            x = _image_to_model_range(image)
            todo_img.append(resize_square(x[None], self.spec.view_size)[0])
            todo_idx.append(i)
            fresh += 1
            if len(todo_idx) >= self.batch_size:
                flush()
        flush()
        if path is not None and fresh and any(k is not None for k in keys):
            write_json(path, {"decomposer_sha256": self.spec.decomposer_sha256, "entries": cache})
        self.cache_hits = n - fresh
        return view, labels

    def _label_of(self, i: int) -> int:
        targets = getattr(self.base, "targets", None)
        if targets is not None:
            return int(targets[i])
        return int(self.base[i][1])

    def _bin_counts(self, yaw: np.ndarray) -> np.ndarray:
        clipped = np.clip(yaw, self.edges[0], self.edges[-1])
        return np.histogram(clipped, bins=self.edges)[0].astype(np.int64)

    def _deficit(self, counts: np.ndarray, cap: int | None) -> np.ndarray:
        live = self.target > 0
        if counts.sum() == 0:
            return np.zeros_like(counts)
        total = float(np.max(counts[live] / self.target[live]))
        want = total * self.target - counts
        want = np.where(live, np.maximum(want, 0.0), 0.0)
        n = int(round(want.sum()))
        if cap is not None:
            n = min(n, int(cap))
        if n <= 0:
            return np.zeros_like(counts)
        return largest_remainder(want, n)

    # ------------------------------------------------------------------ histograms
    def histogram_before(self) -> dict[str, Any]:
        """Yaw histogram of the real images: edges [K+1] degrees, counts [K], fractions [K]."""
        return self._hist(self.real_counts)

    def histogram_after(self) -> dict[str, Any]:
        """Real + synthetic (synthetic binned at their target yaws, exact, no rendering)."""
        syn = self._bin_counts(self.synthetic.yaws()) if self.synthetic is not None else np.zeros_like(self.real_counts)
        return self._hist(self.real_counts + syn)

    def _hist(self, counts: np.ndarray) -> dict[str, Any]:
        total = max(int(counts.sum()), 1)
        return {"edges": [float(e) for e in self.edges], "counts": [int(c) for c in counts],
                "fractions": [float(c) / total for c in counts], "target": [float(t) for t in self.target]}  # fmt: skip

    def save_histogram_png(self, path: str | os.PathLike) -> Path:
        """Bar chart of the yaw histogram before and after, with the target share, as a PNG."""
        from matplotlib.figure import Figure  # no pyplot: the user's backend and figures stay untouched

        from ..ops.io import atomic_write

        before, after = self.histogram_before(), self.histogram_after()
        centres = (self.edges[:-1] + self.edges[1:]) / 2
        width = np.diff(self.edges)
        fig = Figure(figsize=(10, 3.6))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, h, title in ((axes[0], before, f"real only ({sum(before['counts'])})"), (axes[1], after, f"real + synthetic ({sum(after['counts'])})")):
            ax.bar(centres, h["fractions"], width=width * 0.9, color="#4C72B0" if h is before else "#55A868")
            ax.step(self.edges, np.r_[self.target, self.target[-1]], where="post", color="k", lw=1, label="target")
            ax.set_title(title)
            ax.set_xlabel("yaw (degrees, + = turned to image left)")
        axes[0].set_ylabel("share of images")
        axes[0].legend()
        fig.tight_layout()
        path = Path(path)
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        return path

    # ------------------------------------------------------------------ Dataset
    @property
    def num_real(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    @property
    def num_synthetic(self) -> int:
        return len(self.synthetic) if self.synthetic is not None else 0

    @property
    def num_classes(self) -> int:
        """Real classes + synthetic identities (for the recognizer's classifier size)."""
        return self.num_real_classes + (self.synthetic.num_identities if self.synthetic is not None else 0)

    def __len__(self) -> int:
        return self.num_real + self.num_synthetic

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        """Batched: real samples one by one from the base, synthetic ones in one render call."""
        n = len(self)
        idx = [int(i) + n if int(i) < 0 else int(i) for i in indices]
        for i in idx:
            if not 0 <= i < n:
                raise IndexError(f"index {i} out of range for {n} samples")
        out: list[Any] = [None] * len(idx)
        syn = [(j, i - self.num_real) for j, i in enumerate(idx) if i >= self.num_real]
        for j, i in enumerate(idx):
            if i < self.num_real:
                out[j] = self.base[i]
        if syn:
            assert self.synthetic is not None
            items = self.synthetic.__getitems__([s for _, s in syn])
            for (j, _), (image, ident) in zip(syn, items):
                label = ident + self.num_real_classes
                if self.synthetic_target_transform is not None:
                    label = self.synthetic_target_transform(label)
                out[j] = (image, label)
        return out

    def __repr__(self) -> str:
        return (
            f"PoseRebalanced(real={self.num_real} images / {self.num_real_classes} classes, "
            f"synthetic={self.num_synthetic} images / {self.num_classes - self.num_real_classes} identities, "
            f"bins={len(self.edges) - 1} over [{self.edges[0]:g}, {self.edges[-1]:g}] deg, "
            f"synthetic_format={self.synthetic_format!r}, bundle={str(self.spec.path)!r}, backend={self.spec.backend!r})"
        )
