"""Synthetic face world: rendering speed (images/s) and the picture grids.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_synthetic [--threads N] [--repeats R] [--quick]

Measures images/s at 32, 64 and 128 px for the batched path (`SyntheticFaces.batch`, batch 64)
and the per-item path (`dataset[i]`), with and without the canonical maps at 64 px, and writes
`benchmarks/results/synthetic_world.{json,md}` plus `synthetic_faces.png` (8 identities x 8 yaws
from -90 to +90 at 64 px), `synthetic_casia.png` (64 random images of the default CASIA-like
pose distribution) and `synthetic_maps.png` (image / canonical albedo / depth / face mask).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

import torch


from benchmarks.common import RESULTS, write_results
from facedis_aug.data.synthetic import FaceParams, SyntheticFaces, SyntheticWorld
from facedis_aug.ops import save_image_grid


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _rate(fn, n_images: int, repeats: int) -> tuple[float, float]:
    """Median images/s over `repeats` timed calls (after one warm-up call): by wall clock, and per
    CPU-second of this process (less sensitive to other jobs sharing the cores)."""
    fn(0)
    wall, cpu = [], []
    for r in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn(r + 1)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return n_images / statistics.median(wall), n_images / statistics.median(cpu)


def speed(repeats: int, quick: bool) -> list[dict]:
    rows = []
    batch = 64
    for res in (32, 64, 128):
        ds = SyntheticFaces(100_000, resolution=res, seed=0)
        b = batch if res < 128 else 32
        rate, cpu = _rate(lambda r: ds.batch(range(r * b, (r + 1) * b)), b, repeats)
        rows.append({"path": "batched", "resolution": res, "batch": b, "maps": False, "images_per_s": rate, "images_per_cpu_s": cpu, "ms_per_image": 1000 / rate})
        n = 8 if quick else 32
        rate, cpu = _rate(lambda r: [ds[i] for i in range(r * n, (r + 1) * n)], n, max(2, repeats // 2))
        rows.append({"path": "per-item", "resolution": res, "batch": 1, "maps": False, "images_per_s": rate, "images_per_cpu_s": cpu, "ms_per_image": 1000 / rate})
    ds = SyntheticFaces(100_000, resolution=64, seed=0, with_maps=True)
    rate, cpu = _rate(lambda r: ds.batch(range(r * batch, (r + 1) * batch)), batch, repeats)
    rows.append({"path": "batched", "resolution": 64, "batch": batch, "maps": True, "images_per_s": rate, "images_per_cpu_s": cpu, "ms_per_image": 1000 / rate})
    loader = torch.utils.data.DataLoader(SyntheticFaces(100_000, resolution=64, seed=0), batch_size=batch)
    it = iter(loader)
    rate, cpu = _rate(lambda r: next(it), batch, repeats)
    rows.append({"path": "DataLoader (__getitems__)", "resolution": 64, "batch": batch, "maps": False, "images_per_s": rate, "images_per_cpu_s": cpu, "ms_per_image": 1000 / rate})
    return rows


def _cat(ps: list[FaceParams]) -> FaceParams:
    return FaceParams(**{f.name: torch.cat([getattr(p, f.name) for p in ps]) for f in dataclasses.fields(FaceParams)})


def pictures(out: Path) -> list[str]:
    w = SyntheticWorld(64, seed=0)
    yaws = torch.linspace(-90, 90, 8).tolist()
    p = _cat([w.identity_params(ident, yaws, index=ident) for ident in range(8)])
    p = dataclasses.replace(p, tx=torch.zeros(len(p)), ty=torch.zeros(len(p)), roll=torch.zeros(len(p)), pitch=torch.zeros(len(p)))
    r = w.render(p, with_maps=True)
    files = []
    save_image_grid(r["image"], out / "synthetic_faces.png", nrow=8, value_range=(0, 1))
    files.append("synthetic_faces.png")
    images, _ = SyntheticFaces(64, resolution=64, seed=1).batch(range(64))
    save_image_grid(images, out / "synthetic_casia.png", nrow=8, value_range=(0, 1))
    files.append("synthetic_casia.png")
    # canonical maps of the 8 identities (their frontal column): image, albedo, depth, mask rows
    sel = torch.arange(8) * 8 + 4  # yaw ~ +13 degrees column: the posed image beside its maps
    depth, mask = r["depth"][sel], r["mask"][sel]
    dn = torch.zeros_like(depth)
    for i in range(len(sel)):  # near = bright, normalised over the face mask
        d = depth[i]
        lo, hi = d[mask[i]].min(), d[mask[i]].max()
        dn[i] = ((hi - d) / (hi - lo)).clamp(0, 1) * mask[i] + 0.0
    grid = torch.cat([r["image"][sel], r["albedo"][sel], dn[:, None].expand(-1, 3, -1, -1), mask[:, None].float().expand(-1, 3, -1, -1)])
    save_image_grid(grid, out / "synthetic_maps.png", nrow=8, value_range=(0, 1))
    files.append("synthetic_maps.png")
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS or torch's default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer per-item images (smoke test)")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    rows = speed(args.repeats, args.quick)
    load_after = _load()
    files = pictures(out)
    notes = (
        f"torch threads: {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}). "
        f"Load average (1/5/15 min) before: {load_before}, after: {load_after}; the machine has {os.cpu_count()} cores, "
        "so a load above the thread count means other processes (other engineers' jobs) shared the CPU and these "
        "rates are lower bounds. Batched = `SyntheticFaces.batch(64 indices)` (32 at 128 px); per-item = "
        "`dataset[i]` one at a time; DataLoader = `DataLoader(ds, batch_size=64)`, which renders each batch at once through `__getitems__`; maps = with the canonical 64x64 depth/albedo/mask (a second render). "
        "Pictures: " + ", ".join(files) + "."
    )
    write_results("synthetic_world", rows, "Synthetic face world: rendering speed", notes=notes,
                  extra={"load_before": load_before, "load_after": load_after, "pictures": files}, out_dir=out)


if __name__ == "__main__":
    main()
