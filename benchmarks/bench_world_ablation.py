"""Which of the world's nuisances compresses the decomposer's yaw? The recipe's arm on worlds with parts switched off.

The decomposer's image model (a Lambertian face layer over a still background) leaves out what photos and the
synthetic world have: specular highlights, a torso that turns only 30% of the head's yaw, optics blur and
sensor noise; and what its symmetric face layer cannot draw: an asymmetric fringe, a mole; and hair. Each
variant switches some of them off in the world (training images and the held-out evaluation
faces alike, the same poses and identities), trains bench_decompose's recipe arm on it and scores it against
that world's truth. If the compressed yaw slope (0.49 +- 0.05 at 1500 steps on the full world) comes from one
of them, its row rises towards 1; if every row stays compressed, the image model's own ambiguities are to blame.

    python -m benchmarks.bench_world_ablation --variants full no-specular body-turns no-blur plain --steps 1500 \
        --seeds 0 --name world_ablation
    python -m benchmarks.bench_world_ablation --arm ARM --variants full bald ...   # another bench_decompose arm

The world is patched in this process only (benchmark code; the package's world is not changed). Variants other
than 'full' keep their decomposers in a cache folder of their own, since bench_decompose's cache key does not
see the patch.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
from typing import Any, Iterator

import torch

from benchmarks import bench_decompose as BD
from benchmarks.common import RESULTS, write_results
from facedis_aug.data import world_geometry as WG
from facedis_aug.data import world_shading as WS

ARM = "world-pairs-face-ring11-head-warm-r3"  # the tiny recipe's decompose settings on world images (bench_decompose)
PARTS = ("specular", "body", "blur", "noise", "asymmetry", "hair")
# identity attributes that make a face asymmetric, and the range that switches each off
SYMMETRIC = {"fringe": (0.0, 0.0), "hair_wave": (0.0, 0.0), "mole": (1.0, 1.0), "blotch_fx": (0.0, 0.0),
             "blotch_fy": (0.0, 0.0)}
VARIANTS: dict[str, tuple[str, ...]] = {
    "full": (),
    "no-specular": ("specular",),
    "body-turns": ("body",),  # the torso and neck follow the head's whole yaw, not 30% of it
    "no-blur": ("blur", "noise"),
    "plain": ("specular", "body", "blur", "noise"),
    "symmetric": ("asymmetry",),  # no side fringe, hair wave, mole or tilted skin blotch
    "bald": ("hair",),  # no hair on the top and front of the head, no long hair
    "bare": PARTS,
}


@contextlib.contextmanager
def world_without(parts: tuple[str, ...]) -> Iterator[None]:
    """Switch the named world parts off while inside (module attributes are restored on exit)."""
    saved = {"blur": WS.blur, "body": WG.BODY_YAW_SHARE, "spec": list(WG.IMG_SPEC),
             "id_spec": list(WG.ID_SPEC)}
    id_ranges = {**(SYMMETRIC if "asymmetry" in parts else {}), **({"bald": (0.0, 0.0)} if "hair" in parts else {})}
    try:
        if "body" in parts:
            WG.BODY_YAW_SHARE = 1.0
        if "blur" in parts:
            WS.blur = lambda img, sigma_px, radius: img
        # spec_scale 0: shade()'s Blinn-Phong term times 0, the Lambertian part as it was
        img_off = {n for n, part in (("noise", "noise"), ("spec_scale", "specular")) if part in parts}
        WG.IMG_SPEC[:] = [(n, 0.0, 0.0) if n in img_off else (n, lo, hi) for n, lo, hi in WG.IMG_SPEC]
        WG.ID_SPEC[:] = [(n, *id_ranges[n]) if n in id_ranges else (n, lo, hi) for n, lo, hi in WG.ID_SPEC]
        yield
    finally:
        WS.blur, WG.BODY_YAW_SHARE = saved["blur"], saved["body"]
        WG.IMG_SPEC[:] = saved["spec"]
        WG.ID_SPEC[:] = saved["id_spec"]


def _check_patch_bites(parts: tuple[str, ...]) -> float:
    """Mean |difference| of a few world images with and without the patch: 0 would mean it did nothing."""
    from facedis_aug.data.synthetic import SyntheticFaces

    ds = SyntheticFaces(64, 32, seed=0, num_identities=50, pose="uniform")
    idx = torch.arange(16)
    full = ds.batch(idx)[0]
    with world_without(parts):
        patched = ds.batch(idx)[0]
    return float((full - patched).abs().mean())


def main(argv: list[str] | None = None) -> Any:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--arm", default=ARM, choices=list(BD.ARMS), help="the bench_decompose arm trained on each world")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--name", default="world_ablation")
    ap.add_argument("--cache-dir", default=str(RESULTS / "cache" / "decompose"))
    ap.add_argument("--quick", action="store_true", help="smoke test (bench_decompose --quick)")
    args = ap.parse_args(argv)
    rows, per_variant, bites = [], {}, {}
    pictures = RESULTS / "cache" / "world_ablation"  # bench_decompose's own table and picture per variant
    for variant in args.variants:
        parts = VARIANTS[variant]
        bites[variant] = _check_patch_bites(parts) if parts else 0.0
        if parts and bites[variant] == 0.0:
            raise SystemExit(f"variant {variant}: switching off {parts} changed no world pixel; the patch did not bite")
        cache = args.cache_dir if not parts else f"{args.cache_dir}_world_{'_'.join(parts)}"
        bd_args = ["--arms", args.arm, "--steps", str(args.steps), "--seeds", *map(str, args.seeds), "--cache-dir", cache,
                   "--name", f"{args.name}_{variant}", "--out-dir", str(pictures)]
        with world_without(parts):
            out = BD.main(bd_args + (["--quick"] if args.quick else []))
        row = out["rows"][-1]
        # the decomposition picture of the variant's first seed, beside the table
        shutil.copyfile(pictures / f"{args.name}_{variant}_{args.arm}.png", RESULTS / f"{args.name}_{variant}.png")
        per_variant[variant] = out["results"][args.arm]
        rows.append({"world": variant, "switched off": ", ".join(parts) or "-",
                     "image change": round(bites[variant], 4),
                     **{k: v for k, v in row.items() if k not in ("arm", "train data", "mutual", "yaw aug")}})
    what = (f"The tiny recipe's decompose arm ({ARM}: world images in identity pairs, the face-sized layer, the head "
            "surface after a depth-surface warm-up, the best of 3 starts)") if args.arm == ARM else f"bench_decompose's arm {args.arm}"
    notes = (f"{what} trained {args.steps} steps per seed on each "
             "world and scored on 512 held-out faces of the same world (uniform yaw in [-90, 90]). Switched off: "
             "'specular' = the Blinn-Phong highlight (Lambertian shading only), 'body' = the torso and neck follow all "
             "of the head's yaw (the world: 30%), 'blur' / 'noise' = the optics blur and the sensor noise, 'asymmetry' = "
             "the side fringe, hair wave, mole and tilted skin blotch (a mirror-symmetric identity), 'hair' = every "
             "identity balding (no hair on the top and front of the head, no long hair). 'image "
             "change' = mean |difference| of 16 world images (pixels in [0, 1]) with and without the switch, to show "
             "it bit. Columns as in bench_decompose (decompose.md). Pictures: {name}_<world>.png (input, reconstruction, "
             "albedo, shaded depth, opacity, then relit and rotated).".format(name=args.name))
    return write_results(args.name, rows, "Which world nuisance compresses the decomposer's yaw", notes=notes,
                         extra={"results": per_variant})


if __name__ == "__main__":
    main()
