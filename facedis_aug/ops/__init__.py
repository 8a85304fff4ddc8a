"""Bottom layer: file I/O, image grids, logging helpers, configs, linear algebra. Imports nothing else
from the package. Names are imported lazily, so `ops.dataconf` (the recipe parser) loads no torch."""
from __future__ import annotations

from .._lazy import lazy_face

_PUBLIC = {
    **{name: "facedis_aug.ops.io" for name in (
        "atomic_write", "load_safetensors", "load_training_state", "path_inside", "read_json", "save_image_grid",
        "save_safetensors", "sha256_file", "to_uint8_image", "training_state_tensors", "write_json", "JsonlLogger")},
    "resize_square": "facedis_aug.ops.resize",
    "resize_bilinear": "facedis_aug.ops.resize",
    "derive_seed": "facedis_aug.ops.seeds",
    **{name: "facedis_aug.ops.precision" for name in ("autocast", "native_bf16", "resolve_precision")},
    "seeds_to_z": "facedis_aug.ops.seeds",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_face(__name__, _PUBLIC)
