"""Crash-safe files: every write goes to a temporary file in the same folder, then `os.replace`.

Weights are safetensors, metadata JSON; nothing here pickles.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside `path`; on clean exit fsync it and rename it onto `path`.

    A crash (or exception) inside the block leaves `path` untouched and removes the temporary.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp creates 0600; give the file the permissions a plain open() would (0666 minus umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def path_inside(root: str | os.PathLike, name: str) -> Path:
    """root / name, refused (ValueError naming `name`) unless it stays inside `root`: a manifest entry
    must be a relative path without '..' whose resolved target (symlinks followed) is inside root."""
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")) or Path(name).is_absolute() or ":" in name:
        raise ValueError(f"{name!r}: not a relative path inside {root}")
    if ".." in Path(name.replace("\\", "/")).parts:
        raise ValueError(f"{name!r}: '..' is not allowed (paths must stay inside {root})")
    base = Path(root).resolve()
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"{name!r}: resolves to {target}, outside {root} (a symlink leaving the folder)")
    return Path(root) / name


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None
) -> None:
    """Write tensors atomically. Non-string metadata values are JSON-encoded (safetensors takes str->str)."""
    from safetensors.torch import save

    meta = {k: v if isinstance(v, str) else json.dumps(v, default=_json_default) for k, v in (metadata or {}).items()}
    # safetensors refuses shared or non-contiguous storage; clone to be safe
    blob = save({k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}, metadata=meta)
    with atomic_write(path, "wb") as f:
        f.write(blob)


def load_safetensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (tensors, metadata); metadata values that are JSON are decoded, others kept as str."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        raw = f.metadata() or {}
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    meta: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            meta[k] = v
    return tensors, meta


def to_uint8_image(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """[C,H,W] or [H,W] float tensor -> [H,W,3] uint8 array (greyscale repeated to RGB)."""
    lo, hi = value_range
    x = x.detach().float().cpu()
    if x.ndim == 2:
        x = x[None]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = ((x - lo) / (hi - lo)).clamp(0, 1)
    return (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def save_image_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    nrow: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    pad: int = 2,
) -> np.ndarray:
    """Save images [N, C, H, W] (C = 1 or 3) as a PNG grid, `nrow` images per row. Returns the grid."""
    from PIL import Image

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1|3, H, W], got {tuple(images.shape)}")
    n, _, h, w = images.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol_rows = int(math.ceil(n / nrow))
    grid = np.full((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = to_uint8_image(images[i], value_range)
    with atomic_write(path, "wb") as f:
        Image.fromarray(grid).save(f, format="PNG")
    return grid


def _step_of(line: str) -> float:
    """The "step" of a stats line (a torn or step-less line counts as before every step)."""
    try:
        return float(json.loads(line).get("step", -1))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return float("inf")  # a torn last line, from the crash itself: dropped


class JsonlLogger:
    """Append one JSON object per line (e.g. `stats.jsonl`). Each line is flushed on write, so a
    crash loses at most the line being written."""

    def __init__(self, path: str | os.PathLike, keep_through: int | None = None):
        """keep_through: a resumed run drops the lines whose "step" is past this one (logged between its
        last checkpoint and the crash, and about to be logged again), so no step appears twice."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_through is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines(keepends=True)
                    if line.strip() and _step_of(line) <= keep_through]
            with atomic_write(self.path, "w") as f:
                f.writelines(line if line.endswith("\n") else line + "\n" for line in kept)

    def log(self, **record: Any) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]


def sub_tensors(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries "<prefix>.<key>" of a flat checkpoint, as {key: tensor}."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state as flat tensors "<prefix>.<param index>.<name>"."""
    return {f"{prefix}.{i}.{k}": torch.as_tensor(v) for i, st in opt.state_dict()["state"].items() for k, v in st.items()}


def load_optimizer_tensors(opt: torch.optim.Optimizer, flat: Mapping[str, torch.Tensor], device: str | torch.device | None = None,
                           param_groups: Any = None) -> None:
    """Inverse of `optimizer_tensors` (given its entries without the prefix, see `sub_tensors`); the
    param groups are the optimizer's own unless given (a checkpoint may store them)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in flat.items():
        i, name = k.split(".", 1)
        # Adam keeps its step counter on the CPU unless capturable
        state.setdefault(int(i), {})[name] = v.to(device) if device is not None and name != "step" else v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"] if param_groups is None else param_groups})


def training_state_tensors(model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One model and its optimizer as flat tensors ("model.<param>", "optim.<idx>.<name>") plus the
    metadata they need back ({"optim_groups": ...}), for a single-model training checkpoint."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(optimizer_tensors(opt, "optim"))
    return tensors, {"optim_groups": opt.state_dict()["param_groups"]}


def load_training_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], model: torch.nn.Module,
                        opt: torch.optim.Optimizer, device: str | torch.device) -> None:
    """Inverse of `training_state_tensors`: fill model and optimizer in place."""
    model.load_state_dict(sub_tensors(tensors, "model"))
    load_optimizer_tensors(opt, sub_tensors(tensors, "optim"), device, meta["optim_groups"])
