"""Stage 5: library use of a bundle for recognizer training.

    SyntheticPoseFaces   new identities at target yaws (a torchvision-style Dataset)
    PoseRebalanced       a real (image, label) Dataset topped up with synthetic identities at the
                         yaws it lacks, towards a target histogram
    PoseExtrapolate      a transform that turns a face to another yaw: a real image (through the
                         bundle's encoder) or a synthetic sample (AlbuPoseExtrapolate: the
                         albumentations flavour); FaceInputError for images it cannot turn

Names are imported lazily so that `import facedis_aug.augment` loads no models or albumentations.
"""
from __future__ import annotations

from .._lazy import lazy_face

_PUBLIC = {
    "SyntheticPoseFaces": "facedis_aug.augment.synthetic",
    "YawDistribution": "facedis_aug.augment.synthetic",
    "PoseRebalanced": "facedis_aug.augment.rebalance",
    "PoseExtrapolate": "facedis_aug.augment.transforms",
    "AlbuPoseExtrapolate": "facedis_aug.augment.transforms",
    "FaceInputError": "facedis_aug.augment.real",
    "open_bundle": "facedis_aug.augment.engine",
}
__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_face(__name__, _PUBLIC)
