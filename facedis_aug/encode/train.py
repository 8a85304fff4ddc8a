"""Encoder training on the generator's own samples, whose w is known (no labels needed).

    path = train_encoder(cfg, G, run_dir, seed=0, face_images=data_images)

Each step draws z (a pure function of (seed, step), so a resumed run sees the batches an
uninterrupted one sees), w = F(z), x = G(w) with the fixed noise, and minimises

    w_weight * mean(((E(x) - w) / std_w)^2) + image_weight * mean|G(E(x)) - x|

(std_w per dimension over F(z); the image term at the generator resolution, gradient through the
frozen G). At the end the encoder is measured on fresh samples and on `face_images` (held-out
images of the training data, [N, 3, R, R] in [-1, 1]), whose encoder-only L1 sets `max_l1`, the
bound above which an input is refused as "not a face this bundle can encode".

Run folder: stats.jsonl, snapshots/*.png, checkpoint.safetensors (resumable), eval.json and, at the
end, encoder.safetensors.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..ops import (JsonlLogger, load_safetensors, load_training_state, save_image_grid, save_safetensors,
                   training_state_tensors, write_json)
from ..ops.dataconf import to_dict
from ..ops.precision import autocast, resolve_precision
from ..ops.seeds import derive_seed
from .config import EncodeConfig
from .model import LatentEncoder, fit_images, image_l1, refine_latent, relative_w_error, save_encoder

_TAG_TRAIN, _TAG_EVAL, _TAG_STATS = 0xE1C0, 0xE7A1, 0x57A7  # separate random streams per use
STATS_SAMPLES = 4096  # F(z) samples for w_mean / w_std


@torch.no_grad()
def generator_samples(G: nn.Module, n: int, seed: int, device: Any = "cpu") -> tuple[Tensor, Tensor]:
    """(images [n, 3, R, R] in [-1, 1] with the fixed noise, w [n, d]) for z from torch.Generator(seed)."""
    z = torch.randn(n, int(G.z_dim), generator=torch.Generator().manual_seed(int(seed))).to(device)
    w = G.mapping(z)
    return G.synthesis(w, noise_mode="const").clamp(-1, 1), w


@torch.no_grad()
def w_statistics(G: nn.Module, seed: int, n: int = STATS_SAMPLES, device: Any = "cpu") -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std of w = F(z) over n seeded samples: ([d], [d])."""
    z = torch.randn(n, int(G.z_dim), generator=torch.Generator().manual_seed(derive_seed(seed, _TAG_STATS))).to(device)
    w = G.mapping(z).float()
    return w.mean(0), w.std(0)


def _save_checkpoint(path: Path, step: int, cfg: EncodeConfig, model: LatentEncoder, opt: torch.optim.Optimizer) -> None:
    tensors, meta = training_state_tensors(model, opt)
    save_safetensors(path, tensors, metadata={"step": step, "config": to_dict(cfg), **meta})


def _load_checkpoint(path: Path, cfg: EncodeConfig, model: LatentEncoder, opt: torch.optim.Optimizer, device: Any) -> int:
    tensors, meta = load_safetensors(path)
    if meta.get("config") != to_dict(cfg):
        raise ValueError(f"{path}: checkpoint was made with other encode settings; use a new run folder")
    load_training_state(tensors, meta, model, opt, device)
    return int(meta["step"])


@torch.no_grad()
def _snapshot(path: Path, model: LatentEncoder, G: nn.Module, gen_images: Tensor, face_images: Optional[Tensor]) -> None:
    """Rows: generator samples, their reconstructions G(E(x)), then data images and theirs."""
    model.eval()
    rows = [gen_images[:8]]
    rows.append(G.synthesis(model(fit_images(rows[0], model.image_size)), noise_mode="const"))
    if face_images is not None and face_images.shape[0] >= 1:
        x = face_images[:8].to(gen_images.device)
        rows += [x, G.synthesis(model(fit_images(x, model.image_size)), noise_mode="const")]
    n = min(r.shape[0] for r in rows)
    save_image_grid(torch.cat([r[:n] for r in rows]).clamp(-1, 1).float().cpu(), path, nrow=n)
    model.train()


def evaluate_encoder(model: LatentEncoder, G: nn.Module, cfg: EncodeConfig, seed: int,
                     face_images: Optional[Tensor] = None, device: Any = "cpu") -> dict[str, Any]:
    """Held-out report: relative w error (1 = the mean-w baseline, also measured), L1 of G(E(x)) with
    and without refinement on fresh generator samples and on face_images, and max_l1."""
    model.eval()
    x, w = generator_samples(G, cfg.eval_samples, derive_seed(seed, _TAG_EVAL), device)
    with torch.no_grad():
        w_hat = model(fit_images(x, model.image_size))
    rep: dict[str, Any] = {
        "w_rel_mse": float(relative_w_error(w_hat, w, model.w_std).mean()),
        "w_rel_mse_mean_baseline": float(relative_w_error(model.w_mean.expand_as(w), w, model.w_std).mean()),
        "refine_steps": cfg.refine_steps,
    }
    _, l1_e, l1_r = refine_latent(G, x, w_hat, cfg.refine_steps, cfg.refine_lr, cfg.refine_reg, model.w_std)
    with torch.no_grad():
        rep["l1_gen_mean_w"] = float(image_l1(G, model.w_mean.expand_as(w), x).mean())
    rep.update(l1_gen=float(l1_e.mean()), l1_gen_refined=float(l1_r.mean()))
    reference = l1_e
    if face_images is not None and face_images.shape[0] > 0:
        xf = fit_images(face_images.to(device).float(), int(G.synthesis.resolution))
        with torch.no_grad():
            wf = model(fit_images(xf, model.image_size))
        _, l1_fe, l1_fr = refine_latent(G, xf, wf, cfg.refine_steps, cfg.refine_lr, cfg.refine_reg, model.w_std)
        rep.update(l1_data=float(l1_fe.mean()), l1_data_refined=float(l1_fr.mean()), data_images=int(xf.shape[0]))
        reference = l1_fe
    rep["max_l1_from"] = "data images" if reference is not l1_e else "generator samples (no data images given)"
    rep["max_l1"] = float(torch.quantile(reference.double().cpu(), cfg.face_quantile)) * cfg.face_margin
    return rep


def train_encoder(cfg: EncodeConfig, G: nn.Module, run_dir: str | os.PathLike, *, seed: int,
                  device: str | torch.device = "cpu", face_images: Optional[Tensor] = None,
                  on_step: Optional[Callable[[int], None]] = None) -> Path:
    """Train (or resume) the encoder in run_dir for cfg.iterations steps; returns encoder.safetensors.
    `on_step(steps done)`, optional, is called after every step (the pipeline hands back the threads of a side
    process that has finished)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final, ckpt = run_dir / "encoder.safetensors", run_dir / "checkpoint.safetensors"
    G = G.to(device).eval().requires_grad_(False)
    torch.manual_seed(seed)
    w_mean, w_std = w_statistics(G, seed, device=device)
    model = LatentEncoder(cfg, w_mean, w_std, int(G.synthesis.resolution)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    start = 0
    if ckpt.is_file():
        start = _load_checkpoint(ckpt, cfg, model, opt, device)
        print(f"encode: resuming from step {start} ({ckpt})")
    if start >= cfg.iterations and final.is_file():
        return final
    logger = JsonlLogger(run_dir / "stats.jsonl", keep_through=start - 1)  # lines carry the 0-based step
    t0 = time.perf_counter()
    model.train()
    amp = autocast(resolve_precision(cfg.precision, device, what="encode.precision"), device)
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc="encode", mininterval=1.0)
    for step in bar:
        x, w = generator_samples(G, cfg.batch, derive_seed(seed, _TAG_TRAIN, step), device)
        with amp():
            w_hat = model(fit_images(x, model.image_size)).float()
            loss_w = relative_w_error(w_hat, w, model.w_std).mean()
            loss_img = image_l1(G, w_hat, x).float().mean() if cfg.image_weight > 0 else torch.zeros((), device=x.device)
        total = cfg.w_weight * loss_w + cfg.image_weight * loss_img
        if not torch.isfinite(total):
            raise FloatingPointError(f"encode: non-finite loss at step {step} (w {loss_w.item()}, image {loss_img.item()})")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        done = step + 1
        if step % cfg.log_every == 0 or done == cfg.iterations:
            lw, li = loss_w.item(), loss_img.item()
            logger.log(step=step, w_rel_mse=lw, l1=li, total=total.item(), sec=round(time.perf_counter() - t0, 3))
            bar.set_postfix(w=f"{lw:.3f}", l1=f"{li:.3f}", refresh=False)
        if step % cfg.snapshot_every == 0 or done == cfg.iterations:
            _snapshot(run_dir / "snapshots" / f"encode_{step:06d}.png", model, G, x, face_images)
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            _save_checkpoint(ckpt, done, cfg, model, opt)
        if on_step is not None:
            on_step(done)
    bar.close()
    report = evaluate_encoder(model, G, cfg, seed, face_images, device)
    write_json(run_dir / "eval.json", report)
    return save_encoder(model, final, extra={"max_l1": report["max_l1"], "eval": report})
