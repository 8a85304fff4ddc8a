"""Issue 17 measured: images/s written by `synthesize` per format, and read back by each format's reader
(RecordFaces, WebDataset, ImageFolderFaces and torchvision's ImageFolder on the folder).

    OMP_NUM_THREADS=1 python -m benchmarks.bench_formats [--bundle B] [--images 512] [--size 112]

Without --bundle it uses the tests' tiny random bundle (the rendering cost of a real bundle is in
bench_augment); the writers' and readers' own costs (JPEG encode/decode, framing, tar) are what this
measures. The load average at the end is in the report.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch


from benchmarks.common import write_results
from facedis_aug.augment.synthesize import synthesize
from facedis_aug.augment.synthetic import SyntheticPoseFaces
from facedis_aug.testing import make_tiny_bundle
from facedis_aug.data.folder import ImageFolderFaces
from facedis_aug.data.recordio import RecordFaces


def _read_all(ds, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        ds[i]
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--name", default="formats")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_formats_"))
    try:
        bundle = args.bundle or make_tiny_bundle(tmp / "bundle")
        ids = max(1, args.images // 8)
        rows = []
        for fmt in ("folder", "rec", "wds"):
            ds = SyntheticPoseFaces(bundle, ids, 8, batch_size=64)  # yaw uniform over the bundle's reach
            out = tmp / fmt
            t0 = time.perf_counter()
            r = synthesize(ds, out, fmt=fmt, crop="arcface", size=args.size, chunk=64, shard_size=256, progress=False)
            write_s = time.perf_counter() - t0
            n = r["images"]
            if fmt == "folder":
                import torchvision

                readers = {"ImageFolderFaces": ImageFolderFaces(out, args.size),
                           "torchvision ImageFolder": torchvision.datasets.ImageFolder(str(out), transform=torchvision.transforms.ToTensor())}
                read = {k: _read_all(v, n) for k, v in readers.items()}
            elif fmt == "rec":
                read = {"RecordFaces": _read_all(RecordFaces(out / "train.rec", args.size), n)}
            else:
                import webdataset as wds

                t1 = time.perf_counter()
                count = sum(1 for _ in wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False)
                            .decode("torchrgb").to_tuple("jpg", "cls"))
                read = {"webdataset (decode torchrgb)": count / (time.perf_counter() - t1)}
            for reader, ips in read.items():
                rows.append({"format": fmt, "images": n, "write images/s (render + JPEG + file)": round(n / write_s, 1),
                             "reader": reader, "read images/s": round(ips, 1)})
        notes = (f"{args.images} images at {args.size}x{args.size} (arcface crop), JPEG q95, one process, torch threads "
                 f"{torch.get_num_threads()}; bundle: {'the given one' if args.bundle else 'the tests tiny random bundle (32 px generator)'}. "
                 "Write includes rendering and the bundle's view head (delivered yaw) for every image.")
        write_results(args.name, rows, "Synthetic sets on disk: write and read speed per format", notes=notes, out_dir=args.out_dir)
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
