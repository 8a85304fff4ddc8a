"""Who reads a washed-out face's turn right? The view head and the regressor on world faces of lowered contrast.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_contrast_scale --decomposers NAME=PATH [...] [--bundles NAME=BUNDLE ...]

Along -v_yaw the tiny bundles' heads turn and fade into low-contrast blurs (table2_tiny_v17_reach.png); there the
view head reads the turn about half as large as the evaluation regressor does (v17 at s = -1.3 about the faces' mean:
-7.8 against -12.5 degrees), and which of them is right on generated faces is not known. On held-out world faces of
known yaw (`decompose_eval.eval_set`, uniform yaw) the contrast is lowered by a known factor k (each image pulled
towards its own mean colour: m + k (x - m)), and the least-squares slope of each reader's yaw on the true one is
given for |yaw| <= 30 and for all: a reader whose slope falls with k reads washed-out turns short. The edits also
lose their hair; the last rows are the same faces rendered bald (`bench_world_ablation`'s 'bald' world: no hair on
the top and front of the head, no long hair), at k = 1 and 0.5. For scale, the
images' contrast (std of the pixels in the central 5/8 of the side, [-1, 1] units) beside each k, and with --bundles
the contrast of 256 generated faces edited along each bundle's v_yaw (Eq. 4, s sigma about their mean position).
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.bench_blur_scale import named_decomposers, read_yaw
from benchmarks.bench_world_ablation import world_without
from benchmarks.common import write_results
from benchmarks.decompose_eval import _slope as slope  # least-squares slope of predicted on true yaw
from benchmarks.decompose_eval import eval_set
from benchmarks.pose_regressor import get_or_train, load_pose_regressor, predict

FACTORS = (1.0, 0.75, 0.5, 0.35, 0.25)
EDITS = (-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0)


def lower_contrast(x: torch.Tensor, k: float) -> torch.Tensor:
    """x [B, C, H, W] pulled towards each image's mean colour: m + k (x - m); k = 1 gives x."""
    if k == 1.0:
        return x
    m = x.mean((2, 3), keepdim=True)
    return m + k * (x - m)


def contrast(x: torch.Tensor, margin: float = 0.1875) -> float:
    """Mean over images of the pixel std (all channels) in the central part of the image ([-1, 1] units)."""
    r = x.shape[-1]
    c = int(round(r * margin))
    return float(x[..., c:r - c, c:r - c].flatten(1).std(1).mean())


@torch.no_grad()
def edited_contrast(bundle_path: str, n: int = 256, seed: int = 7) -> dict[str, float]:
    """Contrast of n generated faces edited along the bundle's v_yaw by s sigma about their mean position."""
    from facedis_aug.bundle import Bundle
    from facedis_aug.directions.semantics import sample_w
    from facedis_aug.ops.linear import edit_latent

    b = Bundle.load(bundle_path)
    G = b.generator
    v, sigma = b.directions["yaw"].float(), b.sigma("yaw")
    v = v / v.norm()
    w = sample_w(G, n, seed)
    centre = float((w @ v).mean()) / sigma
    return {f"{s:+g}": round(contrast(G.synthesis(edit_latent(w, v, centre + s, sigma), noise_mode="const").clamp(-1, 1)), 4)
            for s in EDITS}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decomposers", nargs="+", required=True, help="NAME=PATH of decomposer.safetensors files")
    ap.add_argument("--bundles", nargs="*", default=[], help="NAME=BUNDLE folders whose v_yaw edits' contrast to report")
    ap.add_argument("--regressor", default=None, help="pose regressor weights (default: the cached 32 px one)")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--name", default="contrast_scale")
    args = ap.parse_args(argv)
    models, size = named_decomposers(args.decomposers)
    reg_path = args.regressor or get_or_train(32)
    regressor = load_pose_regressor(reg_path)
    ev = eval_set(args.images, resolution=size, size=size)
    with world_without(("hair",)):
        bald = eval_set(args.images, resolution=size, size=size)
    if not torch.equal(bald["yaw"], ev["yaw"]):
        raise RuntimeError("the bald world drew other poses: its rows would not compare")
    small = ev["yaw"].abs() <= 30
    rows = []
    for world, k in [("full", k) for k in FACTORS] + [("bald", 1.0), ("bald", 0.5)]:
        x = lower_contrast((ev if world == "full" else bald)["x"], k)
        row = {"world": world, "contrast factor k": k, "contrast": round(contrast(x), 4)}
        readers = {**{n: read_yaw(m, x) for n, m in models.items()}, "regressor": predict(regressor, x)["yaw"]}
        for name, yaw in readers.items():
            row[f"{name} slope |yaw|<=30"] = round(slope(yaw[small], ev["yaw"][small]), 3)
            row[f"{name} slope all"] = round(slope(yaw, ev["yaw"]), 3)
        rows.append(row)
    edits = {}
    for item in args.bundles:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--bundles takes NAME=BUNDLE, got {item!r}")
        edits[name] = edited_contrast(path)
    notes = (f"{args.images} held-out world faces of uniform yaw at {size} px ({int(small.sum())} within |yaw| 30), "
             "each pulled towards its own mean colour by the factor k; slope: least-squares slope of the reader's yaw on "
             f"the true yaw (1 = to scale). Readers: the named decomposers' view heads and the evaluation regressor "
             f"({reg_path}). Contrast: pixel std in the central 5/8 of the side, [-1, 1] units. Generated faces edited "
             f"along v_yaw by s sigma about their mean (256 faces, seed 7), contrast per s: {edits or 'not asked'}.")
    write_results(args.name, rows, "Yaw scale of the view head and the regressor on world faces of lowered contrast",
                  notes=notes, extra={"edited_contrast": edits})


if __name__ == "__main__":
    main()
