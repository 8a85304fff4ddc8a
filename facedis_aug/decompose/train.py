"""Stage 2 training: the decomposer on generated faces, with mutual reconstruction (Sec. 3.2) and the
yaw augmentation of Sec. 3.4.

    path = train_decomposer(cfg, sampler, run_dir, seed=0, generator=G)

`sampler(step) -> (images [B, 3, S, S] in [-1, 1], w [B, d] or None)` gives the batch of a step (the
same step must give the same batch, so that a resumed run repeats an uninterrupted one); `generator(w
[B, d]) -> images [B, 3, S', S'] in [-1, 1]` renders latents for the augmentation. Images of another
size are resized to S (antialiased bilinear).

Run folder: stats.jsonl, snapshots/*.png, checkpoint.safetensors (resumable) and, at the end,
decomposer.safetensors.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from tqdm import tqdm

from ..ops import (JsonlLogger, load_safetensors, load_training_state, save_image_grid, save_safetensors,
                   training_state_tensors, write_json)
from ..ops.dataconf import to_dict
from ..ops.resize import resize_square
from .config import DecomposeConfig
from .losses import PerceptualLoss, StepOutput, decomposition_loss
from .model import Decomposer, load_decomposer, renderer_for, save_decomposer
from .renderer import Renderer
from .sources import Sampler

Generator = Callable[[Tensor], Tensor]

SWEEP_YAWS = (-90.0, -60.0, -30.0, 0.0, 30.0, 60.0, 90.0)


class YawAugmentation:
    """Sec. 3.4 state: recent (w, predicted yaw) pairs, the moving-average direction v_yaw (unit) and
    sigma_w, the std of w.v over the buffer."""

    def __init__(self, cfg: DecomposeConfig, dim: int, device: torch.device | str = "cpu"):
        if cfg.aug_buffer <= dim:
            raise ValueError(f"decompose.aug_buffer ({cfg.aug_buffer}) must exceed dim(w) = {dim}: least squares needs N > d")
        self.cfg, self.dim = cfg, dim
        self.w = torch.zeros(0, dim, device=device)
        self.yaw = torch.zeros(0, device=device)
        self.v: Optional[Tensor] = None
        self.sigma = 0.0
        self.updates = 0
        # the step at or after which v_yaw is next refreshed: every aug_every steps of the run, also when
        # only some steps carry w (decompose.source = mixed: odd steps only)
        self.next_update = 0

    def record(self, w: Tensor, yaw: Tensor) -> None:
        """Keep the newest `aug_buffer` pairs; w [B, d], yaw [B] degrees."""
        self.w = torch.cat([self.w, w.detach().float()])[-self.cfg.aug_buffer:]
        self.yaw = torch.cat([self.yaw, yaw.detach().float()])[-self.cfg.aug_buffer:]

    def update(self) -> bool:
        """Least-squares fit of yaw on w (pairs = differences from the buffer mean, Eq. 2-3), blended into
        v with momentum. Returns False (and changes nothing) while the buffer holds <= d pairs."""
        from ..ops.linear import fit_directions

        if self.w.shape[0] <= self.dim:
            return False
        dw = self.w - self.w.mean(0, keepdim=True)
        dy = (self.yaw - self.yaw.mean())[:, None]
        g = fit_directions(dw, dy)[0]
        v_new = g / g.norm().clamp(min=1e-12)  # points towards increasing yaw
        if self.v is None:
            v = v_new
        else:
            m = self.cfg.aug_momentum
            v = m * self.v + (1.0 - m) * v_new
        self.v = v / v.norm()
        self.sigma = float((self.w @ self.v).std())
        self.updates += 1
        return True

    def edit(self, w: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Eq. 4 with s ~ U[-aug_range, aug_range] per sample: (w' [B, d], s [B])."""
        from ..ops.linear import edit_latent

        assert self.v is not None, "edit() before the first v_yaw estimate"
        s = (torch.rand(w.shape[0], generator=gen) * 2.0 - 1.0) * self.cfg.aug_range
        s = s.to(w.device, w.dtype)
        return edit_latent(w, self.v.to(w.dtype), s, self.sigma), s

    def state(self) -> tuple[dict[str, Tensor], dict[str, object]]:
        tensors = {"aug.w": self.w, "aug.yaw": self.yaw}
        if self.v is not None:
            tensors["aug.v"] = self.v
        return tensors, {"dim": self.dim, "sigma": self.sigma, "updates": self.updates, "next_update": self.next_update}

    @classmethod
    def from_state(cls, cfg: DecomposeConfig, tensors: dict[str, Tensor], meta: dict, device, step: int = 0) -> "YawAugmentation":
        aug = cls(cfg, int(meta["dim"]), device)
        # checkpoints from before next_update refreshed at every multiple of aug_every
        aug.next_update = int(meta.get("next_update", -(-step // cfg.aug_every) * cfg.aug_every))
        aug.w, aug.yaw = tensors["aug.w"].to(device), tensors["aug.yaw"].to(device)
        aug.v = tensors["aug.v"].to(device) if "aug.v" in tensors else None
        aug.sigma, aug.updates = float(meta["sigma"]), int(meta["updates"])
        return aug


def _fit_size(images: Tensor, size: int, what: str) -> Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{what} must return images [B, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
    return resize_square(images, size)  # the resize the bundle's view head uses at serve time


def _save_checkpoint(path: Path, step: int, cfg: DecomposeConfig, model: Decomposer, opt: torch.optim.Optimizer,
                     aug: Optional[YawAugmentation]) -> None:
    tensors, meta = training_state_tensors(model, opt)
    meta = {"step": step, "config": to_dict(cfg), **meta}
    if aug is not None:
        t, m = aug.state()
        tensors.update(t)
        meta["aug"] = m
    save_safetensors(path, tensors, metadata=meta)


def _load_checkpoint(state: tuple[dict[str, Tensor], dict[str, Any]], cfg: DecomposeConfig, model: Decomposer,
                     opt: torch.optim.Optimizer, device) -> tuple[int, Optional[YawAugmentation]]:
    """Restore model, optimiser and yaw augmentation from a checkpoint's (tensors, meta); returns (step, aug)."""
    tensors, meta = state
    load_training_state(tensors, meta, model, opt, device)
    aug = YawAugmentation.from_state(cfg, tensors, meta["aug"], device, int(meta["step"])) if "aug" in meta else None
    return int(meta["step"]), aug


@torch.no_grad()
def _snapshot(path: Path, model: Decomposer, renderer: Renderer, images: Tensor, out: StepOutput) -> None:
    """Rows: one face each. Columns: input, reconstruction, albedo, shaded depth, (layered: opacity and
    background layer), relit from the left, then the face at yaws SWEEP_YAWS (layered: over its still
    background; single mesh: on black)."""
    n = min(8, images.shape[0])
    full = out.decomposition
    d = type(full)(**{k: (v[:n] if isinstance(v, Tensor) else v) for k, v in vars(full).items()})
    bg = -torch.ones_like(images[:n])
    light = torch.tensor([[0.3] * 3 + [0.7] * 3 + [-0.5, -0.5]], device=images.device).expand(n, 8)
    shaded = renderer.shading(renderer.normals(d.depth), light) * 2 - 1
    layered = d.alpha is not None

    def shown(r):
        return r.image if layered else torch.where(r.mask[:, None], r.image, bg)

    cols = [images[:n], shown(model.reconstruct(renderer, d)).clamp(-1, 1), d.albedo, shaded.clamp(-1, 1)]
    if layered:
        cols += [d.alpha[:, None].expand(-1, 3, -1, -1) * 2 - 1, d.background]
    relit = d.light.clone()
    relit[:, 6] = -1.0
    cols.append(shown(model.reconstruct(renderer, d, light=relit)).clamp(-1, 1))
    for yaw in SWEEP_YAWS:
        view = d.view.clone() if layered else torch.zeros(n, 6, device=images.device)
        view[:, 1] = yaw
        cols.append(shown(model.reconstruct(renderer, d, view=view)).clamp(-1, 1))
    grid = torch.stack(cols, 1).flatten(0, 1).float().cpu()
    save_image_grid(grid, path, nrow=len(cols))


# start k of decompose.restarts trains with seed + k * RESTART_SEED on the sampler's steps shifted by k * RESTART_STEP;
# every start is scored on the batches at steps RESTART_SCORE.. (beyond any run's own steps and shifts of a few starts)
RESTART_SEED, RESTART_STEP, RESTART_SCORE, SCORE_BATCHES = 7919, 50_000_000, 49_000_000, 8


@torch.no_grad()
def start_score(cfg: DecomposeConfig, model: Decomposer, sampler: Sampler, device: str | torch.device = "cpu") -> float:
    """Mean reconstruction loss (own + mutual_eps x swapped) of `model` on the fixed batches sampler(RESTART_SCORE + i)
    [SCORE_BATCHES of them], with its own image model; the global RNG is left as it was."""
    renderer = renderer_for(model.cfg).to(device)
    model.eval()
    total = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the view cycle's random views: the same for every start
        for i in range(SCORE_BATCHES):
            images, _ = sampler(RESTART_SCORE + i)
            images = _fit_size(images.to(device, torch.float32), cfg.image_size, "sampler")
            t = decomposition_loss(cfg, model, renderer, images).terms
            total += t["recon"] + cfg.mutual_eps * t.get("mutual_recon", 0.0)
    return total / SCORE_BATCHES


def _choose_start(cfg: DecomposeConfig, sampler: Sampler, run_dir: Path, *, seed: int, device: str | torch.device,
                  generator: Optional[Generator]) -> None:
    """Train cfg.restarts starts for cfg.restart_steps steps each under run_dir/restarts/ (each resumable), score
    them (`start_score`), and make the best one's checkpoint run_dir's own, with its stats lines; restarts.json
    keeps the scores."""
    n = min(cfg.restart_steps, cfg.iterations)
    sub = dataclasses.replace(cfg, iterations=n, restarts=1, checkpoint_every=n, snapshot_every=n)
    scores = []
    for k in range(cfg.restarts):
        tqdm.write(f"decompose: start {k + 1} of {cfg.restarts} ({n} steps)")
        path = train_decomposer(sub, (lambda step, shift=k * RESTART_STEP: sampler(step + shift)),
                                run_dir / "restarts" / f"start{k}", seed=seed + k * RESTART_SEED, device=device,
                                generator=generator)
        scores.append(start_score(sub, load_decomposer(path, device=device), sampler, device))
    best = min(range(len(scores)), key=scores.__getitem__)
    chosen = run_dir / "restarts" / f"start{best}"
    for name in ("stats.jsonl", "checkpoint.safetensors"):  # the checkpoint last: its presence means 'chosen'
        tmp = run_dir / f".{name}.tmp"
        shutil.copyfile(chosen / name, tmp)
        os.replace(tmp, run_dir / name)
    write_json(run_dir / "restarts.json", {"steps": n, "scores": scores, "chosen": best})
    tqdm.write(f"decompose: reconstruction loss of the starts {', '.join(f'{x:.4f}' for x in scores)}: "
               f"going on from start {best + 1}")


def _surface_phase(cfg: DecomposeConfig, step: int) -> DecomposeConfig:
    """The image model training step `step` uses: the depth surface during cfg.surface_warmup."""
    return dataclasses.replace(cfg, surface="depth", surface_warmup=0) if step < cfg.surface_warmup else cfg


def lr_factor(step: int, iterations: int, decay: float) -> float:
    """The learning rate's multiplier at 0-based `step`: 1, then over the last round(decay * iterations) steps a
    linear fall to 1 / that many at the last step (never 0, so no step is wasted)."""
    n = int(round(decay * iterations))
    return 1.0 if n <= 0 or step < iterations - n else (iterations - step) / n


def train_decomposer(
    cfg: DecomposeConfig,
    sampler: Sampler,
    run_dir: str | os.PathLike,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    generator: Optional[Generator] = None,
    init: Optional[str | os.PathLike] = None,
) -> Path:
    """Train the decomposer for cfg.iterations steps (resuming run_dir's checkpoint if there is one);
    returns the path of decomposer.safetensors. `init`: a decomposer file whose weights a fresh run
    starts from (its networks must have cfg's widths and size; the image model is cfg's own)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final, ckpt = run_dir / "decomposer.safetensors", run_dir / "checkpoint.safetensors"
    if cfg.restarts > 1 and init is None and not ckpt.is_file():
        _choose_start(cfg, sampler, run_dir, seed=seed, device=device, generator=generator)
    torch.manual_seed(seed)
    state = load_safetensors(ckpt) if ckpt.is_file() else None
    # a run resumed past the surface warm-up builds the head surface at once (its weights load either way)
    model = Decomposer(_surface_phase(cfg, int(state[1]["step"]) if state else 0)).to(device)
    renderer = renderer_for(model.cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    perceptual = PerceptualLoss(cfg.vgg_weights).to(device) if cfg.perceptual_weight > 0 else None
    aug: Optional[YawAugmentation] = None
    start = 0
    if state is not None:
        start, aug = _load_checkpoint(state, cfg, model, opt, device)
        print(f"decompose: resuming from step {start} ({ckpt})")
    elif init is not None:
        src = load_decomposer(init)
        try:
            model.load_state_dict(src.state_dict(), strict=True)
        except RuntimeError as e:
            raise ValueError(f"decompose: {init} does not fit decompose's network settings (widths, image_size): "
                             f"{str(e).splitlines()[0]}") from None
        print(f"decompose: starting from the weights of {init}")
    if start >= cfg.iterations and final.is_file():
        return final
    if cfg.yaw_aug and generator is None:
        print("decompose: yaw augmentation off: no generator given (it needs G and the samples' w)")
    logger = JsonlLogger(run_dir / "stats.jsonl", keep_through=start - 1)  # lines carry the 0-based step
    warned_no_w = False
    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="decompose", mininterval=1.0)
    for step in bar:
        if step == cfg.surface_warmup > 0:  # warm-up over: the same weights on the head surface, a fresh optimiser
            if model.cfg.surface != cfg.surface:
                head = Decomposer(cfg).to(device)
                head.load_state_dict(model.state_dict(), strict=True)
                model, renderer = head, renderer_for(head.cfg).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
            tqdm.write(f"decompose: step {step}: surface warm-up done, on the {cfg.surface} surface from here")
        images, w = sampler(step)
        images = _fit_size(images.to(device, torch.float32), cfg.image_size, "sampler")
        b = images.shape[0]
        if b != cfg.batch:
            raise ValueError(f"sampler gave a batch of {b} images; decompose.batch is {cfg.batch}")
        if w is not None and (w.ndim != 2 or w.shape[0] != b):
            raise ValueError(f"sampler's w must be [B={b}, d], got {tuple(w.shape)}")
        use_aug = cfg.yaw_aug and generator is not None and w is not None
        if cfg.yaw_aug and generator is not None and w is None and not warned_no_w:
            print("decompose: yaw augmentation off for batches without w (folder or synthetic-world images)")
            warned_no_w = True

        # --- Sec. 3.4: refresh v_yaw every aug_every steps, replace a share of the batch by G(w') ---
        n_aug, updated = 0, False
        natural = torch.arange(b, device=device)  # the batch's own samples, whose (w, yaw) v_yaw is fitted on
        if use_aug:
            w = w.to(device, torch.float32)
            if aug is None:
                aug = YawAugmentation(cfg, w.shape[1], device)
            if step >= aug.next_update and step >= cfg.aug_start:
                updated, aug.next_update = aug.update(), step + cfg.aug_every
            if aug.v is not None:
                # identity pairs: image 2k+1 becomes the edit of image 2k, a second view of the same face and
                # its mutual partner; otherwise the last aug_share of the batch is replaced by edits of its own w
                edited = (torch.arange(1, b, 2, device=device) if cfg.identity_pairs
                          else torch.arange(b - int(round(cfg.aug_share * b)), b, device=device))
                n_aug = len(edited)
            if n_aug > 0:
                # same draw on resume; a seed mix unlike a sampler's usual seed * K + step, so that the
                # s draws are not the same random stream as the batch's z
                gen = torch.Generator().manual_seed((seed + 1) * 2_147_483_629 + step * 7_919 + 17)
                w_aug, _ = aug.edit(w[edited - 1 if cfg.identity_pairs else edited], gen)
                with torch.no_grad():
                    fake = _fit_size(generator(w_aug).to(device, torch.float32), cfg.image_size, "generator")
                images = images.clone()
                images[edited] = fake
                keep = torch.ones(b, dtype=torch.bool, device=device)
                keep[edited] = False
                natural = natural[keep]

        for group in opt.param_groups:  # a function of the step alone, so a resumed run follows it
            group["lr"] = cfg.lr * lr_factor(step, cfg.iterations, cfg.lr_decay)
        model.train()
        out = decomposition_loss(cfg, model, renderer, images, perceptual)
        if not torch.isfinite(out.total):
            raise FloatingPointError(f"decompose: non-finite loss at step {step}: {out.terms}")
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()
        if use_aug:  # pairs of natural samples only: the regression describes the generator's own w
            aug.record(w[natural], out.decomposition.view[natural, 1])

        done = step + 1
        if step % cfg.log_every == 0 or done == cfg.iterations:
            rec = {"step": step, **out.terms, "n_aug": n_aug, "sec": round(time.perf_counter() - t0, 3)}
            if aug is not None:
                rec.update(v_yaw_updated=updated, v_yaw_updates=aug.updates, sigma_w=aug.sigma)
            logger.log(**rec)
            bar.set_postfix(loss=f"{out.terms['total']:.3f}", refresh=False)
        if step % cfg.snapshot_every == 0 or done == cfg.iterations:
            _snapshot(run_dir / "snapshots" / f"decompose_{step:06d}.png", model, renderer, images, out)
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            _save_checkpoint(ckpt, done, cfg, model, opt, aug)
    bar.close()
    return save_decomposer(model, final)
