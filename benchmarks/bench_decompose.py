"""Stage 2 on the synthetic world, where the truth is known: plain vs mutual reconstruction vs mutual
reconstruction + yaw augmentation (issue 4; the paper's Fig. 5 claim), against the world's labels.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_decompose --gan RUN_DIR [--steps 4000] [--arms ...]
    python -m benchmarks.bench_decompose --quick                   # CI smoke test: random generator, 3 steps

Every arm trains a decomposer with the stage's own loop (`train_decomposer`) and the recipe's
decompose settings (recipes/tiny.yaml unless --recipe), changing only the switches named:

    harness                          renderer-made faces of known view over a still background
                                     (facedis_aug/decompose/harness.py), scored on their own truth too
    world-plain-single-mesh          world-plain with unsup3d's single mesh instead of face + background layers
    world-plain, world-mutual        world images with the recipe's (CASIA-like) pose distribution; no w,
                                     so no yaw augmentation is possible
    world-mutual-face-ring11         world-mutual with the prior ellipse (0.6, 0.8) and ring 1.1 (random partners)
    world-pairs(-face-ring11(-head)) world-mutual whose partners are another photo of the same person
                                     (decompose.identity_pairs), (face-sized layer, ring 1.1, (head surface))
    world-plain-head                 world-plain with the head surface (radius over longitude/latitude)
    world-plain-wide                 world-plain with the albedo/depth nets twice as wide (32 ch, 128-d)
    world-plain-relief003            world-plain with depth_residual 0.03
    world-plain-prior008             world-plain with shape_prior 0.08 (a deeper head)
    world-plain-fixed-sigma          world-plain with a fixed confidence (sigma = 1: a plain L1)
    world-plain-cycle, -cycle90      world-plain-fixed-sigma with the view cycle (weight 1; yaw in +-60, +-90)
    world-plain-cycle01, -cycle03    the same at weight 0.1, 0.3
    world-plain-grad(-cycle01)       world-plain-fixed-sigma with the image-gradient L1 (weight 1), (and the cycle at 0.1)
    world-plain-frontal              world-plain trained only on faces within |yaw| < 30 (no profiles)
    world-plain-from-harness         world-plain starting from the harness arm's weights after 800 steps
    world-plain-ring11, -face-ring11 world-plain with background_ring 1.1 (and the prior ellipse (0.6, 0.8))
    world-plain-face                 world-plain with the prior ellipse (0.6, 0.8) at the default ring 1.3
    world-plain(-face-ring11)-uniform  the same trained on world faces of uniform yaw in [-90, 90] (an upper
                                     bound for Sec. 3.4's augmentation: profiles the casia-like data lacks)
    world-plain(-face-ring11)-head-from-depth  the head surface, started from world-plain(-face-ring11)'s
                                     3000-step weights
    world-plain-face-ring11-wide     world-plain-face-ring11 with the albedo/depth nets twice as wide (32 ch, 128-d)
    mixed-aug-warm-face-ring11       mixed-aug-warm (the tiny recipe's) with the prior ellipse (0.6, 0.8) and ring 1.1
    mixed-plain-aug-face-ring11      the same without mutual reconstruction
    mixed-plain-face-ring11          the same without mutual reconstruction and yaw augmentation
    gan-plain, gan-mutual, gan-aug   samples of the stage-1 generator in RUN_DIR/gan (trained on those
                                     world images), with their w; gan-aug = mutual + Sec. 3.4
    mixed-aug, mixed-mutual          gan-aug / gan-mutual on world images (even steps) and generator
                                     samples (odd steps, with their w): decompose.source = mixed
    mixed-plain-aug                  mixed-aug without mutual reconstruction
    mixed-aug-grey                   mixed-aug with unsup3d's grey light (decompose.light_colour = grey)
    mixed-aug-eps01                  mixed-aug with the swap probability 0.1 (the paper's FFHQ setting)
    mixed-aug-warm(-grad, -lgauge)   mixed-aug with the first v_yaw fit at step 1000 (aug_start), (and the
                                     image-gradient L1 at 1, or the light gauge at 1)
    mixed-pairs-aug-warm(-face-ring11)  mixed-aug-warm with identity pairs (world: two photos of a person;
                                     generator: a sample and its Sec. 3.4 edit): the tiny recipe of the first
                                     session of 2026-12-06, (face-sized layer, ring 1.1). Every arm starts from
                                     ARM_BASE (that session's recipe), not from the recipe as it is now
    world-pairs-face-ring11-head-from-depth(-eps08)  the head surface with pairs, from world-pairs-face-ring11's
                                     weights (with the swapped reconstruction's weight mutual_eps 0.8)
    world-pairs-face-ring11-head-warm  the same two phases in one run (decompose.surface_warmup = 2/3 of --steps)
    world-pairs-face-ring11-head-warm-r3  the same from the best of 3 starts of 300 steps (decompose.restarts): the
                                     tiny recipe until 2026-12-07, at --steps 2250
    world-pairs-face-ring11-head-warm-r3-lightcycle  the same with the view cycle under the next face's light
    gan-pairs-aug                    gan-aug with identity pairs (a sample and its Sec. 3.4 edit)
    world-pairs-face-ring11-head-warm-r3-prior005, -prior008  the recipe now with shape_prior 0.05 / 0.08 (0.066)
    world-pairs-face-ring11-head-warm-r3-uniform  the recipe now on world faces of uniform yaw (pairs across turns)
    world-pairs-face-ring11-head-warm-r3-ssim3, -ssim5, -ssim10, -ssim20  the same + SSIM in the photometric loss
                                     (decompose.ssim_weight 3 / 5 / 10 / 20)
    world-pairs-face-ring11-head-warm-r3-ssim10-cycle90  -ssim10 with the view cycle's yaw to +-90 (the others: 60):
                                     the tiny recipe now, at --steps 4500
    world-pairs-face-ring11-head-warm-r3-ssim10-cycle90-decay  the same with the learning rate falling linearly
                                     over the last third of the steps (decompose.lr_decay 1/3)
    world-pairs-face-ring11-head-warm-r3-ssim10-cycle90-erase  the same (no decay) with half the view head's
                                     inputs partly erased (decompose.view_erase 0.5)
    gan-mutual-recipe, gan-aug-recipe  gan-mutual / gan-aug (the paper's arms, random partners) with the tiny
                                     recipe's image model now (face-sized layer, ring 1.1, head surface after a
                                     depth-surface warm-up of 2/3 of --steps, best of 3 starts)
    gan-aug-recipe-ssim10-cycle90    gan-aug-recipe with the recipe's SSIM (10) and view cycle to +-90 now
    mixed-aug-mconf                  mixed-aug with a learned sigma for the swapped reconstruction only
    gan-aug-unsup3d                  gan-aug with unsup3d's start: random view/light heads, no shape
                                     prior, no pitch gauge (what this project adds, switched off)

Evaluation: held-out world faces with UNIFORM yaw in [-90, 90] (so profiles are well sampled),
metrics of benchmarks/decompose_eval.py, plus a 'constant' row (every face frontal, flat depth).
Resumable: each arm trains in benchmarks/results/cache/decompose/<arm>-<settings hash>/ and keeps its
result there; a rerun skips finished arms. Writes benchmarks/results/decompose.{json,md} and one
decomposition picture per arm (decompose_<arm>.png).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]

from benchmarks.common import RESULTS, write_results
from benchmarks.decompose_eval import (constant_baseline, decomposition_picture, eval_set, evaluate,
                                      yaw_response_png)
from facedis_aug.data.stream import make_source
from facedis_aug.decompose import load_decomposer, train_decomposer
from facedis_aug.decompose.harness import HARNESS_GEOMETRY
from facedis_aug.decompose.sources import alternating_sampler, data_sampler, generator_sampler
from facedis_aug.ops.dataconf import to_dict
from facedis_aug.ops.io import read_json, write_json
from facedis_aug.recipe import load_recipe

# the face-sized face layer: the prior ellipse of a face, and the background layer taken from 1.1 of it (not 1.3)
FACE_LAYER = {"shape_prior_axes": (0.6, 0.8), "background_ring": 1.1}
# the tiny recipe's image model now: the face-sized layer, the head surface (after a depth-surface warm-up: the
# arms' warmup_share), the best of 3 starts; RECIPE_NOW adds identity pairs, the recipe's world-image training
HEAD_R3 = {**FACE_LAYER, "surface": "head", "restarts": 3}
RECIPE_NOW = {**HEAD_R3, "identity_pairs": True}


def recipe_variant(**cfg: Any) -> dict[str, Any]:
    """The tiny recipe's arm (world images in identity pairs, two surface phases) with `cfg` changed."""
    return {"data": "world", "mutual": True, "yaw_aug": False, "warmup_share": 2 / 3, "cfg": {**RECIPE_NOW, **cfg}}

WARM = {"aug_start": 1000, "aug_buffer": 4096}  # mixed-aug-warm's first v_yaw fit
ARMS: dict[str, dict[str, Any]] = {
    "harness": {"data": "harness", "mutual": False, "yaw_aug": False, "cfg": HARNESS_GEOMETRY},
    "world-plain-single-mesh": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": {"layers": False}},
    "world-plain": {"data": "world", "mutual": False, "yaw_aug": False},
    "world-plain-head": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": {"surface": "head"}},
    "world-plain-wide": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": {"channels": 32, "bottleneck": 128}},
    "world-plain-relief003": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": {"depth_residual": 0.03}},
    "world-plain-prior008": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": {"shape_prior": 0.08}},
    "world-plain-fixed-sigma": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": {"confidence": "fixed"}},
    "world-plain-cycle": {"data": "world", "mutual": False, "yaw_aug": False,
                          "cfg": {"confidence": "fixed", "view_cycle": 1.0}},
    "world-plain-cycle01": {"data": "world", "mutual": False, "yaw_aug": False,
                            "cfg": {"confidence": "fixed", "view_cycle": 0.1}},
    "world-plain-cycle03": {"data": "world", "mutual": False, "yaw_aug": False,
                            "cfg": {"confidence": "fixed", "view_cycle": 0.3}},
    "world-plain-grad": {"data": "world", "mutual": False, "yaw_aug": False,
                         "cfg": {"confidence": "fixed", "gradient_weight": 1.0}},
    "world-plain-grad-cycle01": {"data": "world", "mutual": False, "yaw_aug": False,
                                 "cfg": {"confidence": "fixed", "gradient_weight": 1.0, "view_cycle": 0.1}},
    "world-plain-cycle90": {"data": "world", "mutual": False, "yaw_aug": False,
                            "cfg": {"confidence": "fixed", "view_cycle": 1.0, "view_cycle_range": (20.0, 90.0)}},
    # world training images only within |yaw| < 30 (every image from the frontal part of the CASIA-like pose
    # distribution): do the profiles the frontal depth map cannot draw teach the view head to compress?
    "world-plain-frontal": {"data": "world", "mutual": False, "yaw_aug": False, "world": {"frontal_share": 1.0}},
    # world-plain starting from the weights of a decomposer trained on the harness (renderer-made faces: no labels,
    # no photos) for init_steps: is the right yaw scale, once there, kept by the world's photometric loss?
    "world-plain-from-harness": {"data": "world", "mutual": False, "yaw_aug": False, "init": "harness", "init_steps": 800},
    # world-plain with the background layer reaching closer to the face (ring 1.1 of the prior ellipse, not 1.3), with
    # the face-sized prior ellipse (0.6, 0.8) or the recipe's head-sized one: hair and neck, which a frontal depth map
    # cannot turn (the 32 px landscape: they are drawn worse at the true yaw than frontal), left to the still layer
    "world-plain-ring11": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": {"background_ring": 1.1}},
    "world-plain-face": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": {"shape_prior_axes": (0.6, 0.8)}},
    "world-plain-face-ring11": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": FACE_LAYER},
    # the same two image models trained on world images of uniform yaw in [-90, 90] instead of the CASIA-like
    # distribution (85% within 30 degrees): how much of the compression is the training data's thin profile tail,
    # which Sec. 3.4's augmentation is meant to fill? An upper bound for a perfect augmentation, not the method
    "world-plain-uniform": {"data": "world", "mutual": False, "yaw_aug": False, "world": {"pose": "uniform"}},
    "world-plain-face-ring11-uniform": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": FACE_LAYER,
                                        "world": {"pose": "uniform"}},
    "world-plain-face-ring11-wide": {"data": "world", "mutual": False, "yaw_aug": False,
                                     "cfg": {**FACE_LAYER, "channels": 32, "bottleneck": 128}},
    "mixed-aug-warm-face-ring11": {"data": "mixed", "mutual": True, "yaw_aug": True, "cfg": {**WARM, **FACE_LAYER}},
    "mixed-plain-aug-face-ring11": {"data": "mixed", "mutual": False, "yaw_aug": True, "cfg": {**WARM, **FACE_LAYER}},
    "mixed-plain-face-ring11": {"data": "mixed", "mutual": False, "yaw_aug": False, "cfg": FACE_LAYER},
    # the head surface started from the depth surface's trained weights (the view head keeps its reading; the maps'
    # pixels are reinterpreted over longitude and latitude, which start with the same silhouette): released from an
    # oracle-taught yaw, the head surface kept slope 0.50-0.58 where the depth surface fell to 0.38-0.40
    # (view_oracle_head_*.md), so does it climb from an unsupervised start that already reads some yaw?
    "world-plain-head-from-depth": {"data": "world", "mutual": False, "yaw_aug": False, "cfg": {"surface": "head"},
                                    "init": "world-plain", "init_steps": 3000},
    "world-plain-face-ring11-head-from-depth": {"data": "world", "mutual": False, "yaw_aug": False,
                                                "cfg": {**FACE_LAYER, "surface": "head"},
                                                "init": "world-plain-face-ring11", "init_steps": 3000},
    "world-mutual": {"data": "world", "mutual": True, "yaw_aug": False},
    # mutual reconstruction between two photos of the same person (decompose.identity_pairs: a recognition
    # set's identity folders; no pose label): the swapped reconstruction becomes a second view of the same head
    "world-pairs": {"data": "world", "mutual": True, "yaw_aug": False, "cfg": {"identity_pairs": True}},
    "world-mutual-face-ring11": {"data": "world", "mutual": True, "yaw_aug": False, "cfg": FACE_LAYER},
    # the head surface (which from scratch turned its canonical frame away from the camera on seed 1) started from
    # world-pairs-face-ring11's weights, with pairs
    "world-pairs-face-ring11-head-from-depth": {"data": "world", "mutual": True, "yaw_aug": False,
                                                "cfg": {**FACE_LAYER, "surface": "head", "identity_pairs": True},
                                                "init": "world-pairs-face-ring11", "init_steps": 3000},
    "world-pairs-face-ring11-head-from-depth-eps08": {"data": "world", "mutual": True, "yaw_aug": False,
                                                      "cfg": {**FACE_LAYER, "surface": "head", "identity_pairs": True,
                                                              "mutual_eps": 0.8},
                                                      "init": "world-pairs-face-ring11", "init_steps": 3000},
    "world-pairs-face-ring11": {"data": "world", "mutual": True, "yaw_aug": False,
                                "cfg": {**FACE_LAYER, "identity_pairs": True}},
    "world-pairs-face-ring11-head": {"data": "world", "mutual": True, "yaw_aug": False,
                                     "cfg": {**FACE_LAYER, "surface": "head", "identity_pairs": True}},
    # the same two phases inside one run (decompose.surface_warmup): the first 2/3 of the steps on the depth
    # surface, the rest on the head surface from those weights with a fresh optimiser
    "world-pairs-face-ring11-head-warm": {"data": "world", "mutual": True, "yaw_aug": False, "warmup_share": 2 / 3,
                                          "cfg": {**FACE_LAYER, "surface": "head", "identity_pairs": True}},
    # + three starts of 300 steps, going on from the one that reconstructs best (decompose.restarts)
    "world-pairs-face-ring11-head-warm-r3": recipe_variant(),
    # + the view cycle rendered under the next face's light (decompose.view_cycle_light)
    "world-pairs-face-ring11-head-warm-r3-lightcycle": recipe_variant(view_cycle_light="next"),
    # + a robust photometric error, c log(1 + |d| / c) with c = 0.1 (decompose.photometric_robust)
    "world-pairs-face-ring11-head-warm-r3-robust01": recipe_variant(photometric_robust=0.1),
    # the recipe now with a shallower / deeper head (decompose.shape_prior 0.05 / 0.08; the recipe: 0.066)
    "world-pairs-face-ring11-head-warm-r3-prior005": recipe_variant(shape_prior=0.05),
    "world-pairs-face-ring11-head-warm-r3-prior008": recipe_variant(shape_prior=0.08),
    # the recipe now on world faces of uniform yaw: a person's two photos then differ by 60 degrees of yaw on average
    # (casia-like: mostly both frontal), so the swapped reconstruction constrains the maps across large turns, what
    # Sec. 3.4's edits are meant to supply (an upper bound for them, with real pairs instead of generated ones)
    "world-pairs-face-ring11-head-warm-r3-uniform": {**recipe_variant(), "world": {"pose": "uniform"}},
    # + the structural dissimilarity of Monodepth's photometric loss at weight 3 (decompose.ssim_weight): about
    # its 0.85 : 0.15 against the L1, which is twice as large on our [-1, 1] images
    "world-pairs-face-ring11-head-warm-r3-ssim3": recipe_variant(ssim_weight=3.0),
    "world-pairs-face-ring11-head-warm-r3-ssim10": recipe_variant(ssim_weight=10.0),
    "world-pairs-face-ring11-head-warm-r3-ssim5": recipe_variant(ssim_weight=5.0),
    "world-pairs-face-ring11-head-warm-r3-ssim20": recipe_variant(ssim_weight=20.0),
    # + the view cycle's yaw range to the view head's own +-90 (ARM_BASE: +-60), so that it is taught its own
    # profiles too: the profiles' error (|yaw| > 45) is the largest part of the 4500-step arm's
    "world-pairs-face-ring11-head-warm-r3-ssim10-cycle90": recipe_variant(ssim_weight=10.0, view_cycle_range=(20.0, 90.0)),
    # + the learning rate falling linearly to 0 over the head-surface phase (the last third: decompose.lr_decay); the
    # 9000-step decomposer read small world turns to scale (slope 1.00 vs 0.84-0.92 at 4500): a settled optimum sooner?
    "world-pairs-face-ring11-head-warm-r3-ssim10-cycle90-decay": recipe_variant(ssim_weight=10.0, view_cycle_range=(20.0, 90.0),
                                                                                lr_decay=1 / 3),
    # + a random rectangle of half the view head's inputs filled with the mean colour (decompose.view_erase): the view
    # head reads the hair (bald world faces: slope 0.36 against 0.68, contrast_scale_v17.md); made to read the rest too
    "world-pairs-face-ring11-head-warm-r3-ssim10-cycle90-erase": recipe_variant(ssim_weight=10.0, view_cycle_range=(20.0, 90.0),
                                                                                view_erase=0.5),
    # the paper's arms (generator samples, random mutual partners) with the tiny recipe's image model now
    "gan-mutual-recipe": {"data": "gan", "mutual": True, "yaw_aug": False, "warmup_share": 2 / 3, "cfg": HEAD_R3},
    "gan-aug-recipe": {"data": "gan", "mutual": True, "yaw_aug": True, "warmup_share": 2 / 3, "cfg": HEAD_R3},
    # the same with the recipe's photometric terms and view cycle now (SSIM 10, cycle yaw to +-90)
    "gan-aug-recipe-ssim10-cycle90": {"data": "gan", "mutual": True, "yaw_aug": True, "warmup_share": 2 / 3,
                                      "cfg": {**HEAD_R3, "ssim_weight": 10.0, "view_cycle_range": (20.0, 90.0)}},
    "gan-plain": {"data": "gan", "mutual": False, "yaw_aug": False},
    "gan-mutual": {"data": "gan", "mutual": True, "yaw_aug": False},
    "gan-aug": {"data": "gan", "mutual": True, "yaw_aug": True},
    "mixed-mutual": {"data": "mixed", "mutual": True, "yaw_aug": False},
    "mixed-plain-aug": {"data": "mixed", "mutual": False, "yaw_aug": True},
    "mixed-aug-grey": {"data": "mixed", "mutual": True, "yaw_aug": True, "cfg": {"light_colour": "grey"}},
    "mixed-aug-eps01": {"data": "mixed", "mutual": True, "yaw_aug": True, "cfg": {"mutual_eps": 0.1}},
    "mixed-aug": {"data": "mixed", "mutual": True, "yaw_aug": True},  # decompose.source = mixed
    # the first v_yaw fit after the view head has learned something, from a full buffer (aug_start)
    "mixed-aug-warm-grad": {"data": "mixed", "mutual": True, "yaw_aug": True,
                            "cfg": {**WARM, "gradient_weight": 1.0}},
    "mixed-aug-mconf": {"data": "mixed", "mutual": True, "yaw_aug": True, "cfg": {"mutual_confidence": "learned"}},
    "mixed-aug-warm": {"data": "mixed", "mutual": True, "yaw_aug": True, "cfg": WARM},
    # the same with identity pairs: world steps pair two photos of a person, generator steps a sample and its
    # Sec. 3.4 edit (decompose.identity_pairs)
    "mixed-pairs-aug-warm": {"data": "mixed", "mutual": True, "yaw_aug": True, "cfg": {**WARM, "identity_pairs": True}},
    "mixed-pairs-aug-warm-face-ring11": {"data": "mixed", "mutual": True, "yaw_aug": True,
                                         "cfg": {**WARM, **FACE_LAYER, "identity_pairs": True}},
    "gan-pairs-aug": {"data": "gan", "mutual": True, "yaw_aug": True, "cfg": {"identity_pairs": True}},
    # + the light's mean elevation pinned to the camera's height (decompose.light_gauge)
    "mixed-aug-warm-lgauge": {"data": "mixed", "mutual": True, "yaw_aug": True,
                              "cfg": {**WARM, "light_gauge": 1.0}},
    "gan-aug-unsup3d": {"data": "gan", "mutual": True, "yaw_aug": True,
                        "cfg": {"zero_init_heads": False, "shape_prior": 0.0, "pitch_gauge": 0.0}},
}
# ablations of one setting, run on request (not by default)
VARIANTS = {"gan-aug-unsup3d", "mixed-aug", "mixed-aug-warm", "mixed-aug-warm-lgauge", "mixed-aug-warm-grad", "mixed-aug-mconf", "mixed-mutual", "mixed-plain-aug", "mixed-aug-grey", "mixed-aug-eps01", "world-plain-head", "world-plain-wide", "world-plain-relief003", "world-plain-prior008",
            "world-plain-fixed-sigma", "world-plain-cycle", "world-plain-cycle01", "world-plain-cycle03",
            "world-plain-cycle90", "world-plain-grad", "world-plain-grad-cycle01", "world-plain-frontal",
            "world-plain-from-harness", "world-plain-ring11", "world-plain-face-ring11",
            "mixed-aug-warm-face-ring11", "mixed-plain-aug-face-ring11", "world-plain-face-ring11-wide",
            "mixed-plain-face-ring11", "world-plain-face", "world-plain-head-from-depth",
            "world-plain-face-ring11-head-from-depth", "world-pairs", "world-pairs-face-ring11", "world-mutual-face-ring11",
            "mixed-pairs-aug-warm", "mixed-pairs-aug-warm-face-ring11", "gan-pairs-aug",
            "world-pairs-face-ring11-head", "world-pairs-face-ring11-head-from-depth", "world-pairs-face-ring11-head-warm",
            "world-pairs-face-ring11-head-warm-r3", "world-pairs-face-ring11-head-warm-r3-lightcycle",
            "world-pairs-face-ring11-head-from-depth-eps08", "world-pairs-face-ring11-head-warm-r3-robust01",
            "gan-mutual-recipe", "gan-aug-recipe", "world-pairs-face-ring11-head-warm-r3-prior005",
            "world-pairs-face-ring11-head-warm-r3-prior008", "world-pairs-face-ring11-head-warm-r3-uniform",
            "world-pairs-face-ring11-head-warm-r3-ssim3", "world-pairs-face-ring11-head-warm-r3-ssim10",
            "world-pairs-face-ring11-head-warm-r3-ssim5", "world-pairs-face-ring11-head-warm-r3-ssim20",
            "world-pairs-face-ring11-head-warm-r3-ssim10-cycle90", "gan-aug-recipe-ssim10-cycle90",
            "world-pairs-face-ring11-head-warm-r3-ssim10-cycle90-decay", "world-pairs-face-ring11-head-warm-r3-ssim10-cycle90-erase"}
COLUMNS = ["arm", "seeds", "train data", "mutual", "yaw aug", "steps", "s/step", "yaw MAE", "yaw MAE |yaw|>45", "pitch MAE",
           "yaw r", "yaw slope", "r |yaw|<=60", "slope |yaw|<=60", "slope |yaw|<=30", "slope |yaw|<=15", "SIDE", "MAD deg",
           "PSNR dB", "albedo spread"]
METRICS = {"yaw MAE": "yaw_mae", "yaw MAE |yaw|>45": "yaw_mae_profile", "pitch MAE": "pitch_mae", "yaw r": "yaw_r",
           "yaw slope": "yaw_slope", "r |yaw|<=60": "yaw_r_60", "slope |yaw|<=60": "yaw_slope_60",
           "slope |yaw|<=30": "yaw_slope_30", "slope |yaw|<=15": "yaw_slope_15", "SIDE": "side",
           "MAD deg": "mad", "PSNR dB": "psnr", "albedo spread": "albedo_spread"}


# every arm starts from the tiny recipe's decompose settings as they were when the arms were defined (up to the first
# session of 2026-12-06: head-sized layer, depth surface, one start, no pairs), whatever the recipe says now, and
# changes only what it names: so an arm keeps its meaning and its cache key. The recipe now is the arm
# world-pairs-face-ring11-head-warm-r3-ssim10-cycle90 at 4500 steps
ARM_BASE = {"identity_pairs": False, "shape_prior_axes": (0.75, 0.95), "background_ring": 1.3, "surface": "depth",
            "surface_warmup": 0, "restarts": 1, "restart_steps": 300, "aug_start": 500, "aug_buffer": 4096,
            "ssim_weight": 0.0, "view_cycle_range": (20.0, 60.0)}


def arm_config(recipe: Any, arm: str, steps: int) -> Any:
    import dataclasses

    spec = ARMS[arm]
    base = recipe.decompose
    cfg = {**ARM_BASE, **spec.get("cfg", {})}
    if "warmup_share" in spec:
        cfg["surface_warmup"] = round(spec["warmup_share"] * steps)
    return dataclasses.replace(base, iterations=steps, mutual=spec["mutual"], yaw_aug=spec["yaw_aug"],
                               snapshot_every=max(steps, 1), checkpoint_every=max(1, min(500, steps)), **cfg)


def arm_data(recipe: Any, arm: str) -> Any:
    """The recipe's data section with the arm's synthetic-world overrides (ARMS[arm]['world'], if any)."""
    import dataclasses

    world = ARMS[arm].get("world")
    if not world:
        return recipe.data
    return dataclasses.replace(recipe.data, synthetic=dataclasses.replace(recipe.data.synthetic, **world))


# decompose settings added after arms were cached, with the value every earlier arm ran at: left out of the
# cache key at that value, so that earlier arms keep their hash
LATER_SETTINGS = {"light_colour": "rgb", "mutual_confidence": None, "aug_start": 0, "light_gauge": 0.0,
                  "map_cycle": 0.0, "identity_pairs": False, "surface_warmup": 0,
                  "restarts": 1, "restart_steps": 300, "view_cycle_light": "own", "ssim_weight": 0.0, "lr_decay": 0.0,
                  "view_erase": 0.0}


def stable_settings(cfg: Any, later: dict[str, Any]) -> dict[str, Any]:
    """cfg as a dict for a cache key, without the settings of `later` (name: the value cached runs ran at) at
    that value."""
    c = to_dict(cfg)
    for key, old in later.items():
        if key in c and c[key] == old:
            c.pop(key)
    return c


def settings_hash(cfg: Any, data: dict[str, Any]) -> str:
    c = stable_settings(cfg, LATER_SETTINGS)
    if c.get("surface", "depth") == "depth":
        # the frontal depth map ignores surface_range: arms trained before the head surface existed keep their hash
        c.pop("surface", None)
        c.pop("surface_range", None)
    # the arm's data spec, not decompose.source, decides the training images
    c.pop("source", None)
    blob = json.dumps({"cfg": c, "data": data}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def load_G(args: argparse.Namespace) -> tuple[Any, str]:
    if args.quick:
        from facedis_aug.testing import tiny_generator

        return tiny_generator(32, w_dim=32, channels=16), "random-weight tiny generator (quick mode)"
    if not args.gan:
        raise SystemExit("--gan RUN_DIR is needed for the gan-* arms (a run folder with gan/gan.safetensors)")
    from facedis_aug.gan.networks import load_generator

    path = Path(args.gan) / "gan" / "gan.safetensors"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: train a generator first (python -m train_gan --recipe recipes/tiny.yaml --out RUN_DIR)")
    return load_generator(path), str(path)


def data_spec(recipe: Any, arm: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """What an arm trains on (part of its cache key): data kind, world settings, resolution, generator, seed, start."""
    spec = ARMS[arm]
    data = {"data": spec["data"], "world": to_dict(arm_data(recipe, arm).synthetic), "resolution": args.data_resolution,
            "gan": load_G(args)[1] if spec["data"] in ("gan", "mixed") else None, "seed": seed}
    if "init" in spec:
        data.update(init=spec["init"], init_steps=spec["init_steps"])
    return data


def init_run(recipe: Any, arm: str, args: argparse.Namespace, cache: Path, seed: int) -> tuple[Any, Path]:
    """(config, run folder) of the arm whose weights `arm` starts from (ARMS[arm]['init'], 'init_steps' steps)."""
    first = ARMS[arm]["init"]
    if ARMS[first]["data"] not in ("harness", "world"):
        raise ValueError(f"{arm}: an init arm must train on the harness or the world, not {ARMS[first]['data']}")
    cfg0 = arm_config(recipe, first, ARMS[arm]["init_steps"])
    return cfg0, cache / f"{first}-{settings_hash(cfg0, data_spec(recipe, first, args, seed))}"


def train_arm(arm: str, cfg: Any, recipe: Any, args: argparse.Namespace, run_dir: Path, seed: int) -> Path:
    spec = ARMS[arm]
    init = None
    if "init" in spec:  # the arm starts from another arm's weights, trained (and cached) first
        cfg0, dir0 = init_run(recipe, arm, args, run_dir.parent, seed)
        init = train_arm(spec["init"], cfg0, recipe, args, dir0, seed)
    if spec["data"] == "harness":
        from facedis_aug.decompose.harness import ViewHarness

        return train_decomposer(cfg, ViewHarness(cfg.image_size, 64, seed=seed).sampler(cfg.batch), run_dir, seed=seed)
    if spec["data"] in ("world", "mixed"):
        world = data_sampler(make_source(arm_data(recipe, arm), args.data_resolution), cfg.image_size, cfg.batch, seed,
                             cfg.identity_pairs)
        if spec["data"] == "world":
            return train_decomposer(cfg, world, run_dir, seed=seed, init=init)
    G, _ = load_G(args)
    sampler, synthesize = generator_sampler(G, cfg.image_size, cfg.batch, seed)
    if spec["data"] == "mixed":
        sampler = alternating_sampler(world, sampler)
    return train_decomposer(cfg, sampler, run_dir, seed=seed, generator=synthesize if cfg.yaw_aug else None)


def run_arm(arm: str, recipe: Any, args: argparse.Namespace, ev: dict[str, torch.Tensor], cache: Path, out_dir: Path,
            seed: int) -> dict[str, Any]:
    cfg = arm_config(recipe, arm, args.steps)
    data = data_spec(recipe, arm, args, seed)
    run_dir = cache / f"{arm}-{settings_hash(cfg, data)}"
    result_path = run_dir / "result.json"
    if result_path.is_file():
        print(f"{arm}: finished earlier ({run_dir}), skipped")
        result = read_json(result_path)
        if "yaw_response" not in result["metrics"] or any(
                key not in result["metrics"] for key in METRICS.values() if key != "psnr" or "psnr" in result["metrics"]):
            # a metric added since: re-scored from the saved weights (training is not repeated)
            result["metrics"] = evaluate(load_decomposer(run_dir / "decomposer.safetensors"), ev)
            write_json(result_path, result)
    else:
        t0 = time.perf_counter()
        path = train_arm(arm, cfg, recipe, args, run_dir, seed)
        stats = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
        secs = [s["sec"] for s in stats]
        # seconds per step from this process's own log (a resumed run restarts its clock)
        per_step = (secs[-1] - secs[0]) / max(1, stats[-1]["step"] - stats[0]["step"]) if len(stats) > 1 else float("nan")
        model = load_decomposer(path)
        result = {"arm": arm, "metrics": evaluate(model, ev), "s_per_step": per_step, "train_wall_s": time.perf_counter() - t0,
                  "config": to_dict(cfg), "data": data}
        if ARMS[arm]["data"] == "harness":
            result["harness"] = evaluate_harness(model, seed)
        if "init" in ARMS[arm]:  # where the arm started: its init weights on the same faces
            start = load_decomposer(init_run(recipe, arm, args, cache, seed)[1] / "decomposer.safetensors")
            result["init"] = {"arm": ARMS[arm]["init"], "steps": ARMS[arm]["init_steps"], "metrics": evaluate(start, ev),
                              "harness": evaluate_harness(start, seed)}
        write_json(result_path, result)
    if seed == args.seeds[0]:
        decomposition_picture(load_decomposer(run_dir / "decomposer.safetensors"), ev, out_dir / f"{args.name}_{arm}.png")
    return result


def evaluate_harness(model: Any, seed: int) -> dict[str, float]:
    """Yaw scores on 512 held-out harness views (the harness's own truth, yaw in [-60, 60])."""
    from facedis_aug.decompose.harness import ViewHarness, view_scores

    x, truth = ViewHarness(model.cfg.image_size, 64, seed=seed).batch(10**6, 512)
    with torch.no_grad():
        return view_scores(model.eval().estimate_view(x)["yaw"], truth["yaw"])


def _fmt(values: list[float]) -> Any:
    """One seed: the value; several: 'mean +- std' (population std over seeds)."""
    t = torch.tensor(values, dtype=torch.float64)
    if len(values) == 1:
        return float(t[0])
    return f"{float(t.mean()):.3g} +- {float(t.std(unbiased=False)):.2g}"


def _g(values: list[float]) -> str:
    """`_fmt` as text, one seed to 3 significant digits."""
    return str(_fmt(values)) if len(values) > 1 else f"{values[0]:.3g}"


def mean_response(curves: list[dict[str, list]]) -> dict[str, list]:
    """Seeds' `yaw_response` curves (same evaluation faces, so the same bins) averaged bin by bin: mean and std of
    the prediction averaged over seeds (a bin empty in one is empty in all)."""
    out = dict(curves[0])
    for key in ("mean", "std"):
        out[key] = [None if v[0] is None else round(sum(v) / len(v), 3) for v in zip(*(c[key] for c in curves))]
    return out


def row(arm: str, results: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    spec = ARMS.get(arm, {})
    out = {"arm": arm, "seeds": len(results),
           "train data": {"world": "world images", "gan": "generator", "harness": "harness", "mixed": "world + generator"}.get(spec.get("data"), "-"),
           "mutual": spec.get("mutual", "-"), "yaw aug": spec.get("yaw_aug", "-"), "steps": steps,
           "s/step": round(sum(r.get("s_per_step", float("nan")) for r in results) / len(results), 3)}
    for col, key in METRICS.items():
        vals = [r["metrics"][key] for r in results if key in r["metrics"]]
        out[col] = _fmt(vals) if vals else "-"
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gan", default=None, help="run folder whose gan/gan.safetensors the gan-* arms sample")
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "tiny.yaml"), help="decompose and data settings")
    ap.add_argument("--arms", nargs="+", default=[a for a in ARMS if a not in VARIANTS], choices=list(ARMS))
    ap.add_argument("--steps", type=int, default=4000, help="training steps per arm")
    ap.add_argument("--eval-images", type=int, default=512)
    ap.add_argument("--data-resolution", type=int, default=None, help="world images' side (default: the recipe's gan.resolution)")
    ap.add_argument("--name", default="decompose")
    ap.add_argument("--cache-dir", default=str(RESULTS / "cache" / "decompose"))
    ap.add_argument("--out-dir", default=str(RESULTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds per arm (rows give mean +- std)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="recipe overrides for every arm, e.g. decompose.image_size=64 (they enter the cache key)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 steps, 16 eval faces, random generator")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    if args.quick:
        args.steps, args.eval_images, args.name = 3, 16, args.name + "_quick"
    # quick: gan.w_dim is the quick generator's (the recipe checks aug_buffer against it)
    overrides = ["gan.w_dim=32", "decompose.batch=4", "decompose.aug_buffer=64", "decompose.log_every=1"] if args.quick else []
    recipe = load_recipe(args.recipe, overrides + args.set)
    args.data_resolution = args.data_resolution or recipe.gan.resolution
    size = recipe.decompose.image_size
    cache, out_dir = Path(args.cache_dir), Path(args.out_dir)
    ev = eval_set(args.eval_images, args.data_resolution, size, seed=recipe.data.synthetic.seed,
                  num_identities=recipe.data.synthetic.num_identities)
    results = {arm: [run_arm(arm, recipe, args, ev, cache, out_dir, seed) for seed in args.seeds] for arm in args.arms}
    const = {"metrics": {**constant_baseline(ev, recipe.decompose.fov), "psnr": float("nan")}}
    rows = [{**row("constant", [const], 0), "arm": "constant (frontal, flat)", "seeds": "-"}]
    rows += [row(arm, results[arm], args.steps) for arm in args.arms]
    harness_rows = [{"arm": arm, "seeds": len(rs), **{k: _fmt([r["harness"][k] for r in rs]) for k in ("slope", "r", "mae")}}
                    for arm, rs in results.items() if ARMS[arm]["data"] == "harness"]
    init_notes = "".join(
        f" {arm} started from the {rs[0]['init']['arm']} arm's weights after {rs[0]['init']['steps']} steps, which scored "
        f"world yaw slope {_g([r['init']['metrics']['yaw_slope'] for r in rs])}, r {_g([r['init']['metrics']['yaw_r'] for r in rs])}, "
        f"slope |yaw|<=15 {_g([r['init']['metrics']['yaw_slope_15'] for r in rs])}; on its harness slope "
        f"{_g([r['init']['harness']['slope'] for r in rs])}, r {_g([r['init']['harness']['r'] for r in rs])}."
        for arm, rs in results.items() if rs and "init" in rs[0])
    image_spread = float(ev["x"].std(0).mean(0)[ev["face"].float().mean(0) > 0.5].mean())
    gan_arms = [a for a in args.arms if ARMS[a]["data"] in ("gan", "mixed")]
    gan_note = results[gan_arms[0]][0]["data"]["gan"] if gan_arms else "none"
    notes = (f"{'QUICK smoke test: numbers mean nothing. ' if args.quick else ''}"
             f"Decomposer: {size} px, the decompose settings of {Path(args.recipe).name}"
             f"{' with ' + ', '.join(args.set) if args.set else ''} and {args.steps} steps per arm "
             f"(batch {recipe.decompose.batch}). World training images: {args.data_resolution} px, pose "
             f"'{recipe.data.synthetic.pose}'. Generator: {gan_note}. Evaluation: {ev['yaw'].shape[0]} held-out world faces, "
             f"uniform yaw in [-90, 90] ({int((ev['yaw'].abs() > 45).sum())} with |yaw| > 45), rendered at "
             f"{args.data_resolution} px. MAE in degrees; yaw slope = least-squares slope of predicted on true yaw "
             "(1 = right scale); SIDE and MAD (degrees) on the face skin the decomposer covers. s/step: wall "
             "seconds per training step (the machine may have been shared; see the load in the README). "
             "PSNR: reconstruction of the eval faces. Albedo spread: std of the canonical albedo over the eval "
             f"faces, on the face (for scale: the eval images themselves differ by {image_spread:.3f} on their "
             "face pixels, pose and light included). Rows with several seeds give mean +- std over seeds. "
             "The 'harness' arm trains on renderer-made faces (decompose/harness.py); its world numbers say how it "
             "transfers, its own held-out harness scores are: "
             + ("; ".join(f"{h['arm']}: slope {h['slope']}, r {h['r']}, MAE {h['mae']}" for h in harness_rows) or "not run") + "." + init_notes)
    curves = {arm: mean_response([r["metrics"]["yaw_response"] for r in rs]) for arm, rs in results.items() if rs}
    if curves:
        png = yaw_response_png(curves, out_dir / f"{args.name}_yaw_response.png")
        notes += f" Yaw response (mean predicted yaw per 15-degree bin of true yaw, seeds averaged): {png.name}."
    write_results(args.name, rows, "Stage 2 decomposition vs the synthetic world's truth", notes=notes,
                  extra={"results": results}, columns=COLUMNS, out_dir=out_dir)
    return {"rows": rows, "results": results, "eval": ev, "harness": harness_rows}


if __name__ == "__main__":
    main()
