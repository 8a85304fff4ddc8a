"""Stage 2: unsup3d-style face decomposition (view, light, albedo, depth) with a pure-PyTorch renderer,
mutual reconstruction (paper Sec. 3.2) and yaw augmentation (Sec. 3.4).

Names are imported lazily, so reading a recipe (which needs only `DecomposeConfig`) loads no torch.
"""
from __future__ import annotations

from .._lazy import lazy_face

_PUBLIC = {
    "DecomposeConfig": "facedis_aug.decompose.config",
    "DecomposerConfig": "facedis_aug.decompose.config",
    "PerceptualLoss": "facedis_aug.decompose.losses",
    "decomposition_loss": "facedis_aug.decompose.losses",
    "photometric_l1": "facedis_aug.decompose.losses",
    "Decomposer": "facedis_aug.decompose.model",
    "Decomposition": "facedis_aug.decompose.model",
    "load_decomposer": "facedis_aug.decompose.model",
    "renderer_for": "facedis_aug.decompose.model",
    "save_decomposer": "facedis_aug.decompose.model",
    "Rendered": "facedis_aug.decompose.renderer",
    "Renderer": "facedis_aug.decompose.renderer",
    "rotation_matrix": "facedis_aug.decompose.renderer",
    "YawAugmentation": "facedis_aug.decompose.train",
    "train_decomposer": "facedis_aug.decompose.train",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_face(__name__, _PUBLIC)
