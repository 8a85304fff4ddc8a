"""ONNX export of the generator's synthesis network and the decomposer's view head, and their
inference through ONNX Runtime.

    export_generator(G, "generator.onnx")            # w [B, d] -> image [B, 3, R, R] in [-1, 1]
    export_view_head(decomposer, "view_head.onnx")  # image [B, 3, S, S] in [-1, 1] -> [B, 3] degrees
    gen = OnnxGenerator("generator.onnx"); img = gen(w)      # torch in, torch out
    diff = max_abs_difference(G, "generator.onnx", batch=3)

Exporter choice. Both of torch's exporters work here and agree with PyTorch to ~1e-5 on the
generator. `exporter="dynamo"` (torch.export; the default of torch >= 2.9, needs `onnxscript`)
is the default because the legacy TorchScript tracer is deprecated and slated for removal; it
takes ~15 s per model on this 2-core CPU against ~1 s for `exporter="torchscript"`, which the
tests use for speed. The dynamo exporter would write weights to a side file `<name>.onnx.data`;
we ask for one self-contained file (`external_data=False`) because a bundle lists single files.

Batch is dynamic. The example batch used to trace is 2: the dynamo exporter specialises a
dimension of size 1 to a constant.

ONNX Runtime is optional (`pip install 'facedis-aug[onnx]'`); without it, the functions that need
it raise `OnnxUnavailable` with that one line.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..ops.resize import resize_square
from ..directions.semantics import MIRROR_SIGN, SEMANTICS

Exporter = Literal["dynamo", "torchscript"]
NoiseOption = Literal["const", "input", "none"]
INSTALL_HINT = "pip install 'facedis-aug[onnx]'"
_EXAMPLE_BATCH = 2  # dynamo specialises size-1 dims; any batch >= 2 keeps the axis symbolic


class OnnxUnavailable(ImportError):
    """ONNX Runtime (or onnx / onnxscript for export) is not installed."""


def require_onnxruntime() -> Any:
    """Import and return the `onnxruntime` module, or raise `OnnxUnavailable` in one line."""
    try:
        import onnxruntime
    except ImportError:
        raise OnnxUnavailable(f"onnxruntime is not installed; {INSTALL_HINT}") from None
    return onnxruntime


def _require_exporter(exporter: str) -> None:
    try:
        import onnx  # noqa: F401

        if exporter == "dynamo":
            import onnxscript  # noqa: F401
    except ImportError as e:
        raise OnnxUnavailable(f"ONNX export needs the '{e.name}' package; {INSTALL_HINT}") from None


# ---------------------------------------------------------------------------------------------
# Exportable modules
# ---------------------------------------------------------------------------------------------


def noise_buffer_names(synthesis: nn.Module) -> list[str]:
    """Names of the fixed per-layer noise buffers (`...noise_const`, [r, r]) in forward order."""
    return [n for n, _ in synthesis.named_buffers() if n.endswith("noise_const")]


class SynthesisForExport(nn.Module):
    """w [B, d] (and, with noise="input", one noise [B, 1, r, r] per layer) -> image [B, 3, R, R].

    noise="input" swaps the fixed noise buffers for the given tensors through
    `torch.func.functional_call`, so the generator module itself is never modified.
    """

    def __init__(self, synthesis: nn.Module, noise: NoiseOption = "const"):
        super().__init__()
        if noise not in ("const", "input", "none"):
            raise ValueError(f"noise must be 'const', 'input' or 'none', got {noise!r}")
        self.synthesis = synthesis
        self.noise = noise
        self.noise_names = noise_buffer_names(synthesis)

    def noise_shapes(self) -> list[tuple[int, int]]:
        bufs = dict(self.synthesis.named_buffers())
        return [tuple(bufs[n].shape) for n in self.noise_names]

    def forward(self, w: Tensor, *noises: Tensor) -> Tensor:
        if self.noise == "none":
            return self.synthesis(w, noise_mode="none")
        if self.noise == "const":
            return self.synthesis(w, noise_mode="const")
        if len(noises) != len(self.noise_names):
            raise ValueError(f"expected {len(self.noise_names)} noise inputs, got {len(noises)}")
        # noise_const [r, r] broadcasts against the activations; [B, 1, r, r] does too
        return torch.func.functional_call(
            self.synthesis, dict(zip(self.noise_names, noises)), (w,), {"noise_mode": "const"}, strict=False
        )


class ViewHead(nn.Module):
    """images [B, 3, S, S] in [-1, 1] (S = the decomposer's input size) -> [B, 3] (yaw, pitch, roll)
    in degrees, yaw > 0 = face turned to the image's left. Only the decomposer's view net runs.

    mirror_average: read the mirrored images too, (yaw, pitch, roll) := the mean of (yaw, pitch, roll)(x)
    and (-yaw, pitch, -roll)(mirror x): the reading the directions stage calibrated with when its
    directions.json says `"reading": "mirror-average"` (directions.semantics.decompose)."""

    def __init__(self, decomposer: nn.Module, mirror_average: bool = False):
        super().__init__()
        self.decomposer = decomposer
        self.image_size = int(decomposer.cfg.image_size)
        self.mirror_average = bool(mirror_average)

    def forward(self, images: Tensor) -> Tensor:
        b = images.shape[0]
        v = self.decomposer.estimate_view(torch.cat([images, images.flip(-1)]) if self.mirror_average else images)
        out = torch.stack([v["yaw"], v["pitch"], v["roll"]], dim=1)
        if self.mirror_average:
            sign = torch.tensor([MIRROR_SIGN[SEMANTICS.index(n)] for n in ("yaw", "pitch", "roll")], dtype=out.dtype,
                                device=out.device)
            out = (out[:b] + out[b:] * sign) / 2
        return out


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    exporter: Exporter,
    opset: int,
    metadata: dict[str, Any],
) -> Path:
    import onnx

    from ..ops.io import atomic_write

    _require_exporter(exporter)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.export.tmp")
    module = module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the result is checked below
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1)
            dyn: tuple[Any, ...] = ({0: batch},)
            if len(input_names) > 1:  # forward(w, *noises): torch.export groups the varargs in one tuple
                dyn = ({0: batch}, tuple({0: batch} for _ in input_names[1:]))
            torch.onnx.export(
                module, args, str(tmp), input_names=list(input_names), output_names=list(output_names),
                dynamo=True, external_data=False, dynamic_shapes=dyn, opset_version=opset, verbose=False,
            )
        elif exporter == "torchscript":
            axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
            torch.onnx.export(
                module, args, str(tmp), input_names=list(input_names), output_names=list(output_names),
                dynamo=False, dynamic_axes=axes, opset_version=opset,
            )
        else:
            raise ValueError(f"exporter must be 'dynamo' or 'torchscript', got {exporter!r}")
    try:
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)
        for k, v in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, json.dumps(v)
        with atomic_write(path, "wb") as f:
            f.write(model.SerializeToString())
    finally:
        for p in (tmp, tmp.with_name(tmp.name + ".data")):
            if p.exists():
                p.unlink()
    return path


def export_generator(
    G: nn.Module,
    path: str | os.PathLike,
    *,
    noise: NoiseOption = "const",
    exporter: Exporter = "dynamo",
    opset: int = 18,
) -> Path:
    """Write G.synthesis as ONNX: input `w` [B, d] (+ `noise_k` [B, 1, r, r] with noise="input"),
    output `image` [B, 3, R, R] in ~[-1, 1]; batch dynamic. Metadata: w_dim, resolution, noise."""
    if noise == "input" and exporter != "dynamo":
        # the TorchScript tracer rejects torch.func.functional_call, which swaps in the noise inputs
        raise ValueError("noise='input' needs exporter='dynamo'")
    syn = G.synthesis
    module = SynthesisForExport(syn, noise)
    dev = next(syn.parameters()).device
    w = torch.randn(_EXAMPLE_BATCH, int(syn.w_dim), generator=torch.Generator().manual_seed(0)).to(dev)
    args: tuple[Tensor, ...] = (w,)
    names = ["w"]
    if noise == "input":
        shapes = module.noise_shapes()
        args += tuple(torch.zeros(_EXAMPLE_BATCH, 1, *s, device=dev) for s in shapes)
        names += [f"noise_{i}" for i in range(len(shapes))]
    meta = {"kind": "generator", "w_dim": int(syn.w_dim), "resolution": int(syn.resolution), "noise": noise}
    with torch.no_grad():
        return _export(module, args, Path(path), names, ["image"], exporter, opset, meta)


def export_view_head(decomposer: nn.Module, path: str | os.PathLike, *, exporter: Exporter = "dynamo", opset: int = 18,
                     mirror_average: bool = False) -> Path:
    """Write the view head as ONNX: input `image` [B, 3, S, S] in [-1, 1], output `yaw_pitch_roll` [B, 3]
    = (yaw, pitch, roll) degrees (mirror_average: see ViewHead). Resizing to S happens outside
    (`ops.resize_square`), in both backends."""
    head = ViewHead(decomposer, mirror_average)
    x = torch.rand(_EXAMPLE_BATCH, 3, head.image_size, head.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x = x.to(next(decomposer.parameters()).device)
    meta = {"kind": "view_head", "image_size": head.image_size, "outputs": ["yaw", "pitch", "roll"],
            "mirror_average": head.mirror_average}
    with torch.no_grad():
        return _export(head, (x,), Path(path), ["image"], ["yaw_pitch_roll"], exporter, opset, meta)


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------


def make_session(path: str | os.PathLike, device: str = "auto", threads: int | None = None) -> Any:
    """An ONNX Runtime session: CUDA provider when `device` allows it and it is present, else CPU.

    device: "auto" (CUDA if available), "cpu", or "cuda" (an error when the CUDA provider is
    missing: no silent fallback). threads: intra-op threads (default torch.get_num_threads(), which
    DataLoader workers set to 1 so that workers do not oversubscribe the cores).
    """
    ort = require_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    available = ort.get_available_providers()
    if device == "cpu":
        providers = ["CPUExecutionProvider"]
    elif device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"device {device!r} asked for but ONNX Runtime has no CUDA provider (has {', '.join(available)})")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif device == "auto":
        use_cuda = "CUDAExecutionProvider" in available and torch.cuda.is_available()
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
    else:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def read_metadata(session: Any) -> dict[str, Any]:
    raw = session.get_modelmeta().custom_metadata_map or {}
    out = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


class OnnxModel:
    """An exported model through ONNX Runtime: the session (created on first use, in the calling process,
    never reused across a fork or a pickle), its metadata and providers. Subclasses define `__call__`."""

    def __init__(self, path: str | os.PathLike, device: str = "auto", threads: int | None = None):
        self.path = Path(path)
        self.device, self.threads = device, threads
        self._session: Any = None
        self._pid: int | None = None

    @property
    def session(self) -> Any:
        if self._session is None or self._pid != os.getpid():  # never reuse a session across fork
            self._session = make_session(self.path, self.device, self.threads)
            self._pid = os.getpid()
        return self._session

    @property
    def metadata(self) -> dict[str, Any]:
        return read_metadata(self.session)

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_session": None, "_pid": None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, device={self.device!r})"


class OnnxGenerator(OnnxModel):
    """generator.onnx through ONNX Runtime: `gen(w [B, d]) -> image [B, 3, R, R]` (torch, CPU, float32).

    Noise inputs (an export with noise="input") must be given as `gen(w, noises=[...])`; they are
    never invented.
    """

    @property
    def w_dim(self) -> int:
        return int(self.session.get_inputs()[0].shape[1])

    def __call__(self, w: Tensor, noises: Sequence[Tensor] | None = None) -> Tensor:
        if w.ndim != 2 or w.shape[1] != self.w_dim:
            raise ValueError(f"w must be [B, {self.w_dim}], got {tuple(w.shape)}")
        feeds = {"w": w.detach().float().cpu().numpy()}
        extra = self.input_names[1:]
        if extra:
            if noises is None or len(noises) != len(extra):
                raise ValueError(f"{self.path.name} takes {len(extra)} noise inputs (exported with noise='input'); pass noises=[...]")
            feeds.update({n: x.detach().float().cpu().numpy() for n, x in zip(extra, noises)})
        elif noises is not None:
            raise ValueError(f"{self.path.name} has fixed noise; it takes no noise inputs")
        return torch.from_numpy(self.session.run(["image"], feeds)[0])


class OnnxImageModel(OnnxModel):
    """An exported model whose first input is an image batch [B, 3, S, S] (view head, encoder)."""

    @property
    def image_size(self) -> int:
        return int(self.session.get_inputs()[0].shape[-1])


class OnnxViewHead(OnnxImageModel):
    """view_head.onnx through ONNX Runtime: `head(images [B, 3, H, W] in [-1, 1]) -> [B, 3]`
    (yaw, pitch, roll degrees); images are resized to the head's input size first."""

    def __call__(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        x = resize_square(images.detach().float().cpu(), self.image_size)
        return torch.from_numpy(self.session.run(["yaw_pitch_roll"], {"image": x.numpy()})[0])


def max_abs_difference(
    G_or_decomposer: nn.Module, path: str | os.PathLike, batch: int = 3, seed: int = 0, noise: NoiseOption = "const",
    mirror_average: bool = False,
) -> float:
    """Largest |ONNX Runtime - PyTorch| over one seeded batch (CPU provider, float32).

    For a generator: w from its mapping of seeded z; for a decomposer: the view head on random
    images. noise="input" feeds the generator's own fixed noise to both sides.
    """
    gen = torch.Generator().manual_seed(seed)
    module = G_or_decomposer
    with torch.no_grad():
        if hasattr(module, "synthesis"):
            z = torch.randn(batch, int(module.z_dim), generator=gen)
            w = module.mapping(z.to(next(module.parameters()).device)).cpu()
            onnx_gen = OnnxGenerator(path, device="cpu")
            noises = None
            if noise == "input":
                bufs = dict(module.synthesis.named_buffers())
                noises = [bufs[n].cpu().expand(batch, 1, *bufs[n].shape) for n in noise_buffer_names(module.synthesis)]
            dev = next(module.parameters()).device
            ref = SynthesisForExport(module.synthesis, "const" if noise == "input" else noise)(w.to(dev)).cpu()
            out = onnx_gen(w, noises)
        else:
            head = ViewHead(module, mirror_average)
            dev = next(module.parameters()).device
            x = torch.rand(batch, 3, head.image_size, head.image_size, generator=gen) * 2 - 1
            ref = head(x.to(dev)).cpu()
            out = OnnxViewHead(path, device="cpu")(x)
    if out.shape != ref.shape:
        raise ValueError(f"{path}: ONNX output shape {tuple(out.shape)} differs from PyTorch {tuple(ref.shape)}")
    return float(np.abs(out.numpy() - ref.numpy()).max())
