"""Stage 1: StyleGAN2 in plain PyTorch with the paper's decorrelation loss on the mapping network.

Later stages need only `load_generator` and `generate` (no training code is imported by them).
"""
from .config import GanConfig
from .loss import decorrelation_loss, decorrelation_stats
from .networks import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    generate,
    load_generator,
    seeds_to_z,
)


def train_gan(*args, **kwargs):
    """See `facedis_aug.gan.train.train_gan` (imported on first use so loading a generator stays light)."""
    from .train import train_gan as _train_gan

    return _train_gan(*args, **kwargs)


__all__ = [
    "GanConfig",
    "Generator",
    "GeneratorConfig",
    "Discriminator",
    "DiscriminatorConfig",
    "decorrelation_loss",
    "decorrelation_stats",
    "generate",
    "load_generator",
    "seeds_to_z",
    "train_gan",
]
