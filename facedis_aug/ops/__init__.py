"""Bottom layer: file I/O, image grids, logging helpers. Imports nothing else from the package."""
from .io import (
    atomic_write,
    load_safetensors,
    load_training_state,
    path_inside,
    read_json,
    save_image_grid,
    save_safetensors,
    sha256_file,
    to_uint8_image,
    training_state_tensors,
    write_json,
    JsonlLogger,
)
from .resize import resize_square

__all__ = [
    "atomic_write",
    "load_safetensors",
    "load_training_state",
    "path_inside",
    "read_json",
    "resize_square",
    "save_image_grid",
    "save_safetensors",
    "sha256_file",
    "to_uint8_image",
    "training_state_tensors",
    "write_json",
    "JsonlLogger",
]
