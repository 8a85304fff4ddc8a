"""Encoder stage: image -> w in W (a timm backbone and a linear head), trained without labels on the
generator's own samples, plus a short optimisation that refines w for a given image.

    from facedis_aug.encode.model import LatentEncoder, load_encoder, refine_latent, encode_images
    from facedis_aug.encode.train import train_encoder

Imports ops, data and gan only; augment and export import this package, never the reverse.
"""
