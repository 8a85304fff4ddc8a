"""Does the view head read blurred faces' turns shorter? Its yaw slope on world faces blurred by a known amount.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_blur_scale --decomposers NAME=PATH [NAME=PATH ...] [--runs RUN ...]

The bundles' decomposers read generated faces' turns 0.79-1.13 of their true size (table2_tiny_v17*.md) and the
world's small turns about 15% short. One reading: a view head trained through reconstruction pulls the turns of faces
it finds ambiguous towards the mean. A direct check on faces whose truth is known: the held-out world faces of
`decompose_eval.eval_set` (uniform yaw) blurred with a Gaussian of sigma 0, 0.5, 1, 1.5 px at the decomposer's size,
the least-squares slope of the read yaw on the true one (|yaw| <= 30 and all). For scale, the sharpness of the images
(mean |Laplacian|, [-1, 1] units) is given for each blur and, with --runs, for each run's generated faces.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from benchmarks.common import write_results
from benchmarks.decompose_eval import _slope as slope  # least-squares slope of predicted on true yaw
from benchmarks.decompose_eval import eval_set
from facedis_aug.decompose.model import load_decomposer
from facedis_aug.directions.semantics import sample_w
from facedis_aug.gan.networks import load_generator

SIGMAS = (0.0, 0.5, 1.0, 1.5)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x [B, C, H, W] blurred by a normalised Gaussian of `sigma` px (radius 3 sigma, edges replicated); 0: x."""
    if sigma <= 0:
        return x
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def sharpness(x: torch.Tensor) -> float:
    """Mean |4-neighbour Laplacian| of x [B, C, H, W] over interior pixels."""
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return float(lap.abs().mean())


@torch.no_grad()
def read_yaw(model, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
    return torch.cat([model.estimate_view(x[i:i + batch])["yaw"] for i in range(0, x.shape[0], batch)])


def named_decomposers(items: list[str]) -> tuple[dict[str, torch.nn.Module], int]:
    """({name: decomposer in eval mode}, their common input side) from NAME=PATH arguments; one-line exit otherwise."""
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--decomposers takes NAME=PATH, got {item!r}")
        models[name] = load_decomposer(path).eval()
    sizes = {m.cfg.image_size for m in models.values()}
    if len(sizes) != 1:
        raise SystemExit(f"the decomposers read different sizes {sorted(sizes)}: give ones of one size")
    return models, sizes.pop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decomposers", nargs="+", required=True, help="NAME=PATH of decomposer.safetensors files")
    ap.add_argument("--runs", nargs="*", default=[], help="run folders whose generated faces' sharpness to report")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--name", default="blur_scale")
    args = ap.parse_args(argv)
    models, size = named_decomposers(args.decomposers)
    ev = eval_set(args.images, resolution=size, size=size)
    small = ev["yaw"].abs() <= 30
    rows = []
    for sigma in SIGMAS:
        x = blur(ev["x"], sigma)
        row = {"blur sigma px": sigma, "sharpness": round(sharpness(x), 4)}
        for name, m in models.items():
            yaw = read_yaw(m, x)
            row[f"{name} slope |yaw|<=30"] = round(slope(yaw[small], ev["yaw"][small]), 3)
            row[f"{name} slope all"] = round(slope(yaw, ev["yaw"]), 3)
        rows.append(row)
    generated = {}
    for run in args.runs:
        G = load_generator(f"{run}/gan/gan.safetensors").eval()
        with torch.no_grad():
            generated[run] = round(sharpness(G.synthesis(sample_w(G, 256, 7), noise_mode="const").clamp(-1, 1)), 4)
    notes = (f"{args.images} held-out world faces of uniform yaw at {size} px ({int(small.sum())} within |yaw| 30), "
             "blurred by a Gaussian of the given sigma; slope: least-squares slope of the decomposer's yaw on the true "
             "yaw (1 = to scale). Sharpness: mean |Laplacian| in [-1, 1] units. Generated faces' sharpness (256 faces, "
             f"seed 7): {generated or 'not asked'}.")
    write_results(args.name, rows, "Yaw scale of the view head on blurred world faces", notes=notes,
                  extra={"generated_sharpness": generated})


if __name__ == "__main__":
    main()
