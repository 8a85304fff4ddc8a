"""Which yaw does the decomposer's image model prefer for a world face, given the right maps? (issue 13)

    OMP_NUM_THREADS=1 python -m benchmarks.bench_yaw_landscape [--identities 12] [--name yaw_landscape]
    OMP_NUM_THREADS=1 python -m benchmarks.bench_yaw_landscape --decomposer RUN/decompose/decomposer.safetensors --name N

No training: for world faces of known yaw (pitch, roll and translation zeroed), the layered image model
(`Renderer.reconstruct_layered`, the background layer made from the image as the decomposer makes it)
is given a face layer built from the world's own canonical maps, rendered at every yaw phi in
[-90, 90] (step 5), and the L1 to the world image is recorded. The phi with the lowest loss is the
yaw that a decomposer with those maps would be pulled to; the table gives its median over identities
for each true yaw. A model whose loss is lowest away from the truth cannot learn the truth, however
long it trains.

Face-layer variants (the opacity is always the world's head, hair included):
    world depth        the world's canonical depth in the renderer's units: depth 1 is the head's pivot
                       and the relief is scaled by tan(fov/2) / the world's half-view (lateral and depth
                       units then agree)
    prior f / c        the layered model's convex prior alone (outline depth f, relief c over the
                       prior ellipse; the net may add +-depth_residual)
albedo: the world's own, or box-blurred (k x k pixels) as a learned albedo that has not yet drawn the
eyes and mouth; light: flat (ambient 1, no diffuse: geometry and texture only) or the world image's
own light (Blinn-Phong in the world; Lambertian in the model).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F


from benchmarks.common import write_results
from facedis_aug.data import world_geometry as geom
from facedis_aug.data.synthetic import SyntheticWorld
from facedis_aug.decompose.config import DecomposeConfig
from facedis_aug.decompose.model import Decomposer, load_decomposer, renderer_for
from facedis_aug.decompose.renderer import Renderer
from facedis_aug.ops.resize import resize_square

YAWS = [0, 10, 20, 30, 45, 60, 75, 90]
PHIS = torch.arange(-90.0, 90.1, 5.0)
BACKGROUND_DEPTH = 12.9  # world canonical depth beyond this is background (the head sits at 9-10)


def world_faces(size: int, identities: int, seed: int, flat: bool) -> dict[str, torch.Tensor]:
    """World images at YAWS for each identity with their canonical maps, in the renderer's units."""
    world = SyntheticWorld(resolution=size, seed=seed, num_identities=max(identities, 2))
    ids = torch.arange(identities).repeat_interleave(len(YAWS))
    p = world.sample_params(torch.arange(len(ids)), pose="fixed", fixed_yaws=YAWS, identities=ids)
    for name in ("pitch", "roll", "tx", "ty", "tz"):
        getattr(p, name).zero_()
    if flat:
        p.ambient.fill_(1.0)
        p.diffuse.fill_(0.0)
    out = world.render(p, with_maps=True)
    head = (out["depth"] < BACKGROUND_DEPTH).float()[:, None]
    # depth 1 = the pivot (camera distance CAM_DIST); lateral units at depth 1 are tan(fov/2) per half
    # image in the renderer and HALF_VIEW / CAM_DIST in the world, so the relief scales by their ratio
    scale = math.tan(math.radians(DecomposeConfig.fov) / 2) / geom.TAN_HALF_FOV
    depth = torch.where(head > 0, 1 + scale * (out["depth"][:, None] / geom.CAM_DIST - 1), torch.ones_like(head))
    light = torch.zeros(len(ids), 8)
    light[:, :3], light[:, 3:6] = p.ambient, p.diffuse
    # world light (lx, -ly, -1) in camera coordinates (y down): the renderer's (dx, dy) = (lx, -ly)
    light[:, 6], light[:, 7] = p.light_dir[:, 0], -p.light_dir[:, 1]
    return {"image": out["image"] * 2 - 1, "albedo": resize_square(out["albedo"] * 2 - 1, size),
            "depth": resize_square(depth, size)[:, 0], "alpha": resize_square(head, size)[:, 0],
            "light": light, "yaw": p.yaw}


def box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    return x if k <= 1 else F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="replicate"), k, stride=1)


def prior_depth(cfg: DecomposeConfig, face_depth: float, relief: float) -> torch.Tensor:
    return face_depth - relief * Decomposer._cap(cfg)


@torch.no_grad()
def preferred_yaw(faces: dict[str, torch.Tensor], depth: torch.Tensor, albedo: torch.Tensor,
                  background: torch.Tensor, renderer: Renderer) -> torch.Tensor:
    """[B] the phi in PHIS whose render is closest (L1) to each image."""
    b = faces["image"].shape[0]
    depth = depth.expand(b, -1, -1)
    losses = []
    for phi in PHIS:
        view = torch.zeros(b, 6)
        view[:, 1] = phi
        r = renderer.reconstruct_layered(albedo, depth, faces["alpha"], faces["light"], view, background, camera_light=True)
        losses.append((r.image - faces["image"]).abs().mean(dim=(1, 2, 3)))
    return PHIS[torch.stack(losses, 1).argmin(1)]


@torch.no_grad()
def model_preferred_yaw(model: Decomposer, faces: dict[str, torch.Tensor], maps: Any) -> torch.Tensor:
    """[B] the phi in PHIS whose render with the decomposer's own image model (`Decomposer.reconstruct`) and
    the face-layer maps `maps` (a `Decomposition`; its pitch, roll and translation are kept) is closest (L1)
    to each image."""
    renderer = renderer_for(model.cfg)
    losses = []
    for phi in PHIS:
        view = maps.view.clone()
        view[:, 1] = phi
        r = model.reconstruct(renderer, maps, view=view)
        losses.append((r.image - faces["image"]).abs().mean(dim=(1, 2, 3)))
    return PHIS[torch.stack(losses, 1).argmin(1)]


@torch.no_grad()
def decomposer_rows(path: str, identities: int, seed: int) -> tuple[list[dict[str, Any]], str]:
    """Does a trained decomposer's view head agree with its own maps, and which map holds the yaw back?
    For world faces of known yaw: the view head's yaw, then the preferred yaw (as above) of its own face
    layer and of that layer with one or more maps replaced by the world's own."""
    model = load_decomposer(path)
    size = model.cfg.image_size
    faces = world_faces(size, identities, seed, flat=False)
    d = model(faces["image"])
    variants = {
        "its own maps": d,
        "own, world albedo": replace(d, albedo=faces["albedo"]),
        "own, world depth": replace(d, depth=faces["depth"]),
        "own, world albedo + depth": replace(d, albedo=faces["albedo"], depth=faces["depth"]),
        "own view, world albedo, depth, opacity, light": replace(d, albedo=faces["albedo"], depth=faces["depth"],
                                                                 alpha=faces["alpha"], light=faces["light"]),
        "world albedo, depth, opacity, light, view": replace(d, albedo=faces["albedo"], depth=faces["depth"],
                                                             alpha=faces["alpha"], light=faces["light"],
                                                             view=torch.zeros_like(d.view)),
    }
    def row(name: str, yaw: torch.Tensor) -> dict[str, Any]:
        med = yaw.view(identities, len(YAWS)).median(0).values
        return {"decomposer yaw": name, **{f"true {y}": int(round(m)) for y, m in zip(YAWS, med.tolist())}}

    head = faces["alpha"] > 0.5
    spread = {k: float(v.std(0)[head.all(0)].mean()) for k, v in (("learned", d.depth), ("world", faces["depth"]))}
    def relief(depth: torch.Tensor) -> tuple[float, float, float]:
        """(mean |horizontal depth step| on the head, mean height in front of the pivot on the head, the
        same face-by-face deviation from the faces' mean depth): the shape's scale, then its per-face detail."""
        both = head[:, :, 1:] & head[:, :, :-1]
        step = float(((depth[:, :, 1:] - depth[:, :, :-1]).abs() * both).sum() / both.sum())
        front = float(((1 - depth) * head).sum() / head.sum())
        dev = float(((depth - depth.mean(0, keepdim=True)).abs() * head).sum() / head.sum())
        return step, front, dev

    shape = {k: relief(v) for k, v in (("learned", d.depth), ("world", faces["depth"]))}
    corr = [float(torch.corrcoef(torch.stack([d.light[:, i], faces["light"][:, i]]))[0, 1]) for i in (6, 7)]
    rows = [row("its view head", d.view[:, 1])]
    rows += [row(f"preferred, {k}", model_preferred_yaw(model, faces, v)) for k, v in variants.items()]
    notes = (f"Decomposer {path} ({size} px). Median over {identities} world identities (seed {seed}) per true yaw "
             "(columns; pitch, roll and translation zero in the images, world light): first the view head's "
             "answer, then the yaw phi (grid step 5 over [-90, 90]; the head's pitch and roll kept) whose render "
             "by the decomposer's own image model has the lowest L1 to the image, with its own face layer and "
             "with the named maps replaced by the world's (albedo, depth in the renderer's units, head opacity, "
             "light; 'view': the true pitch, roll and translation, all zero, instead of the head's). A view head "
             "that matches 'its own maps' is as good as those maps let it be; the rows below say which map "
             "holds the yaw back. Depth spread (std over these faces, mean over the pixels "
             f"that are head in every face): learned {spread['learned']:.4f}, world {spread['world']:.4f}. Depth scale and "
             "detail on the head (opacity > 0.5): mean |horizontal depth step| learned "
             f"{shape['learned'][0]:.5f}, world {shape['world'][0]:.5f}; mean height in front of the pivot learned "
             f"{shape['learned'][1]:.4f}, world {shape['world'][1]:.4f}; mean |depth - the faces' mean depth| learned "
             f"{shape['learned'][2]:.4f}, world {shape['world'][2]:.4f}. Light "
             f"direction (dx, dy; dy > 0 from below) against the world's: correlation {corr[0]:.2f}, {corr[1]:.2f}; "
             f"mean dy learned {float(d.light[:, 7].mean()):+.2f}, world {float(faces['light'][:, 7].mean()):+.2f}.")
    return rows, notes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=32, help="image side (the tiny recipe's decomposer: 32)")
    ap.add_argument("--identities", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="yaw_landscape")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--decomposer", default=None,
                    help="a trained decomposer.safetensors: score its view head against its own maps instead")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.decomposer:
        rows, notes = decomposer_rows(args.decomposer, args.identities, args.seed)
        write_results(args.name, rows, "Preferred yaw of a trained decomposer's own face layer on world faces",
                      notes=f"{notes} Took {time.time() - t0:.0f} s.", out_dir=args.out_dir)
        return
    # the tiny recipe's prior ellipse (the world's heads with their hair); the nets are never run (narrow)
    cfg = DecomposeConfig(image_size=args.size, shape_prior_axes=(0.75, 0.95), channels=4, bottleneck=4,
                          head_channels=4, conf_channels=4, conf_bottleneck=4)
    renderer = Renderer(args.size, cfg.fov)
    model = Decomposer(cfg)  # for its background layer (`background_of`)
    rows = []
    for light in ("flat", "world"):
        faces = world_faces(args.size, args.identities, args.seed, flat=light == "flat")
        background = model.background_of(faces["image"])
        geometries = {"world depth": faces["depth"],
                      "prior f 0.97 / c 0.05 (before)": prior_depth(cfg, 0.97, 0.05),
                      "prior f 1.0 / c 0.066 (now)": prior_depth(cfg, 1.0, 0.066)}
        for gname, depth in geometries.items():
            for k in (1, 3, 5):
                best = preferred_yaw(faces, depth, box_blur(faces["albedo"], k), background, renderer)
                med = best.view(args.identities, len(YAWS)).median(0).values
                row = {"face layer": gname, "albedo": "world" if k == 1 else f"blurred {k}x{k}", "light": light}
                row.update({f"true {y}": int(m) for y, m in zip(YAWS, med.tolist())})
                rows.append(row)
    notes = (f"Median over {args.identities} world identities (seed {args.seed}, {args.size} px) of the yaw phi "
             f"(grid step 5 degrees over [-90, 90]) whose layered render has the lowest L1 to the world image, "
             f"per true yaw (columns). Pitch, roll and translation are zero in these images. The opacity is the "
             f"world's head (hair included); the background layer is the decomposer's (`background_of`). "
             f"Prior ellipse (0.75, 0.95), the tiny recipe's. Took {time.time() - t0:.0f} s.")
    write_results(args.name, rows, "Preferred yaw of the layered image model on world faces, given the maps",
                  notes=notes, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
