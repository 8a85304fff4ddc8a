"""Stage 1: StyleGAN2 in plain PyTorch with the paper's decorrelation loss on the mapping network.

Names are imported lazily (later stages need only `load_generator` and `generate`, and reading a recipe
only the config), so `import facedis_aug.gan` loads no networks or training code.
"""
from __future__ import annotations

from .._lazy import lazy_face

_PUBLIC = {
    "GanConfig": "facedis_aug.gan.config",
    "MetricsConfig": "facedis_aug.gan.config",
    "decorrelation_loss": "facedis_aug.gan.loss",
    "decorrelation_stats": "facedis_aug.gan.loss",
    "Discriminator": "facedis_aug.gan.networks",
    "DiscriminatorConfig": "facedis_aug.gan.networks",
    "Generator": "facedis_aug.gan.networks",
    "GeneratorConfig": "facedis_aug.gan.networks",
    "generate": "facedis_aug.gan.networks",
    "load_generator": "facedis_aug.gan.networks",
    "train_gan": "facedis_aug.gan.train",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_face(__name__, _PUBLIC)
