"""An evaluation-only pose regressor for the synthetic face world (the paper's 3D landmarker role).

Table 2 needs the TRUE pitch and yaw of generated faces. Generated faces have no labels, so a
compact CNN is trained on the world's labelled images (uniform yaw in [-90, 90], so profiles are
covered) and then read generated faces. It never feeds back into the method: only benchmarks use it.

    path = train_pose_regressor(32, num_images=24000, steps=2500, seed=0, out_path=default_cache_path(32))
    model = load_pose_regressor(path)
    pose = predict(model, images)          # images [B, 3, R, R] in [-1, 1] -> {"yaw": [B], "pitch": [B], "roll": [B]} degrees
    heldout_mae(model, num_images=1000)    # its own error on fresh world images, overall and for |yaw| > 45

Weights are cached as safetensors (config, world and held-out MAE in the metadata) under
benchmarks/results/cache/, which is not committed.

    OMP_NUM_THREADS=1 python -m benchmarks.pose_regressor --resolution 32      # train + report MAE
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


from facedis_aug.data.synthetic import SyntheticFaces
from facedis_aug.ops.io import load_safetensors, save_safetensors

FORMAT = "facedis_aug.pose_regressor"
FORMAT_VERSION = 1
CACHE = Path(__file__).resolve().parent / "results" / "cache"
TARGETS = ("yaw", "pitch", "roll")
# rough stds of the world's uniform-pose labels (yaw U[-90, 90]: 52; pitch 7; roll 3), so the
# three regression targets have comparable scale in the loss
TARGET_SCALE = {"yaw": 60.0, "pitch": 10.0, "roll": 5.0}
PROFILE_YAW = 45.0  # |yaw| above this counts as a profile in the error report


class PoseRegressor(nn.Module):
    """Compact CNN: images [B, 3, R, R] in [-1, 1] -> normalised (yaw, pitch, roll) [B, 3].

    Stride-2 stages halve the side down to 4 px (R a power of two >= 8); channels double per stage
    from `width`, capped at 8 * width. Multiply by TARGET_SCALE for degrees (see `predict`).
    """

    def __init__(self, resolution: int = 32, width: int = 16):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.resolution, self.width = int(resolution), int(width)

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        layers = block(3, width, 1)
        c, side = width, resolution
        while side > 4:
            cout = min(2 * c, 8 * width)
            layers += block(c, c, 2) + block(c, cout, 1)
            c, side = cout, side // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, 128), nn.ReLU(inplace=True), nn.Linear(128, len(TARGETS)))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(f"expected images [B, 3, {self.resolution}, {self.resolution}], got {tuple(x.shape)}")
        return self.head(self.features(x))


def _scale(device: torch.device | str = "cpu") -> Tensor:
    return torch.tensor([TARGET_SCALE[t] for t in TARGETS], device=device)


def default_cache_path(resolution: int, num_images: int = 24000, steps: int = 2500, seed: int = 0,
                       world_seed: int = 0, num_identities: int = 2000) -> Path:
    """Cache file name that encodes everything the weights depend on."""
    return CACHE / f"pose_regressor_r{resolution}_n{num_images}_k{steps}_s{seed}_w{world_seed}_i{num_identities}.safetensors"


def render_world(num_images: int, resolution: int, world_seed: int, num_identities: int, start: int = 0,
                 supersample: int = 1, pose: str = "uniform", chunk: int = 256) -> tuple[Tensor, Tensor]:
    """World images start .. start+num_images-1: uint8 [N, 3, R, R] and labels [N, 3] (yaw, pitch, roll degrees)."""
    ds = SyntheticFaces(start + num_images, resolution, seed=world_seed, num_identities=num_identities,
                        pose=pose, supersample=supersample)
    images, labels = [], []
    for i in range(start, start + num_images, chunk):
        img, lab = ds.batch(torch.arange(i, min(i + chunk, start + num_images)))
        images.append((img * 255).round().to(torch.uint8))  # uint8 keeps 16k images at 50 MB
        labels.append(torch.stack([lab[t].float() for t in TARGETS], 1))
    return torch.cat(images), torch.cat(labels)


def _u8_to_model_range(images_u8: Tensor) -> Tensor:
    return images_u8.float() / 127.5 - 1.0


def _augment(x: Tensor, y: Tensor, gen: torch.Generator, photometric: bool = True) -> tuple[Tensor, Tensor]:
    """x [B, 3, R, R] in [-1, 1], y [B, 3] degrees. Mirror (yaw and roll change sign, pitch does
    not) and photometric jitter (brightness, contrast, blur, noise) so the regressor tolerates the
    softer, noisier look of GAN samples; pose labels are unchanged by the photometric part."""
    B = x.shape[0]
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    flip = u(B) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    y = y.clone()
    y[flip, 0] = -y[flip, 0]
    y[flip, 2] = -y[flip, 2]
    if not photometric:
        return x, y
    blur = u(B) < 0.3
    if blur.any():
        k = torch.tensor([0.25, 0.5, 0.25])
        k2 = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
        xb = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), k2, groups=3)
        x = x.clone()
        x[blur] = xb
    contrast = 0.8 + 0.4 * u(B, 1, 1, 1)
    bright = 0.2 * (u(B, 1, 1, 1) - 0.5)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + bright
    x = x + 0.06 * u(B, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    return x.clamp(-1, 1), y


def train_pose_regressor(
    resolution: int,
    num_images: int,
    steps: int,
    seed: int,
    out_path: str | Path,
    *,
    world_seed: int = 0,
    num_identities: int = 2000,
    supersample: int = 1,
    batch: int = 64,
    lr: float = 2e-3,
    width: int = 16,
    eval_images: int = 1000,
    log: Callable[[str], None] | None = print,
) -> Path:
    """Train on `num_images` uniform-pose world images (world_seed, num_identities) for `steps` Adam
    steps (cosine-decayed lr), measure the held-out MAE and save to out_path. Returns out_path.

    The held-out images are indices after the training ones in the same world (new image codes, the
    identities the generator learned) and `eval_images` of a different world seed (unseen identities).
    """
    if num_images < 1 or steps < 1 or batch < 2:
        raise ValueError(f"need num_images >= 1, steps >= 1, batch >= 2; got {num_images}, {steps}, {batch}")
    say = log or (lambda s: None)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    images, labels = render_world(num_images, resolution, world_seed, num_identities, supersample=supersample)
    t_render = time.perf_counter() - t0
    say(f"pose regressor: rendered {num_images} world images at {resolution} px in {t_render:.0f} s")
    model = PoseRegressor(resolution, width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    scale = _scale()
    losses: list[float] = []
    model.train()
    t1 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, num_images, (batch,), generator=gen)
        x, y = _augment(_u8_to_model_range(images[idx]), labels[idx], gen)
        loss = F.smooth_l1_loss(model(x), y / scale, beta=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 10) == 0 or step == steps - 1:
            say(f"  step {step + 1}/{steps}  loss {sum(losses[-50:]) / len(losses[-50:]):.4f}  ({time.perf_counter() - t1:.0f} s)")
    t_train = time.perf_counter() - t1
    model.eval()
    mae = {
        "same_world": heldout_mae(model, eval_images, world_seed, num_identities, start=num_images, supersample=supersample),
        "unseen_identities": heldout_mae(model, eval_images, world_seed + 7919, num_identities, supersample=supersample),
    }
    say(f"pose regressor held-out MAE: {mae}")
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "resolution": resolution, "width": width,
        "targets": list(TARGETS), "target_scale": TARGET_SCALE,
        "world": {"seed": world_seed, "num_identities": num_identities, "supersample": supersample, "pose": "uniform"},
        "train": {"num_images": num_images, "steps": steps, "batch": batch, "lr": lr, "seed": seed,
                  "initial_loss": sum(losses[:10]) / len(losses[:10]), "render_s": t_render, "train_s": t_train, "final_loss": sum(losses[-50:]) / len(losses[-50:])},
        "heldout_mae": mae,
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(out_path, model.state_dict(), meta)
    return out_path


def load_pose_regressor(path: str | Path) -> PoseRegressor:
    """Read a regressor saved by train_pose_regressor (eval mode, no grad). `.meta` holds its metadata."""
    tensors, meta = load_safetensors(path)
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a pose regressor file (format {meta.get('format')!r} v{meta.get('format_version')!r})")
    model = PoseRegressor(int(meta["resolution"]), int(meta["width"]))
    model.load_state_dict(tensors, strict=True)
    model.meta = meta  # plain dict for reports; not used in forward
    return model.eval().requires_grad_(False)


@torch.no_grad()
def predict(model: PoseRegressor, images: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
    """images [B, 3, R, R] in [-1, 1] (resized to the model's resolution if needed) ->
    {"yaw", "pitch", "roll"}: [B] float32 degrees (yaw > 0: face turned to the image's left)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    R = model.resolution
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size].float().clamp(-1, 1)
        if x.shape[-2:] != (R, R):
            mode = "area" if x.shape[-1] > R else "bilinear"
            x = F.interpolate(x, size=(R, R), mode=mode, **({} if mode == "area" else {"align_corners": False}))
        outs.append(model(x) * _scale(x.device))
    model.train(was_training)
    out = torch.cat(outs) if outs else torch.zeros(0, len(TARGETS))
    return {t: out[:, j].float() for j, t in enumerate(TARGETS)}


def heldout_mae(model: PoseRegressor, num_images: int = 1000, world_seed: int = 0, num_identities: int = 2000,
                start: int = 0, supersample: int = 1, pose: str = "uniform") -> dict[str, Any]:
    """Mean absolute error (degrees) on world images start .. start+num_images-1: per target,
    and for yaw also on the profiles (|yaw| > PROFILE_YAW)."""
    images, labels = render_world(num_images, model.resolution, world_seed, num_identities, start, supersample, pose)
    pred = predict(model, _u8_to_model_range(images))
    err = {t: (pred[t] - labels[:, j]).abs() for j, t in enumerate(TARGETS)}
    prof = labels[:, 0].abs() > PROFILE_YAW
    out: dict[str, Any] = {f"mae_{t}": float(e.mean()) for t, e in err.items()}
    out["mae_yaw_profile"] = float(err["yaw"][prof].mean()) if prof.any() else float("nan")
    out["corr_yaw"] = pearson(pred["yaw"], labels[:, 0])
    out["corr_pitch"] = pearson(pred["pitch"], labels[:, 1])
    out.update(n=num_images, n_profile=int(prof.sum()), world_seed=world_seed, pose=pose)
    return out


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson correlation of two [N] tensors (float64); NaN when either is constant or N < 2."""
    x, y = x.detach().double().flatten().cpu(), y.detach().double().flatten().cpu()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() < 2:
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    den = float(xc.norm() * yc.norm())
    return float((xc @ yc) / den) if den > 0 else float("nan")


def mirror_agreement(pose: dict[str, Tensor]) -> float:
    """Pearson r of yaw(x) with -yaw(mirror(x)) over 'yaw' and 'yaw_mirror' [N]: 1 when the reader reads a
    face and its mirror alike (0.99 on the world's faces); lower on faces unlike any it was trained on."""
    return pearson(pose["yaw"], -pose["yaw_mirror"])


def get_or_train(resolution: int, num_images: int = 24000, steps: int = 2500, seed: int = 0, world_seed: int = 0,
                 num_identities: int = 2000, supersample: int = 1, log: Callable[[str], None] | None = print) -> Path:
    """The cached regressor for these settings, training it first when the cache has none."""
    path = default_cache_path(resolution, num_images, steps, seed, world_seed, num_identities)
    if not path.is_file():
        train_pose_regressor(resolution, num_images, steps, seed, path, world_seed=world_seed,
                             num_identities=num_identities, supersample=supersample, log=log)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--num-images", type=int, default=24000)
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--num-identities", type=int, default=2000)
    ap.add_argument("--out", default=None, help="weights path (default: the cache path for these settings)")
    args = ap.parse_args()
    out = args.out or default_cache_path(args.resolution, args.num_images, args.steps, args.seed, args.world_seed, args.num_identities)
    path = train_pose_regressor(args.resolution, args.num_images, args.steps, args.seed, out,
                                world_seed=args.world_seed, num_identities=args.num_identities)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
