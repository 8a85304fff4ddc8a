"""Stage 3 of the pipeline: learn the directions (paper Sec. 3.3 and 3.5) from the stage-1 generator
and the stage-2 decomposer, and write them for the bundle.

    directions/
      regression.safetensors   checkpoint: the shared samples' regression results (univariate + J*)
      jacobian.safetensors     J* [S, d] (normalised units), per-pixel R^2, the albedo/depth scales
      localized.safetensors    checkpoint: U [S, P], V [d, P] of Eq. 5 (before pruning)
      directions.safetensors   named unit directions [d]: the univariate semantics, local_000, ...
      directions.json          per direction: sigma, R^2, calibration / ||u_p||, cluster, region; for the
                               semantics in edit_calibration (yaw) the calibration read off edits and the reach
      dendrogram.png           Ward clustering of the kept v_p with each leaf's albedo|depth change (Fig. 6)
      components.png           every kept component's albedo|depth perturbation
      strips_univariate.png    manipulation strips of the univariate semantics, s = -4..4 (Fig. 4)
      strips_local.png         manipulation strips of the localized directions, s = -4..4 (Fig. 7)
      strips_yaw.png           six faces along v_yaw, s = -8..8 (the turn the augmentation asks for)
      reach_yaw.png            the yaw asked (calibration) and delivered along v_yaw, the measured reach shaded

One generation pass serves both regressions: 2N latents are drawn, decomposed once, and paired as
(w[i], w[N + i]); the univariate fit uses the first num_pairs pairs and J* the first
jacobian_pairs. An interrupted stage resumes from the two checkpoints when their settings match.

Face region: when the run trains on the synthetic world, its own canonical face masks give 'face'
and a ring around it gives 'around' (`world_region_masks`). Otherwise (no mask exists for generated
faces) the decomposer's canonical frame is a frontal, centred face, so 'face' is the central ellipse |x / 0.5|^2 + |y / 0.65|^2 <= 1 and 'around' the
ring out to |x / 0.8|^2 + |y / 0.95|^2 <= 1 (x, y in [-1, 1] across the 64 x 64 map); the rest
is background. A component's region is where most of its |u_p| mass lies (`cluster.region_of_component`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..ops.io import load_safetensors, save_image_grid, save_safetensors, write_json
from ..ops.linear import projection_std
from .config import DirectionsConfig
from .jacobian import CHANNELS, canonical_stack, component_maps, jacobian_from_samples
from .semantics import SEMANTICS, decompose_latents, sample_w, univariate_from_samples

DIRECTIONS_FORMAT = "facedis_aug.directions"
DIRECTIONS_VERSION = 1
FACE_ELLIPSE = (0.5, 0.65)  # semi-axes (x, y) of the face region, in units of half the map side
AROUND_ELLIPSE = (0.8, 0.95)  # outer semi-axes of the 'around the face' ring
STRIP_SEEDS = (0, 1)  # faces drawn in the stage's manipulation strips
YAW_STRIP_SEEDS = tuple(range(6))  # faces of strips_yaw.png
YAW_STRIP_S = (-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0)  # PoseExtrapolate allows up to 10
MAX_LOCAL_STRIPS = 24  # the strongest kept components get strips (all are in the dendrogram)


def region_masks(size: int) -> tuple[Tensor, Tensor]:
    """(face [H, W] bool, around [H, W] bool) ellipses of the canonical frame (see module doc)."""
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    face = (x / FACE_ELLIPSE[0]) ** 2 + (y / FACE_ELLIPSE[1]) ** 2 <= 1
    around = ((x / AROUND_ELLIPSE[0]) ** 2 + (y / AROUND_ELLIPSE[1]) ** 2 <= 1) & ~face
    return face, around


def world_region_masks(size: int, synthetic_cfg: Any, num_faces: int = 64) -> tuple[Tensor, Tensor, str]:
    """(face, around, source) from the synthetic world's own canonical face masks: 'face' where
    at least half of `num_faces` frontal identities have skin, 'around' a ring of size/8 pixels
    beyond it. Assumes the decomposer's canonical frame frames faces as the world's frontal view
    does (both centre the head), which holds approximately, not exactly."""
    from ..data.synthetic import SyntheticWorld

    world = SyntheticWorld(resolution=64, seed=synthetic_cfg.seed, num_identities=synthetic_cfg.num_identities)
    params = world.sample_params(torch.arange(num_faces), pose="fixed", fixed_yaws=[0.0])
    mask = world.render(params, with_maps=True)["mask"].float().mean(0)[None, None]
    mask = torch.nn.functional.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
    face = mask[0, 0] >= 0.5
    k = 2 * max(1, size // 8) + 1
    grown = torch.nn.functional.max_pool2d(face[None, None].float(), k, stride=1, padding=k // 2)[0, 0] > 0
    return face, grown & ~face, f"synthetic world: mean canonical mask of {num_faces} frontal identities"


def _default_batch_size(device: str) -> int:
    return 256 if str(device).startswith("cuda") else 32


def _progress(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True)


def _settings_match(path: Path, settings: dict[str, Any]) -> dict[str, Tensor] | None:
    """Tensors of a checkpoint written with exactly these settings, else None."""
    if not path.is_file():
        return None
    tensors, meta = load_safetensors(path)
    return tensors if meta.get("settings") == settings else None


def _regression(G: nn.Module, decomposer: nn.Module, cfg: Any, out: Path, device: str, batch_size: int) -> tuple[dict, dict, Tensor]:
    """Univariate directions + J* from one shared pass (or the checkpoint). Returns (univariate, jacobian, w_sigma)."""
    d = int(G.w_dim)
    for key in ("num_pairs", "jacobian_pairs"):
        if getattr(cfg, key) <= d:
            raise ValueError(f"directions.{key} = {getattr(cfg, key)} must exceed the latent size d = {d} (Eq. 3 needs N > d)")
    w_sigma = sample_w(G, cfg.num_samples, cfg.seed + 1, device).cpu()
    settings = {"num_pairs": cfg.num_pairs, "jacobian_pairs": cfg.jacobian_pairs, "num_samples": cfg.num_samples,
                "seed": cfg.seed, "w_dim": d, "mirror_average": bool(cfg.mirror_average)}  # fmt: skip
    ckpt = out / "regression.safetensors"
    cached = _settings_match(ckpt, settings)
    if cached is not None:
        _, meta = load_safetensors(ckpt)
        uni = {"directions": {k[4:]: v for k, v in cached.items() if k.startswith("uni/")}, "info": meta["univariate"]}
        jac = {"J": cached["J"], "r2": cached["J_r2"], "scales": cached["J_scales"], "mean_r2": meta["jacobian_mean_r2"]}
        return uni, jac, w_sigma
    n = max(cfg.num_pairs, cfg.jacobian_pairs)
    w = sample_w(G, 2 * n, cfg.seed, device)
    bar = _progress(2 * n, "directions: generate + decompose")
    try:
        dec = decompose_latents(G, decomposer, w, batch_size, keep_maps=True, progress=bar,
                                mirror_average=cfg.mirror_average)
    finally:
        bar.close()
    w = w.cpu()

    def pairs(x: Tensor, k: int) -> Tensor:  # the first k pairs (x[i], x[n + i])
        return torch.cat([x[:k], x[n : n + k]])

    uni = univariate_from_samples(pairs(w, cfg.num_pairs), pairs(dec.semantics, cfg.num_pairs), w_sigma)
    maps = canonical_stack(dec.albedo, dec.depth)
    del dec
    jac = jacobian_from_samples(pairs(w, cfg.jacobian_pairs), pairs(maps, cfg.jacobian_pairs))
    tensors = {"J": jac["J"], "J_r2": jac["r2"], "J_scales": jac["scales"], **{f"uni/{k}": v for k, v in uni["directions"].items()}}
    save_safetensors(ckpt, tensors, {"settings": settings, "univariate": uni["info"], "jacobian_mean_r2": jac["mean_r2"]})
    save_safetensors(out / "jacobian.safetensors", {"J": jac["J"], "r2": jac["r2"], "scales": jac["scales"]},
                     {"layout": "rows = (albedo_r, albedo_g, albedo_b, depth) x H x W; columns = w", "channels": list(CHANNELS),
                      "scales": "J rows = gradients of maps / scales: albedo in its own units (scale 1), depth divided by depth_std / albedo_std",
                      "pairs": cfg.jacobian_pairs, "mean_r2": jac["mean_r2"]})  # fmt: skip
    return uni, jac, w_sigma


def _localized(J: Tensor, cfg: Any, out: Path, device: str) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Eq. 5 (or its checkpoint): (U [S, P], V [d, P], summary)."""
    from .localized import DEFAULT_ITERATIONS, localized_directions, objective

    iterations = cfg.iterations if cfg.iterations is not None else DEFAULT_ITERATIONS[cfg.solver]
    settings = {"P": cfg.P, "alpha": cfg.alpha, "beta": cfg.beta, "solver": cfg.solver, "iterations": iterations,
                "lr": cfg.lr, "tol": cfg.tol, "seed": cfg.seed, "J_shape": list(J.shape), "J_sum": float(J.double().sum())}  # fmt: skip
    ckpt = out / "localized.safetensors"
    cached = _settings_match(ckpt, settings)
    if cached is not None:
        _, meta = load_safetensors(ckpt)
        return cached["U"], cached["V"], meta["summary"]
    from tqdm.auto import tqdm

    bar = tqdm(total=iterations, desc=f"directions: Eq. 5 ({cfg.solver})", unit="it", leave=False, dynamic_ncols=True)
    last = {"step": 0, "objective": math.nan}

    def callback(step: int, obj: float) -> None:
        bar.update(max(0, step - last["step"]))
        last.update(step=step, objective=obj)

    import time

    t0 = time.time()
    try:
        U, V = localized_directions(J.to(device), cfg.P, cfg.alpha, cfg.beta, solver=cfg.solver, iterations=iterations,
                                    lr=cfg.lr, seed=cfg.seed, tol=cfg.tol, callback=callback)  # fmt: skip
    finally:
        bar.close()
    U, V = U.float().cpu(), V.float().cpu()
    summary = {"objective": objective(J, U, V, cfg.alpha, cfg.beta), "seconds": time.time() - t0,
               "iterations_run": last["step"], **{k: settings[k] for k in ("P", "alpha", "beta", "solver", "iterations")}}  # fmt: skip
    save_safetensors(ckpt, {"U": U, "V": V}, {"settings": settings, "summary": summary})
    return U, V, summary


def compute_directions(
    G: nn.Module,
    decomposer: nn.Module,
    cfg: Any,
    out_dir: str | Path,
    device: str = "cpu",
    batch_size: int | None = None,
    pictures: bool = True,
    say: Callable[[str], None] = print,
    regions: tuple[Tensor, Tensor, str] | None = None,
) -> dict[str, str]:
    """The whole stage on loaded models: writes the files of the module doc into out_dir and
    returns {output: file name}. cfg is a DirectionsConfig. `regions` = (face, around, description)
    masks of the canonical frame for the face/around/background split; default: the ellipses."""
    from .cluster import cluster_directions, region_of_component, region_shares
    from .localized import prune

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    batch_size = batch_size or int(getattr(cfg, "batch_size", 0) or _default_batch_size(device))
    G.eval()
    decomposer.eval()

    uni, jac, w_sigma = _regression(G, decomposer, cfg, out, device, batch_size)
    valid = [k for k in SEMANTICS if uni["info"][k].get("valid")]
    say(f"[directions] univariate: {len(valid)}/{len(SEMANTICS)} semantics with a direction; R^2 "
        + ", ".join(f"{k} {uni['info'][k]['r2']:.2f}" for k in valid if uni["info"][k]["r2"] is not None))  # fmt: skip
    say(f"[directions] J* {tuple(jac['J'].shape)}, mean per-pixel R^2 {jac['mean_r2']:.3f}")

    U, V, lsummary = _localized(jac["J"], cfg, out, device)
    keep = prune(U, V, cfg.prune_threshold)
    kept_idx = torch.nonzero(keep).flatten().tolist()
    # strongest first, so local_000 is the component with the largest ||u_p||
    u_norms = torch.linalg.vector_norm(U, dim=0)
    kept_idx.sort(key=lambda p: -float(u_norms[p]))
    size = int(round(math.sqrt(U.shape[0] // 4)))
    if regions is None:
        face, around = region_masks(size)
        region_source = {"face_ellipse": FACE_ELLIPSE, "around_ellipse": AROUND_ELLIPSE}
    else:
        face, around, description = regions
        region_source = {"masks": description}

    directions: dict[str, Tensor] = {k: v for k, v in uni["directions"].items()}
    entries: dict[str, dict[str, Any]] = {k: {"kind": "univariate", **uni["info"][k]} for k in SEMANTICS}
    labels, Z = cluster_directions(V[:, kept_idx], num_clusters=cfg.num_clusters) if kept_idx else ([], None)
    local_names = []
    for rank, p in enumerate(kept_idx):
        name = f"local_{rank:03d}"
        local_names.append(name)
        v = V[:, p] / V[:, p].norm()
        shares = region_shares(U[:, p], face, around)
        directions[name] = v.float()
        entries[name] = {"kind": "local", "component": p, "u_norm": float(u_norms[p]), "sigma": projection_std(w_sigma, v),
                         "cluster": int(labels[rank]), "region": region_of_component(U[:, p], face, around),
                         "region_shares": shares}  # fmt: skip
    clusters: dict[str, dict[str, int]] = {}  # cluster -> its make-up by region (paper Fig. 6)
    for n in local_names:
        c = clusters.setdefault(str(entries[n]["cluster"]), {"size": 0, "face": 0, "around": 0, "background": 0})
        c["size"] += 1
        c[entries[n]["region"]] += 1
    outside = sum(1 for n in local_names if entries[n]["region"] != "face")
    background = sum(1 for n in local_names if entries[n]["region"] == "background")
    say(f"[directions] localized: {len(kept_idx)}/{cfg.P} components kept (||u_p|| >= {cfg.prune_threshold}), "
        f"{outside} mostly outside the face ({background} background)")  # fmt: skip

    info = {
        "format": DIRECTIONS_FORMAT,
        "format_version": DIRECTIONS_VERSION,
        "w_dim": int(G.w_dim),
        "semantics": list(SEMANTICS),
        # how the decomposer read the faces; the bundle's view head reads real images the same way
        "reading": "mirror-average" if cfg.mirror_average else "plain",
        "directions": entries,
        "localized": {**lsummary, "kept": len(kept_idx), "prune_threshold": cfg.prune_threshold,
                      "outside_face": outside, "background": background, "num_clusters": cfg.num_clusters, "clusters": clusters,
                      "face_region": {**region_source, "frame": "canonical map, x and y in [-1, 1]"}},  # fmt: skip
        "jacobian": {"pairs": cfg.jacobian_pairs, "mean_r2": jac["mean_r2"], "channels": list(CHANNELS),
                     "scales": {"albedo": float(jac["scales"][0]), "depth": float(jac["scales"][1])}},  # fmt: skip
        "univariate": {"pairs": cfg.num_pairs, "sigma_samples": cfg.num_samples, "seed": cfg.seed},
    }
    for name in cfg.edit_calibration:
        _calibrate_by_edits(G, decomposer, name, directions, entries, cfg, device, batch_size, say)
    save_safetensors(out / "directions.safetensors", directions, {"format": DIRECTIONS_FORMAT, "names": list(directions)})
    write_json(out / "directions.json", info)
    outputs = {"directions": "directions.safetensors", "info": "directions.json", "jacobian": "jacobian.safetensors"}
    if pictures:
        outputs.update(_stage_pictures(G, U, kept_idx, local_names, Z, directions, entries, cfg, out, size))
    return outputs


def _short_unit(entry: dict[str, Any]) -> str:
    return "deg" if entry.get("unit") == "degrees" else "units"


def _calibrate_by_edits(G: nn.Module, decomposer: nn.Module, name: str, directions: dict[str, Tensor],
                        entries: dict[str, dict[str, Any]], cfg: Any, device: str, batch_size: int,
                        say: Callable[[str], None]) -> None:
    """Replace Eq. 3's calibration of `name` by the one read off edits (directions.reach), keeping the
    former under 'regression_calibration', and add the measured reach."""
    from .reach import calibrate_by_edits

    if name not in directions:
        say(f"[directions] {name}: no direction, so no edit calibration")
        return
    e = entries[name]
    w_fit = sample_w(G, cfg.edit_faces, cfg.seed + 2, device)
    w_check = sample_w(G, cfg.edit_faces, cfg.seed + 3, device)
    cal = calibrate_by_edits(G, decomposer, directions[name].to(device), e["sigma"], name, w_fit, w_check, batch_size=batch_size,
                             mirror_average=cfg.mirror_average, curve=cfg.edit_curve, zero=cfg.edit_zero)
    e["regression_calibration"] = {"intercept": e["intercept"], "units_per_sigma": e["units_per_sigma"]}
    e.update(calibration="edits", intercept=cal["intercept"], units_per_sigma=cal["units_per_sigma"], reach=cal["reach"],
             edit_check={k: cal[k] for k in ("reach_tol", "reach_floor", "fit_halfwidth", "faces", "curve")})
    for key in ("knots", "zero"):
        if cal[key] is not None:
            e[key] = cal[key]
    unit = _short_unit(e)
    shape = (f"a curve over {cal['knots']['value'][0]:+.1f}..{cal['knots']['value'][-1]:+.1f} {unit}, "
             if cal["knots"] is not None else "")
    say(f"[directions] {name} read off edits: {shape}{cal['units_per_sigma']:+.2f} {unit} per sigma near the mean (Eq. 3 over samples: "
        f"{e['regression_calibration']['units_per_sigma']:+.2f}); delivered within {cal['reach_tol']:.0%} over "
        f"[{cal['reach'][0]:+.1f}, {cal['reach'][1]:+.1f}] {unit}")


def strip_latents(G: nn.Module, seeds: tuple[int, ...] = STRIP_SEEDS) -> Tensor:
    """w [len(seeds), d] of the stage's strips: one z per seed (`ops.seeds.seeds_to_z`), so row k
    shows the face `facedis-aug draw --seed seeds[k]` and `Bundle.sample_w(1, seed)` give."""
    from ..ops.seeds import seeds_to_z

    device = next((p.device for p in G.parameters()), torch.device("cpu"))
    with torch.no_grad():
        return G.mapping(seeds_to_z(seeds, int(G.z_dim)).to(device)).float().cpu()


def _stage_pictures(G, U, kept_idx, local_names, Z, directions, entries, cfg, out: Path, size: int) -> dict[str, str]:
    """Strips (Fig. 4, Fig. 7), the component maps and the dendrogram (Fig. 6) into out."""
    from .cluster import component_thumbnail, plot_dendrogram
    from .pictures import signed_map_images, strips_png

    outputs: dict[str, str] = {}
    w = strip_latents(G)
    uni = {k: directions[k] for k in SEMANTICS if k in directions}
    if uni:
        strips_png(G, w, uni, {k: entries[k]["sigma"] for k in uni}, out / "strips_univariate.png")
        outputs["strips_univariate"] = "strips_univariate.png"
    if "yaw" in directions:  # the turn itself, over the range the augmentation uses
        strips_png(G, strip_latents(G, YAW_STRIP_SEEDS), {"yaw": directions["yaw"]}, {"yaw": entries["yaw"]["sigma"]},
                   out / "strips_yaw.png", s_values=YAW_STRIP_S)
        outputs["strips_yaw"] = "strips_yaw.png"
    for name, e in entries.items():  # the calibration read off edits, and the reach, as a picture
        if e.get("calibration") == "edits":
            from .reach import reach_png

            reach_png(name, e, out / f"reach_{name}.png", _short_unit(e))
            outputs[f"reach_{name}"] = f"reach_{name}.png"
    if kept_idx:
        maps = component_maps(U[:, kept_idx], size)
        save_image_grid(signed_map_images(maps), out / "components.png", nrow=8)
        outputs["components"] = "components.png"
        show = local_names[:MAX_LOCAL_STRIPS]
        strips_png(G, w[:1], {k: directions[k] for k in show}, {k: entries[k]["sigma"] for k in show}, out / "strips_local.png")
        outputs["strips_local"] = "strips_local.png"
        thumbs = [component_thumbnail(U[:, p], size, size) for p in kept_idx]
        plot_dendrogram(Z, thumbs, out / "dendrogram.png", labels=local_names,
                        num_clusters=cfg.num_clusters)  # fmt: skip
        outputs["dendrogram"] = "dendrogram.png"
    return outputs


def run_directions_stage(generator_path: str | os.PathLike, decomposer_path: str | os.PathLike, cfg: DirectionsConfig,
                         out_dir: str | os.PathLike, *, device: str = "cpu", world: Any = None) -> dict[str, str]:
    """The directions stage from files: load the generator and decomposer, run `compute_directions`
    into out_dir. world: the synthetic world's settings when the training data is that world (its
    region masks name the localized directions' parts), else None."""
    from ..decompose.model import load_decomposer
    from ..gan.networks import load_generator

    device = str(device)
    G = load_generator(generator_path, device=device)
    dec = load_decomposer(decomposer_path, device=device)
    regions = world_region_masks(dec.cfg.image_size, world) if world is not None else None
    return compute_directions(G, dec, cfg, out_dir, device=device, regions=regions)
