"""Stage 2: unsup3d-style face decomposition (view, light, albedo, depth) with a pure-PyTorch renderer,
mutual reconstruction (paper Sec. 3.2) and yaw augmentation (Sec. 3.4)."""
from .config import DecomposeConfig
from .losses import PerceptualLoss, decomposition_loss, photometric_l1
from .model import Decomposer, Decomposition, load_decomposer, renderer_for, save_decomposer
from .renderer import Rendered, Renderer, rotation_matrix
from .train import YawAugmentation, train_decomposer

__all__ = [
    "DecomposeConfig",
    "Decomposer",
    "Decomposition",
    "PerceptualLoss",
    "Rendered",
    "Renderer",
    "YawAugmentation",
    "decomposition_loss",
    "load_decomposer",
    "photometric_l1",
    "renderer_for",
    "rotation_matrix",
    "save_decomposer",
    "train_decomposer",
]
