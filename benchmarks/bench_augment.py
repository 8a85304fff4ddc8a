"""Synthetic images/s of `SyntheticPoseFaces` (PyTorch vs ONNX Runtime, DataLoader 1 and 2 workers)
against torchvision ImageFolder reading + decoding the same number of JPEG faces from disk.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_augment [--quick]

Generators have RANDOM weights (speed does not depend on training): the tiny one (32 px, 32
channels, as the tests) and a 128 px one (128 channels at every resolution). Each DataLoader
worker runs with 1 thread (PyTorch sets this in workers; the ONNX session follows). The JPEGs are
the generator's own images written at quality 95 to a temporary folder, so both loaders hand the
trainer the same number of same-sized images. Results: benchmarks/results/augment_speed.{json,md}.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.common import write_results

from facedis_aug.augment.synthetic import SyntheticPoseFaces
from facedis_aug.testing import make_tiny_bundle


def _throughput(ds, workers: int, batch: int) -> tuple[float, float]:
    """(steady images/s after the first batch, seconds to the first batch incl. worker start-up
    and model loading)."""
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, multiprocessing_context="fork" if workers else None)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    t1 = time.perf_counter()
    n = 0
    for x, _ in it:
        n += x.shape[0]
    return n / (time.perf_counter() - t1), t1 - t0


def _write_jpegs(ds: SyntheticPoseFaces, root: Path, n: int, per_class: int = 16) -> None:
    from torchvision.transforms.functional import to_pil_image

    for start in range(0, n, 64):
        x, y = ds.get_batch(range(start, min(n, start + 64)))
        for j in range(x.shape[0]):
            d = root / f"id{(start + j) // per_class:05d}"
            d.mkdir(parents=True, exist_ok=True)
            to_pil_image(x[j]).save(d / f"{start + j:06d}.jpg", quality=95)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer images (smoke run)")
    args = ap.parse_args()
    from torchvision import datasets, transforms

    configs = [("tiny 32px/32ch", 32, 32, 32, 640 if not args.quick else 96), ("128px/128ch", 128, 128, 8, 48 if not args.quick else 24)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, res, ch, batch, n in configs:
            bundle = make_tiny_bundle(tmp / f"b{res}", resolution=res, w_dim=ch, channels=ch, onnx=True, exporter="torchscript")
            jpg_root = tmp / f"jpg{res}"
            ds_t = SyntheticPoseFaces(bundle, num_identities=n // 8, images_per_identity=8, backend="torch", batch_size=batch)
            _write_jpegs(ds_t, jpg_root, n)
            ds_o = SyntheticPoseFaces(bundle, num_identities=n // 8, images_per_identity=8, backend="onnx", batch_size=batch)
            folder = datasets.ImageFolder(str(jpg_root), transform=transforms.ToTensor())
            for workers in (0, 1, 2):
                for name, ds in (("synthetic, PyTorch", ds_t), ("synthetic, ONNX Runtime", ds_o), ("ImageFolder JPEG decode", folder)):
                    ips, first = _throughput(ds, workers, batch)
                    rows.append({"generator": label, "source": name, "workers": workers, "batch": batch, "images": n,
                                 "images_per_s": round(ips, 1), "first_batch_s": round(first, 2)})  # fmt: skip
                    print(rows[-1], flush=True)
    notes = (
        "Random-weight generators (speed only). workers=0 runs in the main process with "
        f"torch.get_num_threads()={torch.get_num_threads()} thread(s); each worker uses 1 thread. "
        "The machine has 2 CPU cores SHARED with other jobs while this ran, so absolute numbers are "
        "noisy and 2 workers cannot reach 2x. ImageFolder decodes 95-quality JPEGs of the same size. "
        "images_per_s is the steady rate after the first batch; first_batch_s is the time to the first "
        "batch (worker start-up, model / session loading, first render)."
    )
    write_results("augment_speed", rows, "Synthetic faces/s vs ImageFolder JPEG decoding (CPU)", notes=notes,
                  columns=["generator", "source", "workers", "batch", "images", "images_per_s", "first_batch_s"])  # fmt: skip


if __name__ == "__main__":
    main()
