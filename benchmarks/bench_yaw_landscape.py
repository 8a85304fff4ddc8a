"""Which yaw does the decomposer's image model prefer for a world face, given the right maps? (issue 13)

    OMP_NUM_THREADS=1 python -m benchmarks.bench_yaw_landscape [--identities 12] [--name yaw_landscape]
    OMP_NUM_THREADS=1 python -m benchmarks.bench_yaw_landscape --decomposer RUN/decompose/decomposer.safetensors --name N
    OMP_NUM_THREADS=1 python -m benchmarks.bench_yaw_landscape --layers --name yaw_landscape_layers
    OMP_NUM_THREADS=1 python -m benchmarks.bench_yaw_landscape --decomposer PATH --distance trunc:0.1 --name N

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
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from benchmarks.common import write_results
from facedis_aug.data import world_geometry as geom
from facedis_aug.data.synthetic import SyntheticWorld
from facedis_aug.decompose.config import DecomposeConfig
from facedis_aug.decompose.model import Decomposer, load_decomposer, renderer_for
from facedis_aug.decompose.renderer import ALPHA_DRAWN, Renderer
from facedis_aug.ops.resize import resize_square

YAWS = [0, 10, 20, 30, 45, 60, 75, 90]
PHIS = torch.arange(-90.0, 90.1, 5.0)
BACKGROUND_DEPTH = 12.9  # world canonical depth beyond this is background (the head sits at 9-10)
BODY_PARTS = (geom.NECK, geom.TORSO)
HAIR_PARTS = (geom.HAIR, geom.LONG_HAIR, geom.BACK_HAIR)
EAR_PARTS = (geom.EAR_L, geom.EAR_R)
# a canonical point counts as seen by a view when it lies at most this far (renderer units) behind the view's
# z-buffer at its projection: two 32 px pixel widths at depth 1 (the bilinear z lookup at a steep silhouette)
SEEN_TOLERANCE = 0.01


def world_faces(size: int, identities: int, seed: int, flat: bool, parts: bool = False) -> dict[str, torch.Tensor]:
    """World images at YAWS for each identity with their canonical maps, in the renderer's units."""
    world = SyntheticWorld(resolution=size, seed=seed, num_identities=max(identities, 2))
    ids = torch.arange(identities).repeat_interleave(len(YAWS))
    p = world.sample_params(torch.arange(len(ids)), pose="fixed", fixed_yaws=YAWS, identities=ids)
    for name in ("pitch", "roll", "tx", "ty", "tz"):
        getattr(p, name).zero_()
    if flat:
        p.ambient.fill_(1.0)
        p.diffuse.fill_(0.0)
    out = world.render(p, with_maps=True, with_view_maps=parts)
    head = (out["depth"] < BACKGROUND_DEPTH).float()[:, None]
    # depth 1 = the pivot (camera distance CAM_DIST); lateral units at depth 1 are tan(fov/2) per half
    # image in the renderer and HALF_VIEW / CAM_DIST in the world, so the relief scales by their ratio
    scale = math.tan(math.radians(DecomposeConfig.fov) / 2) / geom.TAN_HALF_FOV
    depth = torch.where(head > 0, 1 + scale * (out["depth"][:, None] / geom.CAM_DIST - 1), torch.ones_like(head))
    light = torch.zeros(len(ids), 8)
    light[:, :3], light[:, 3:6] = p.ambient, p.diffuse
    # world light (lx, -ly, -1) in camera coordinates (y down): the renderer's (dx, dy) = (lx, -ly)
    light[:, 6], light[:, 7] = p.light_dir[:, 0], -p.light_dir[:, 1]
    alpha = resize_square(head, size)[:, 0]
    faces = {"image": out["image"] * 2 - 1, "albedo": resize_square(out["albedo"] * 2 - 1, size),
             "depth": resize_square(depth, size)[:, 0], "alpha": alpha, "light": light, "yaw": p.yaw}
    if parts:
        # the posed view's part map, and canonical opacities without the parts a frontal depth map turns worst (the
        # neck and torso turn only BODY_YAW_SHARE of the head's yaw; the hair shell's sides and back have no map
        # pixels), from a frontal view of the same faces (pitch, roll, translation already zero: the canonical frame)
        canon_part = world.render(replace(p, yaw=torch.zeros_like(p.yaw)), with_view_maps=True)["view_part"]
        body = resize_square(sum(canon_part == k for k in BODY_PARTS).float()[:, None], size)[:, 0]
        hair = resize_square(sum(canon_part == k for k in HAIR_PARTS).float()[:, None], size)[:, 0]
        faces.update(view_part=out["view_part"], body=body, hair=hair, alpha_no_body=(alpha - body).clamp(min=0),
                     alpha_face=(alpha - body - hair).clamp(min=0))
    return faces


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


def mirror_albedo(image: torch.Tensor, depth: torch.Tensor, alpha: torch.Tensor, light: torch.Tensor,
                  view: torch.Tensor, renderer: Renderer) -> torch.Tensor:
    """The sharpest symmetric face layer there is: the input itself. Each canonical point (depth [B, S, S]
    rotated by view [B, 6], projected) takes the image's colour there with the shading divided out, averaged
    with its mirror point over the ones the view sees (z-buffer of the layer, alpha [B, S, S] deciding which
    triangles draw); points seen on neither side stay grey. Returns [B, 3, S, S] in [-1, 1]."""
    s = image.shape[-1]
    points = renderer.transform(renderer.depth_to_points(depth), view)
    grid = renderer.project(points) / (s - 1) * 2.0 - 1.0
    colour = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    zbuf, covered = renderer.rasterize(points, keep=alpha > ALPHA_DRAWN)
    front = F.grid_sample(torch.cat([zbuf[:, None], covered[:, None].float()], 1), grid, mode="bilinear",
                          padding_mode="border", align_corners=True)
    seen = ((grid.abs() <= 1).all(-1) & (front[:, 1] > 0.5) & (points[..., 2] <= front[:, 0] + SEEN_TOLERANCE)).float()
    # a floor on the shading divided out, so that a dark pixel under a grazing light cannot give an albedo past white
    shading = renderer.shading(renderer.normals(depth), light, view).clamp(min=0.2)
    albedo = ((colour / 2 + 0.5) / shading * 2 - 1).clamp(-1, 1)
    w, w_mirror = seen[:, None], seen.flip(2)[:, None]
    return (w * albedo + w_mirror * albedo.flip(3)) / (w + w_mirror).clamp(min=1.0)


@torch.no_grad()
def layers_rows(size: int, identities: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Which part of the head should the face layer hold? (1) The preferred yaw (as `preferred_yaw`, world
    light) for face-layer opacities and background layers: the world's head with and without its neck/torso
    and hair, and the decomposer's own opacity prior (no residual) at two prior ellipses and two background
    rings, with the world's depth or the layered prior depth, the world's albedo sharp, 3x3-blurred, or the
    input itself mirror-averaged (`mirror_albedo`). (2) Where the L1 of the world's maps (full head opacity)
    comes from, by the world's part under each pixel, rendered at the true yaw against frontal."""
    faces = world_faces(size, identities, seed, flat=False, parts=True)
    renderer = Renderer(size, DecomposeConfig.fov)
    n = faces["image"].shape[0]
    albedos = {"world": faces["albedo"], "blurred 3x3": box_blur(faces["albedo"], 3), "input, mirror-averaged": "input"}

    def layer(axes: tuple[float, float], ring: float) -> Decomposer:
        return Decomposer(DecomposeConfig(image_size=size, shape_prior_axes=axes, background_ring=ring, channels=4,
                                          bottleneck=4, head_channels=4, conf_channels=4, conf_bottleneck=4))

    def best(depth: torch.Tensor, alpha: torch.Tensor, albedo: Any, background: torch.Tensor) -> list[int]:
        losses = []
        for phi in PHIS:
            view = torch.zeros(n, 6)
            view[:, 1] = phi
            alb = albedo
            if isinstance(albedo, str):  # "input": re-read for every view
                alb = mirror_albedo(faces["image"], depth, alpha, faces["light"], view, renderer)
            r = renderer.reconstruct_layered(alb, depth, alpha, faces["light"], view, background, camera_light=True)
            losses.append((r.image - faces["image"]).abs().mean(dim=(1, 2, 3)))
        med = PHIS[torch.stack(losses, 1).argmin(1)].view(identities, len(YAWS)).median(0).values
        return [int(m) for m in med.tolist()]

    now = layer((0.75, 0.95), 1.3)  # the tiny recipe's prior ellipse and the default ring
    zero = torch.zeros(n, size, size)
    variants = [("world head, hair and neck (as before)", "world", faces["alpha"], now),
                ("world head without neck and torso", "world", faces["alpha_no_body"], now),
                ("world face and ears (no hair, neck)", "world", faces["alpha_face"], now)]
    for axes in ((0.75, 0.95), (0.6, 0.8)):
        for ring in (1.3, 1.1):
            m = layer(axes, ring)
            variants.append((f"prior {axes}, ring {ring}", "prior", m.alpha_from_raw(zero), m))
    rows = []
    for name, depth_kind, alpha, m in variants:
        depths = {"world": faces["depth"]}
        if depth_kind == "prior":
            depths["prior"] = m.depth_from_raw(zero)
        background = m.background_of(faces["image"])
        for dname, depth in depths.items():
            for aname, albedo in albedos.items():
                if aname.startswith("input") and dname == "prior":
                    continue
                row = {"face-layer opacity / background": name, "depth": dname, "albedo": aname}
                row.update({f"true {y}": v for y, v in zip(YAWS, best(depth, alpha, albedo, background))})
                rows.append(row)
    # (2) the world's maps at the true yaw and at 0: summed L1 per part, over all the image's pixels
    ss = faces["view_part"].shape[-1] // size
    part = faces["view_part"]
    groups = {"face": [k for k in range(geom.NUM_PRIMS) if k not in BODY_PARTS + HAIR_PARTS + EAR_PARTS],
              "ears": list(EAR_PARTS), "hair": list(HAIR_PARTS), "neck and torso": list(BODY_PARTS)}
    share = {g: F.avg_pool2d(sum(part == k for k in ks).float()[:, None], ss)[:, 0] for g, ks in groups.items()}
    share["background"] = F.avg_pool2d((part < 0).float()[:, None], ss)[:, 0]
    background = now.background_of(faces["image"])
    errs = {}
    for name, yaw in (("true yaw", faces["yaw"]), ("frontal", torch.zeros(n))):
        view = torch.zeros(n, 6)
        view[:, 1] = yaw
        r = renderer.reconstruct_layered(faces["albedo"], faces["depth"], faces["alpha"], faces["light"], view,
                                         background, camera_light=True)
        errs[name] = (r.image - faces["image"]).abs().mean(1)
    regions = []
    for j, y in enumerate(YAWS):
        sel = torch.arange(identities) * len(YAWS) + j
        row = {"true yaw": y}
        for g, w in share.items():
            a, b = (float((errs[k][sel] * w[sel]).sum() / (len(sel) * size * size)) for k in ("true yaw", "frontal"))
            row[f"{g}: at true yaw / frontal"] = f"{a:.4f} / {b:.4f}"
        row["total"] = f"{float(errs['true yaw'][sel].mean()):.4f} / {float(errs['frontal'][sel].mean()):.4f}"
        regions.append(row)
    return rows, regions


Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (render, image) [B, 3, S, S] -> [B]


def l1_distance(render: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return (render - image).abs().mean(dim=(1, 2, 3))


def distance(name: str) -> Distance:
    """A per-image distance by name: 'l1', 'l2', 'trunc:T' (L1 with each pixel's error capped at T), 'cauchy:C'
    (log(1 + |d| / C), a robust loss) or 'rvgg' (the offline random-VGG LPIPS stand-in of the gan metrics)."""
    kind, _, arg = name.partition(":")
    if kind == "l1" and not arg:
        return l1_distance
    if kind == "l2" and not arg:
        return lambda r, x: (r - x).square().mean(dim=(1, 2, 3))
    if kind == "trunc" and arg:
        t = float(arg)
        return lambda r, x: (r - x).abs().clamp(max=t).mean(dim=(1, 2, 3))
    if kind == "cauchy" and arg:
        c = float(arg)
        return lambda r, x: torch.log1p((r - x).abs() / c).mean(dim=(1, 2, 3))
    if kind == "rvgg" and not arg:
        from facedis_aug.gan.feature_nets import RandomVGGDistance

        return RandomVGGDistance()
    raise ValueError(f"unknown distance {name!r}: use l1, l2, trunc:T, cauchy:C or rvgg")


@torch.no_grad()
def model_preferred_yaw(model: Decomposer, faces: dict[str, torch.Tensor], maps: Any,
                        dist: Distance = l1_distance) -> torch.Tensor:
    """[B] the phi in PHIS whose render with the decomposer's own image model (`Decomposer.reconstruct`) and
    the face-layer maps `maps` (a `Decomposition`; its pitch, roll and translation are kept) is closest (by
    `dist`, default L1) to each image."""
    renderer = renderer_for(model.cfg)
    losses = []
    for phi in PHIS:
        view = maps.view.clone()
        view[:, 1] = phi
        r = model.reconstruct(renderer, maps, view=view)
        losses.append(dist(r.image, faces["image"]))
    return PHIS[torch.stack(losses, 1).argmin(1)]


@torch.no_grad()
def truth_rows(model: Decomposer, faces: dict[str, torch.Tensor], d: Any, identities: int) -> list[dict[str, Any]]:
    """Does the objective prefer the truth? Mean L1 per true yaw of the decomposer's own reconstruction, of its own
    maps turned to the true yaw, and of the world's own face layer (albedo, depth, light, and the opacity of the whole
    head or of the face and ears alone) at the true yaw and at the yaw that suits it best, all through the
    decomposer's image model and background layer."""
    renderer = renderer_for(model.cfg)

    def at(maps: Any, yaw: Optional[torch.Tensor]) -> torch.Tensor:
        view = maps.view.clone()
        if yaw is not None:
            view[:, 1] = yaw
        return l1_distance(model.reconstruct(renderer, maps, view=view).image, faces["image"])

    world = replace(d, albedo=faces["albedo"], depth=faces["depth"], alpha=faces["alpha"], light=faces["light"],
                    view=torch.zeros_like(d.view))
    face = replace(world, alpha=faces["alpha_face"])

    def best(maps: Any) -> torch.Tensor:
        return torch.stack([at(maps, torch.full_like(faces["yaw"], float(phi))) for phi in PHIS], 1).min(1).values

    rows = {"own maps, own view": at(d, None), "own maps, true yaw": at(d, faces["yaw"]),
            "world head layer and light, true yaw": at(world, faces["yaw"]),
            "world head layer and light, its best yaw": best(world),
            "world face layer (no hair, neck) and light, true yaw": at(face, faces["yaw"]),
            "world face layer (no hair, neck) and light, its best yaw": best(face)}
    return [{"reconstruction": k, **{f"true {y}": round(float(m), 4) for y, m in
                                       zip(YAWS, v.view(identities, len(YAWS)).mean(0).tolist())}}
            for k, v in rows.items()]


@torch.no_grad()
def decomposer_rows(path: str, identities: int, seed: int, dist: str = "l1"
                    ) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
    """Does a trained decomposer's view head agree with its own maps, and which map holds the yaw back?
    For world faces of known yaw: the view head's yaw, then the preferred yaw (as above) of its own face
    layer and of that layer with one or more maps replaced by the world's own (under the distance `dist`, see
    `distance`); then `truth_rows`."""
    model = load_decomposer(path)
    size = model.cfg.image_size
    faces = world_faces(size, identities, seed, flat=False, parts=True)
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
    f = distance(dist)
    rows += [row(f"preferred, {k}", model_preferred_yaw(model, faces, v, f)) for k, v in variants.items()]
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
             f"mean dy learned {float(d.light[:, 7].mean()):+.2f}, world {float(faces['light'][:, 7].mean()):+.2f}. "
             f"Distance for the preferred yaw: {dist}.")
    return rows, notes, truth_rows(model, faces, d, identities)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=32, help="image side (the tiny recipe's decomposer: 32)")
    ap.add_argument("--identities", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="yaw_landscape")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--decomposer", default=None,
                    help="a trained decomposer.safetensors: score its view head against its own maps instead")
    ap.add_argument("--distance", default="l1",
                    help="with --decomposer: the distance the preferred yaw minimises (l1, l2, trunc:T, cauchy:C, rvgg)")
    ap.add_argument("--layers", action="store_true",
                    help="which part of the head the face layer should hold (opacity, background ring, albedo)")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.layers:
        rows, regions = layers_rows(args.size, args.identities, args.seed)
        common = (f"Median over {args.identities} world identities (seed {args.seed}, {args.size} px, world light; pitch, "
                  "roll and translation zero).")
        write_results(args.name, rows, "Preferred yaw by face-layer opacity, background ring and albedo (world faces)",
                      notes=(f"{common} Columns: the yaw phi (step 5 over [-90, 90]) whose layered render has the lowest "
                             "L1 to the world image, per true yaw. 'world head ...': the world's canonical opacity with "
                             "or without the neck/torso (which turn only 30% of the head's yaw in the world) and the "
                             "hair; background layer at the tiny recipe's prior ellipse (0.75, 0.95) and ring 1.3. "
                             "'prior (a, b), ring r': the decomposer's own opacity prior (no residual) and its background "
                             "layer (the image beyond r times that ellipse, filled in); depth 'prior' is the layered "
                             "convex prior on that ellipse (face_depth 1.0, shape_prior 0.066). Albedo 'input, "
                             "mirror-averaged': the image itself unwarped by the view and depth, shading divided out, "
                             "averaged with its mirror point over the points seen (`mirror_albedo`), i.e. a face layer as "
                             f"sharp as the input. Took {time.time() - t0:.0f} s."), out_dir=args.out_dir)
        write_results(f"{args.name}_regions", regions, "Where the L1 of the world's own maps comes from, by part",
                      notes=(f"{common} The world's albedo, depth and full head opacity (hair and neck included), "
                             "rendered at the true yaw and at frontal by the layered model over the tiny recipe's "
                             "background layer; each cell is the L1 summed over the pixels of that world part (its "
                             "share of each 32 px pixel), divided by all pixels, so the parts add up to the total. Where "
                             "the true yaw scores worse than frontal, that part pulls the learned yaw towards frontal."),
                      out_dir=args.out_dir)
        return
    if args.decomposer:
        rows, notes, truth = decomposer_rows(args.decomposer, args.identities, args.seed, args.distance)
        write_results(args.name, rows, "Preferred yaw of a trained decomposer's own face layer on world faces",
                      notes=f"{notes} Took {time.time() - t0:.0f} s.", out_dir=args.out_dir)
        write_results(f"{args.name}_truth", truth, "Does the objective prefer the truth? L1 of the learned and the true face layer",
                      notes=(f"Decomposer {args.decomposer}; the same world faces as {args.name}.md (mean over {args.identities} "
                             "identities per true yaw). Each cell is the mean L1 (images in [-1, 1]) of a reconstruction by the "
                             "decomposer's image model over its own background layer: its own maps at its own view (what "
                             "training minimises), its own maps turned to the true yaw, and the world's canonical albedo, depth "
                             "(renderer units) and light with the opacity of the world's head (hair and neck included) or of "
                             "its face and ears alone, at the true yaw and at the grid yaw (step 5) where they score best. Where the world's row scores worse than 'own maps, own view', the loss "
                             "prefers the learned solution to the truth, whatever the nets could draw."),
                      out_dir=args.out_dir)
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
