"""facedis-aug: unsupervised linear-encoded facial semantics (Zheng et al., CVPR 2021) as a
data-augmentation plugin for face-recognition training.

Public names are imported lazily so that `import facedis_aug` stays cheap (no scipy, matplotlib or
network construction until a name is used).
"""
from __future__ import annotations

from ._lazy import lazy_face
from ._version import __version__  # noqa: E402,F401

# public name -> module that defines it
_PUBLIC = {
    "load_recipe": "facedis_aug.recipe",
    "Recipe": "facedis_aug.recipe",
    "ConfigError": "facedis_aug.ops.dataconf",
    "SyntheticFaces": "facedis_aug.data.synthetic",
    "SyntheticWorld": "facedis_aug.data.synthetic",
    "ImageFolderFaces": "facedis_aug.data.folder",
    "RecordFaces": "facedis_aug.data.recordio",
    "training_batches": "facedis_aug.data.stream",
    "make_source": "facedis_aug.data.stream",
    "decorrelation_loss": "facedis_aug.gan.loss",
    "fit_directions": "facedis_aug.ops.linear",
    "edit_latent": "facedis_aug.ops.linear",
    "localized_directions": "facedis_aug.directions.localized",
    "Bundle": "facedis_aug.bundle",
    "BundleError": "facedis_aug.bundle",
    "write_bundle": "facedis_aug.bundle",
    "draw_strips": "facedis_aug.bundle",
    "GanMetrics": "facedis_aug.gan.metrics",
    "SyntheticPoseFaces": "facedis_aug.augment.synthetic",
    "PoseRebalanced": "facedis_aug.augment.rebalance",
    "PoseExtrapolate": "facedis_aug.augment.transforms",
    "AlbuPoseExtrapolate": "facedis_aug.augment.transforms",
    "FaceInputError": "facedis_aug.augment.real",
    "load_encoder": "facedis_aug.encode.model",
    "load_generator": "facedis_aug.gan.networks",
    "generate": "facedis_aug.gan.networks",
    "MetricsConfig": "facedis_aug.gan.config",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_face(__name__, _PUBLIC)
