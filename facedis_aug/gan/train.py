"""Stage 1 training loop: StyleGAN2 + the decorrelation loss on F, data-parallel, resumable.

    train_gan(cfg, make_batches, run_dir, seed=0)              # one process
    torchrun --nproc_per_node 4 ... (calls train_gan)          # data-parallel, gloo on CPU / NCCL on GPU

Determinism: the global RNG is reseeded at every step from (seed, step, rank), so a resumed run
draws exactly the random numbers an uninterrupted one does without carrying RNG state around, and
on CPU it ends with bit-identical weights. Gradients are averaged across ranks by hand (one
all_reduce per optimiser step) instead of DistributedDataParallel, which does not support the
double backward of R1 and path-length regularisation.
"""
from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import JsonlLogger, load_safetensors, read_json, save_image_grid, save_safetensors, write_json
from ..ops.dataconf import to_dict
from ..ops.io import load_optimizer_tensors, optimizer_tensors, sub_tensors
from ..ops.precision import autocast, resolve_precision
from .config import GanConfig
from .loss import (
    decorrelation_loss,
    decorrelation_stats,
    discriminator_loss,
    generator_loss,
    path_length_penalty,
    r1_penalty,
    sample_ws,
)
from .networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, generate, generator_metadata

# make_batches(start_step, rank, world_size) -> iterator of this rank's real batches [B, 3, R, R]
# in [-1, 1], beginning at `start_step` (facedis_aug.data.stream.training_batches has this shape).
MakeBatches = Callable[[int, int, int], Iterator[Tensor]]
CHECKPOINT = "checkpoint.json"  # pointer to the latest checkpoint-<step>.safetensors (the commit point)
W_AVG_BETA = 0.995  # w_avg tracking, as stylegan2


def network_configs(cfg: GanConfig) -> tuple[GeneratorConfig, DiscriminatorConfig]:
    g = GeneratorConfig(cfg.resolution, cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.channel_base, cfg.channel_max, cfg.mapping_lr_mult)
    d = DiscriminatorConfig(cfg.resolution, cfg.channel_base, cfg.channel_max, cfg.mbstd_group)
    return g, d


def mirror_half(x: Tensor) -> Tensor:
    """x [B, C, H, W] with each image x-flipped with probability 1/2 (torch's default generator: the loop seeds
    it per step, so a resumed run flips the same images)."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def ada_augment(x: Tensor, p: float) -> Tensor:
    """ADA-lite, differentiable: each of x-flip, integer translation (up to 1/8 of the side, reflect
    padding), brightness, contrast and saturation is applied to each sample with probability p.
    x [B, C, H, W] in [-1, 1] -> same shape."""
    if p <= 0:
        return x
    B, C, H, W = x.shape
    dev = x.device
    chosen = lambda: (torch.rand(B, device=dev) < p).to(x.dtype)  # noqa: E731
    x = torch.where(chosen()[:, None, None, None] > 0, x.flip(3), x)
    pad = max(1, H // 8)
    m = chosen().long()
    tx, ty = (torch.randint(-pad, pad + 1, (2, B), device=dev) * m).unbind(0)
    xp = F.pad(x, [pad] * 4, mode="reflect")
    rows = torch.arange(H, device=dev)[None] + pad - ty[:, None]  # [B, H]
    cols = torch.arange(W, device=dev)[None] + pad - tx[:, None]  # [B, W]
    x = xp[torch.arange(B, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    bright = (torch.randn(B, device=dev) * 0.2 * chosen())[:, None, None, None]
    contrast = torch.exp2(torch.randn(B, device=dev) * 0.5 * chosen())[:, None, None, None]
    sat = torch.exp2(torch.randn(B, device=dev) * chosen())[:, None, None, None]
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - mean) * contrast + mean + bright
    grey = x.mean(dim=1, keepdim=True)
    return grey + (x - grey) * sat


# ---------------------------------------------------------------------------------------------
# distributed helpers
# ---------------------------------------------------------------------------------------------


def _init_distributed(device: str) -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, we_initialised). torch.distributed is set up from torchrun's env
    vars when WORLD_SIZE > 1: NCCL on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world <= 1:
        return 0, 1, dev, False
    rank = int(os.environ["RANK"])
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(dev)
    ours = not dist.is_initialized()
    if ours:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, world, dev, ours


def _mean_across(x: Tensor, world: int) -> Tensor:
    if world > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= world
    return x


def _apply_grads(module: nn.Module, opt: torch.optim.Optimizer, loss: Tensor, world: int, scaler) -> bool:
    """Backward `loss`, average grads across ranks, step `opt` unless anything is non-finite.
    The finiteness verdict is taken on the all-reduced buffer, so every rank agrees."""
    (scaler.scale(loss) if scaler else loss).backward()
    params = [p for p in module.parameters() if p.grad is not None]
    bad = float("nan") if not torch.isfinite(loss.detach()).all() else 0.0
    flat = torch.cat([p.grad.flatten() for p in params] + [torch.tensor([bad], device=loss.device)])
    flat = _mean_across(flat, world)
    # with fp16 the scaler owns inf gradients (it skips and lowers the scale); we judge the loss only
    ok = bool(torch.isfinite(flat[-1:] if scaler else flat).all())
    if world > 1:
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
            offset += p.numel()
    if ok:
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
    return ok


# ---------------------------------------------------------------------------------------------
# checkpoints: tensors in safetensors (modules, Adam states, loop state), the rest in JSON
# ---------------------------------------------------------------------------------------------


def _flat_state(G: nn.Module, D: nn.Module, G_ema: nn.Module, opt_G, opt_D, extra: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for name, m in (("G", G), ("D", D), ("G_ema", G_ema)):
        out.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    out.update({**optimizer_tensors(opt_G, "opt_G"), **optimizer_tensors(opt_D, "opt_D")})
    out.update({f"state.{k}": v for k, v in extra.items()})
    return out


def checkpoint_generator(run_dir: str | Path, cfg: GanConfig, device: str | torch.device = "cpu") -> tuple[Generator, float]:
    """(G_ema, kimg) of the latest checkpoint in a gan run folder that is still training (or was stopped), for
    looking at a run before its gan.safetensors exists; ValueError (one line) when there is none."""
    run_dir = Path(run_dir)
    ptr = run_dir / CHECKPOINT
    if not ptr.is_file():
        raise ValueError(f"{ptr}: no checkpoint in this gan run folder")
    info = read_json(ptr)
    tensors, _ = load_safetensors(run_dir / info["file"], device=device)
    G = Generator(network_configs(cfg)[0]).to(device)
    G.load_state_dict(sub_tensors(tensors, "G_ema"))
    return G.eval().requires_grad_(False), float(info["kimg"])


def _save_checkpoint(run_dir: Path, step: int, tensors: dict[str, Tensor], info: dict) -> Path:
    """Write checkpoint-<step>.safetensors, then atomically point checkpoint.json at it, then drop
    the previous file: a crash at any moment leaves a complete checkpoint behind."""
    name = f"checkpoint-{step:08d}.safetensors"
    save_safetensors(run_dir / name, tensors)
    old = run_dir / CHECKPOINT
    old_file = read_json(old)["file"] if old.exists() else None
    write_json(old, {**info, "step": step, "file": name})
    if old_file and old_file != name:
        (run_dir / old_file).unlink(missing_ok=True)
    return run_dir / name


# ---------------------------------------------------------------------------------------------
# the training function
# ---------------------------------------------------------------------------------------------


def _steps(kimg: float, global_batch: int) -> int:
    return max(1, round(kimg * 1000 / global_batch))


def train_gan(
    cfg: GanConfig,
    make_batches: MakeBatches,
    run_dir: str | os.PathLike,
    *,
    seed: int,
    device: str = "cpu",
    on_snapshot: Callable[[Generator, int], dict] | None = None,
    on_log: Callable[[int], None] | None = None,
) -> Path:
    """Train (or resume) stage 1 in `run_dir`; return the path of `gan.safetensors` (G_ema).

    `make_batches(start_step, rank, world_size)` yields this rank's real batches [cfg.batch, 3, R, R]
    in [-1, 1] from `start_step` on. `on_snapshot(G_ema, step)` (rank 0, optional) returns metrics
    that go into stats.jsonl beside each snapshot (e.g. FID). `on_log(step)` (rank 0, optional) is called
    at every log interval (the pipeline hands the gan the cores a side job gave back).
    """
    run_dir = Path(run_dir)
    rank, world, dev, own_pg = _init_distributed(device)
    B, R = cfg.batch, cfg.resolution
    gbatch = B * world
    total_steps = max(1, math.ceil(cfg.kimg * 1000 / gbatch - 1e-6))  # tolerate 0.024 * 1000 / 4 = 6.000000000000001
    gamma = cfg.r1_gamma if cfg.r1_gamma is not None else 0.0002 * R**2 / gbatch
    ema_nimg = (cfg.ema_kimg if cfg.ema_kimg is not None else gbatch * 10 / 32) * 1000
    pl_on, r1_on = cfg.pl_weight > 0, gamma > 0
    if B % min(cfg.mbstd_group, B) != 0:
        raise ValueError(f"gan.batch {B} must be a multiple of gan.mbstd_group {cfg.mbstd_group}")
    precision = resolve_precision(cfg.precision, dev, what="gan.precision")  # 'auto': bf16 only where it is native
    amp = autocast(precision, dev)
    final = run_dir / "gan.safetensors"
    noise_mode = "random" if cfg.noise else "none"  # off: noise_strength stays 0, so G_ema draws the same without it

    torch.manual_seed(seed)  # same initial weights on every rank
    g_cfg, d_cfg = network_configs(cfg)
    G, D = Generator(g_cfg).to(dev), Discriminator(d_cfg).to(dev)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)

    def adam(module: nn.Module, interval: int, lazy: bool) -> torch.optim.Adam:
        c = interval / (interval + 1) if lazy else 1.0  # lazy regularisation: interval+1 steps per interval
        return torch.optim.Adam(module.parameters(), lr=cfg.lr * c, betas=(cfg.betas[0] ** c, cfg.betas[1] ** c), eps=1e-8)

    opt_G, opt_D = adam(G, cfg.pl_interval, pl_on), adam(D, cfg.r1_interval, r1_on)
    scaler_G, scaler_D = (torch.amp.GradScaler("cuda"), torch.amp.GradScaler("cuda")) if precision == "fp16" else (None, None)
    zero = lambda: torch.zeros([], device=dev)  # noqa: E731
    st = {"pl_mean": zero(), "ada_p": zero().double(), "ada_sum": zero(), "ada_count": zero()}
    start, bad_steps, last_ckpt = 0, 0, None

    ptr = run_dir / CHECKPOINT
    if ptr.exists():
        info = read_json(ptr)
        saved_net = {k: info["config"].get(k) for k in to_dict(g_cfg) | to_dict(d_cfg) if k in info["config"]}
        want_net = {k: v for k, v in to_dict(cfg).items() if k in saved_net}
        if saved_net != want_net:
            raise ValueError(f"{ptr}: checkpoint networks {saved_net} differ from the recipe's {want_net}; use a new run folder")
        tensors, _ = load_safetensors(run_dir / info["file"], device=dev)
        G.load_state_dict(sub_tensors(tensors, "G"))
        D.load_state_dict(sub_tensors(tensors, "D"))
        G_ema.load_state_dict(sub_tensors(tensors, "G_ema"))
        load_optimizer_tensors(opt_G, sub_tensors(tensors, "opt_G"))
        load_optimizer_tensors(opt_D, sub_tensors(tensors, "opt_D"))
        st = {k: v.clone() for k, v in sub_tensors(tensors, "state").items()}
        start, bad_steps, last_ckpt = info["step"], info.get("bad_steps", 0), run_dir / info["file"]
        if rank == 0:
            print(f"gan: resuming from step {start} ({start * gbatch / 1000:g} kimg, {last_ckpt})")
    elif world > 1:
        for t in [*G.state_dict().values(), *D.state_dict().values(), *G_ema.state_dict().values()]:
            dist.broadcast(t, 0)  # belt and braces: the seed already made them equal
    if start >= total_steps and final.exists():  # finished earlier: nothing to do
        if own_pg:
            dist.destroy_process_group()
        return final

    logger = JsonlLogger(run_dir / "stats.jsonl", keep_through=start) if rank == 0 else JsonlLogger(run_dir / "stats.jsonl")
    snap_seeds = list(range(cfg.snapshot_images))
    log_every, snap_every, ckpt_every = (_steps(k, gbatch) for k in (cfg.log_kimg, cfg.snapshot_kimg, cfg.checkpoint_kimg))
    if rank == 0 and start == 0:
        save_image_grid(generate(G_ema, seeds=snap_seeds), run_dir / "snapshots" / "fakes_0000000.png")
        save_image_grid(next(iter(make_batches(0, 0, 1)))[: cfg.snapshot_images], run_dir / "snapshots" / "reals.png")
    batches = make_batches(start, rank, world)
    acc: dict[str, list[float]] = {}
    t_last, cpu_last, steps_since = time.perf_counter(), time.process_time(), 0
    from tqdm import tqdm

    pbar = tqdm(total=total_steps, initial=start, unit="step", disable=rank != 0, dynamic_ncols=True)
    for step in range(start, total_steps):
        torch.manual_seed(seed * 1_000_003 + step * 997 + rank)  # exact resume without RNG state
        real = next(batches).to(dev, torch.float32)
        if real.shape != (B, 3, R, R):
            raise ValueError(f"make_batches gave {tuple(real.shape)}, expected [{B}, 3, {R}, {R}]")
        if cfg.mirror:
            real = mirror_half(real)
        p = float(st["ada_p"]) if cfg.ada else 0.0
        aug = (lambda x: ada_augment(x, p)) if p > 0 else (lambda x: x)
        ok, rec = True, {}

        # G main: non-saturating loss through D; decorrelation loss through F alone (its graph
        # contains only the mapping network's parameters, so nothing else receives its gradient).
        G.requires_grad_(True)
        D.requires_grad_(False)
        opt_G.zero_grad(set_to_none=True)
        with amp():
            ws = sample_ws(G.mapping, torch.randn(B, cfg.z_dim, device=dev), G.num_ws, cfg.style_mixing)
            loss = loss_g = generator_loss(D(aug(G.synthesis(ws, noise_mode))).float())
        if cfg.decorr_weight > 0:
            loss_dec = decorrelation_loss(G.mapping(torch.randn(cfg.decorr_samples, cfg.z_dim, device=dev)))
            loss = loss + cfg.decorr_weight * loss_dec
            rec["loss_decorr"] = loss_dec.item()
        ok &= _apply_grads(G, opt_G, loss, world, scaler_G)
        rec["loss_G"] = loss_g.item()

        # G reg: path length, lazily, on a smaller batch, fp32
        if pl_on and step % cfg.pl_interval == 0:
            opt_G.zero_grad(set_to_none=True)
            bp = max(1, B // cfg.pl_batch_shrink)
            ws = sample_ws(G.mapping, torch.randn(bp, cfg.z_dim, device=dev), G.num_ws, cfg.style_mixing)
            pen, new_mean = path_length_penalty(G.synthesis(ws, noise_mode), ws, st["pl_mean"], cfg.pl_decay)
            pl_ok = _apply_grads(G, opt_G, pen.mean() * cfg.pl_weight * cfg.pl_interval, world, None)
            if pl_ok:
                st["pl_mean"] = _mean_across(new_mean.detach(), world)
            ok &= pl_ok
            rec["pl"] = pen.mean().item()

        # D main: logistic loss on fresh fakes and this step's reals
        G.requires_grad_(False)
        D.requires_grad_(True)
        opt_D.zero_grad(set_to_none=True)
        with torch.no_grad():
            ws = sample_ws(G.mapping, torch.randn(B, cfg.z_dim, device=dev), G.num_ws, cfg.style_mixing)
            fake = G.synthesis(ws, noise_mode)
            w_mean = _mean_across(ws[:, 0].float().mean(0), world)
            if torch.isfinite(w_mean).all():
                G.mapping.w_avg.lerp_(w_mean, 1 - W_AVG_BETA)
        with amp():
            real_logits = D(aug(real)).float()
            loss_d = discriminator_loss(real_logits, D(aug(fake)).float())
        ok &= _apply_grads(D, opt_D, loss_d, world, scaler_D)
        rec["loss_D"], rec["D_real"] = loss_d.item(), real_logits.mean().item()
        st["ada_sum"] += real_logits.detach().sign().mean().nan_to_num()
        st["ada_count"] += 1

        # D reg: R1 on reals, lazily, fp32; gradient w.r.t. the un-augmented image, as ADA does
        if r1_on and step % cfg.r1_interval == 0:
            opt_D.zero_grad(set_to_none=True)
            x = real.detach().requires_grad_(True)
            pen = r1_penalty(D(aug(x)), x)
            ok &= _apply_grads(D, opt_D, pen.mean() * (gamma / 2) * cfg.r1_interval, world, None)
            rec["r1"] = pen.mean().item()

        with torch.no_grad():  # G_ema: parameters follow G with half-life ema_kimg; buffers are copied
            half_life = min(ema_nimg, step * gbatch * cfg.ema_rampup) if cfg.ema_rampup else ema_nimg
            ema_beta = 0.5 ** (gbatch / max(half_life, 1e-8))
            torch._foreach_lerp_(list(G_ema.parameters()), list(G.parameters()), 1.0 - ema_beta)
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)

        done = step + 1
        if cfg.ada and done % cfg.ada_interval == 0:
            rt = _mean_across(st["ada_sum"] / st["ada_count"], world)
            adjust = torch.sign(rt - cfg.ada_target) * gbatch * cfg.ada_interval / (cfg.ada_kimg * 1000)
            st["ada_p"] = (st["ada_p"] + adjust.double()).clamp(0.0, 1.0)
            st["ada_sum"], st["ada_count"] = zero(), zero()
            rec["ada_rt"] = rt.item()

        bad_steps = 0 if ok else bad_steps + 1
        for k, v in rec.items():
            acc.setdefault(k, []).append(v)
        steps_since += 1
        if not ok and rank == 0:
            logger.log(step=done, event="non_finite_skipped", bad_steps_in_a_row=bad_steps, **rec)
        if bad_steps >= cfg.max_bad_steps:
            where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
            raise RuntimeError(f"gan: {bad_steps} non-finite steps in a row (up to step {done}); stopping. {where}")
        pbar.update(1)
        kimg = done * gbatch / 1000
        if rank == 0:
            pbar.set_postfix(kimg=f"{kimg:.2f}", refresh=False)

        if rank == 0 and (done % log_every == 0 or done == total_steps):
            dt, cpu_dt = time.perf_counter() - t_last, time.process_time() - cpu_last
            with torch.no_grad():
                dstats = decorrelation_stats(G.mapping(torch.randn(cfg.decorr_samples, cfg.z_dim, device=dev)))
            logger.log(
                step=done, kimg=kimg, s_per_step=dt / steps_since, img_per_s=gbatch * steps_since / dt,
                # CPU time and load beside the wall time: a slower window on a busier machine says so
                cpu_s_per_step=cpu_dt / steps_since, load1=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                **{k: sum(v) / len(v) for k, v in acc.items()}, **dstats,
                pl_mean=st["pl_mean"].item(), ada_p=float(st["ada_p"]), world_size=world, precision=precision,
            )  # fmt: skip
            pbar.set_postfix(kimg=f"{kimg:.2f}", img_s=f"{gbatch * steps_since / dt:.1f}", rho=f"{dstats['rho_mean']:.3f}")
            acc, t_last, cpu_last, steps_since = {}, time.perf_counter(), time.process_time(), 0
            if on_log is not None:
                on_log(done)
        if rank == 0 and (done % snap_every == 0 or done == total_steps):
            save_image_grid(generate(G_ema, seeds=snap_seeds), run_dir / "snapshots" / f"fakes_{done:07d}.png")
            if on_snapshot is not None and (cfg.metrics.at == "snapshots" or done == total_steps):
                logger.log(step=done, kimg=kimg, **on_snapshot(G_ema, done))
        if done % ckpt_every == 0 or done == total_steps:
            if rank == 0:
                info = {"kimg": kimg, "seed": seed, "world_size": world, "bad_steps": bad_steps, "config": to_dict(cfg)}
                last_ckpt = _save_checkpoint(run_dir, done, _flat_state(G, D, G_ema, opt_G, opt_D, st), info)
            elif world > 1:
                last_ckpt = run_dir / f"checkpoint-{done:08d}.safetensors"
    pbar.close()

    if world > 1:  # replicas must agree bit for bit; a mismatch means a bug, not noise
        flat = torch.cat([p.detach().flatten() for p in G.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, 0)
        if not torch.equal(flat, ref):
            raise RuntimeError(f"gan: rank {rank} weights diverged from rank 0")
    if rank == 0:
        save_safetensors(final, G_ema.state_dict(), generator_metadata(G_ema, kimg=total_steps * gbatch / 1000, steps=total_steps, seed=seed, decorr_weight=cfg.decorr_weight))
    if world > 1:
        dist.barrier()
        if own_pg:
            dist.destroy_process_group()
    return final
