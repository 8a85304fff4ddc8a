"""Stage 2 settings (unsup3d-style decomposition, paper Sec. 3.2 and 3.4).

Each field names where its default comes from: "unsup3d" = Wu, Rupprecht and Vedaldi, CVPR 2020
(settings only, see DESIGN.md), "paper" = Zheng et al. CVPR 2021, "ours" = a choice of this project.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Optional


@dataclass
class DecomposerConfig:
    """Constructor arguments of `Decomposer` (its networks and image model), stored beside its weights.
    `DecomposeConfig` (the recipe's `decompose` section) adds the stage's training settings to these."""

    image_size: int = 64  # the decomposer's input side in pixels (paper Sec. 4: generations resized to 64)

    # --- image model ---
    # a face layer in the canonical frame (albedo, depth, soft opacity), rotated by the view and
    # alpha-composited over a background layer in the image frame that does not rotate (ours). False:
    # unsup3d's single mesh, background included, which suppresses the learned yaw 6-7x on faces in
    # front of a still background (the stage-2 diagnosis: slope 0.034-0.044 vs 0.40 when the background
    # turns too). World images, 3000 steps: yaw r 0.79 vs 0.55, normal error 18.6 vs 48.9 degrees.
    layers: bool = True
    # layered: the learned relief is depth_residual * tanh(raw) on top of the convex prior (below), so
    # the face cannot go hollow (needs shape_prior > 2 depth_residual): an offset the net can undo was
    # undone in a few hundred steps (the face went concave and yaw came out reversed, r -0.85).
    # The relief and the yaw trade off (a flatter face turned further looks alike). World images (3000
    # steps, camera light): yaw r 0.85 / slope 0.18 at 0.02, 0.75 / 0.10 at 0.01, so 0.02 stays. On the
    # harness (renderer-made faces) 0.02 lets the face flatten and the yaw run past the truth (slope
    # 0.88 at 300 steps, 1.46 at 800, the loss rising), 0.01 is stable (0.72 / 0.82 / 0.88 at 300 / 500 /
    # 800 steps, r 0.998): the harness test runs at 0.01.
    depth_residual: float = 0.02
    # layered: depth of the face layer's outline; the view rotates about depth 1. The face layer covers
    # the head, hair included (the world's heads, photos), and a head turns about its own centre, so
    # its outline stays near the pivot while the face in front of it moves. With the outline at 0.97
    # (relief 0.05) the whole silhouette slid sideways under a turn, which the world's still head
    # outline contradicts: given the world's own albedo, the layered loss was lowest at yaw 0-5 for
    # world faces at true yaw 10-45; at 1.0 (relief 0.066) at 10 / 15 / 25 for 10 / 20 / 30
    # (benchmarks/results/yaw_landscape.md). World images, 3000 steps: yaw r 0.885 / slope 0.225 vs
    # 0.851 / 0.167 at 0.97 / 0.05. The harness's skin-only faces keep 0.97 (harness.HARNESS_GEOMETRY).
    face_depth: float = 1.0
    # layered: the face opacity is sigmoid(alpha_prior_logit * (1 - rho) + alpha_residual * tanh(raw)),
    # rho the ellipse radius of shape_prior_axes: opaque in the middle whatever the net says, free near
    # the ellipse, transparent far from it, so the background layer cannot take the face over.
    alpha_prior_logit: float = 6.0
    alpha_residual: float = 4.0
    # the face layer's albedo, depth and opacity are mirror-symmetric by construction (ours; unsup3d only
    # encourages it with the flip branch, whose learned confidence lets each image keep an asymmetric
    # canonical face: albedo asymmetry 0.08 on the harness after 200 steps). On world images, 1500 steps,
    # on and off measured alike (yaw r 0.74 / 0.75, slope 0.094 / 0.087).
    symmetric: bool = True
    # layered: the background layer is the image's own pixels beyond this radius of the prior ellipse,
    # smoothly filled in towards the middle (ours). A learned background net (an encoder-decoder at
    # S/4) left the harness's textured backgrounds badly drawn (PSNR 19) and the yaw slope at 0.23 after
    # 300 steps; filling from every pixel the face does not cover explained the face itself (the view
    # ran to 90 degrees); this ring gave 0.29 (r 0.96) (harness, 32 px, 300 steps, fixed sigma). For
    # scale: on a flat grey background the learned net reached 0.54 in 400 steps.
    background_ring: float = 1.3

    # layered: the face layer's canonical map. "depth": a frontal depth map (unsup3d), which draws only
    # what a frontal view sees, so the side of a turned head is squeezed into the pixels at the
    # silhouette: given the world's own depth and albedo, the layered loss for world faces at true yaw
    # 45 / 60 / 75 / 90 was lowest at 35-40 / 20-35 / 0-15 / 0 (benchmarks/results/yaw_landscape.md,
    # flat and world light). "head": a radius over longitude and latitude about the rotation centre
    # (Renderer's module doc), on an ellipsoid of semi-axes shape_prior_axes (image) and shape_prior
    # (depth), +- depth_residual; its sides have map pixels of their own (ours).
    surface: Literal["depth", "head"] = "depth"
    # head: the map's (longitude, latitude) half-ranges in degrees; beyond 90 of longitude it covers some
    # of the back of the head (seen at profiles), opaque only where the opacity net makes it so (ours)
    surface_range: tuple[float, float] = (120.0, 90.0)

    # --- camera and geometry ---
    # where the light is fixed: "camera" (photos and the synthetic world: the head turns under a still
    # light) or "canonical" (unsup3d: the light turns with the face). With the canonical light the light
    # head explained part of every turn: its dx correlated -0.55 with the true yaw (true dx independent)
    # and the yaw slope stalled at 0.43; given the true light, the same net reached 0.78-0.91 (harness,
    # 32 px, 300 steps, fixed sigma).
    light_frame: Literal["camera", "canonical"] = "camera"
    fov: float = 10.0  # perspective field of view in degrees (unsup3d)
    min_depth: float = 0.9  # canonical depth range, world units (unsup3d)
    max_depth: float = 1.1
    rot_range: float = 90.0  # |yaw| limit in degrees (ours: profiles need 90; unsup3d uses 60)
    pitch_range: float = 60.0  # |pitch| limit in degrees (unsup3d)
    roll_range: float = 60.0  # |roll| limit in degrees (unsup3d)
    # |tx|, |ty| limit in world units; tz is fixed at 0. unsup3d's 0.1 is more than a half image width
    # at depth 1: a turned head's sideways shift was then explained by tx and the learned yaw came out
    # reversed (harness: slope -0.11, r -0.92 after 600 steps; range 0: +0.15, r +0.92 after 300). Aligned crops barely move: the
    # synthetic world's heads move by 0.06 half-widths = 0.005 (ours).
    xy_translation_range: float = 0.01
    # convex start for the depth (ours; unsup3d has none): an ellipsoid cap of this relief (world units)
    # and these semi-axes (fractions of the half image). Single mesh: added to the depth net's raw output,
    # which learns the residual. It breaks the hollow-face ambiguity (a concave face turned by -yaw looks
    # like a convex one turned by +yaw: without it the tiny runs learned yaw with the wrong sign) and
    # gives yaw a first-order effect on the image from the first step. 0 turns it off. Layered: 0.066 is
    # the world head's depth semi-axis (0.84-0.94 head units, 0.073 renderer units each at depth 1);
    # world images, 3000 steps: slope 0.225 at 0.066, 0.195 at 0.08.
    shape_prior: float = 0.066
    shape_prior_axes: tuple[float, float] = (0.6, 0.8)  # (horizontal, vertical) semi-axes

    # --- network widths (unsup3d's at the defaults; narrow them for CPU recipes) ---
    # the view and light heads' last layer starts at zero (ours): the canonical frame starts frontal and
    # the light neutral. From a random start the frame drifted to a constant tilted pose (measured:
    # pitch -43 degrees after 500 steps) that the symmetry loss does not undo.
    zero_init_heads: bool = True
    channels: int = 64  # base channels of the albedo and depth encoder-decoders (unsup3d)
    bottleneck: int = 256  # their bottleneck size (unsup3d)
    head_channels: int = 32  # base channels of the view and light encoders (unsup3d)
    conf_channels: int = 64  # base channels of the confidence nets (unsup3d)
    conf_bottleneck: int = 128  # their bottleneck size (unsup3d)

    # --- confidence and light outputs ---
    # sigma >= conf_floor (image units, in [-1, 1]): without a floor the confidence net won by giving up,
    # sigma -> 1e-9 on pixels it could match exactly, its gradient (7.8) drowning the others (0.005) and
    # the learned yaw slope falling 1.19 -> 0.17 between steps 200 and 600 (ours; unsup3d has none)
    conf_floor: float = 0.05
    # fixed: sigma = 1, a plain L1 (ours). World images, 3000 steps, 3 seeds: yaw slope 0.288 fixed vs 0.224
    # learned (MAE 28.6 vs 31.7, depth alike; benchmarks/results/decompose_fixed_sigma_seeds.md); on the
    # harness alike (0.374 vs 0.390). The tiny recipe uses "fixed"; "learned" stays the default for recipes
    # with the perceptual loss, whose confidence maps unsup3d relies on and we have not measured without.
    confidence: Literal["learned", "fixed"] = "learned"
    # the mutual (swapped) reconstruction's sigma (Sec. 3.2 gives it a net of its own): None = as `confidence`.
    # Learned, it can let pixels where a partner's albedo cannot match weigh less (ours: see decompose_gan50_mconf.md)
    mutual_confidence: Optional[Literal["learned", "fixed"]] = None
    # ambient and diffuse intensities live in [light_floor, 1]: with mutual reconstruction they died at
    # ~1e-9 and the render went black (ours; unsup3d: [0, 1])
    light_floor: float = 0.05
    # "rgb" (ours): ambient and diffuse per colour channel; "grey" (unsup3d): one intensity each, the three
    # channels tied. Mixed source, mutual + yaw aug, 3000 steps, one seed: grey r 0.83 / slope 0.22 vs rgb
    # 0.81 / 0.21, and the albedo collapses under mutual reconstruction alike (spread 0.082 vs 0.084;
    # 0.29 without mutual) (benchmarks/results/decompose_gan50.md)
    light_colour: Literal["rgb", "grey"] = "rgb"

    def __post_init__(self) -> None:
        s = self.image_size
        if s < 16 or s & (s - 1):
            raise ValueError(f"image_size must be a power of two >= 16, got {s}")
        if not 0.0 < self.fov < 90.0:
            raise ValueError(f"fov must be in (0, 90) degrees, got {self.fov}")
        if not 0.0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        for name in ("rot_range", "pitch_range", "roll_range"):
            if not 0.0 <= getattr(self, name) <= 90.0:
                raise ValueError(f"{name} must be in [0, 90] degrees, got {getattr(self, name)}")
        for name in ("channels", "bottleneck", "head_channels", "conf_channels", "conf_bottleneck"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.shape_prior < 0 or self.shape_prior >= (self.max_depth - self.min_depth) / 2:
            raise ValueError(f"shape_prior must be in [0, (max_depth - min_depth) / 2), got {self.shape_prior}")
        if len(self.shape_prior_axes) != 2 or not all(0.0 < a <= 1.5 for a in self.shape_prior_axes):
            raise ValueError(f"shape_prior_axes must be two semi-axes in (0, 1.5], got {self.shape_prior_axes}")
        if self.layers:
            if not 0.0 < 2 * self.depth_residual < self.shape_prior:
                raise ValueError(f"layers need 0 < 2 * depth_residual < shape_prior (a face that cannot go hollow), "
                                 f"got depth_residual {self.depth_residual}, shape_prior {self.shape_prior}")
            if not 1.0 <= self.background_ring:
                raise ValueError(f"background_ring must be >= 1 (outside the face ellipse), got {self.background_ring}")
        if self.surface not in ("depth", "head"):
            raise ValueError(f"surface must be 'depth' or 'head', got {self.surface!r}")
        if self.surface == "head" and not self.layers:
            raise ValueError("surface 'head' needs layers: true (the single mesh is a frontal depth map)")
        if len(self.surface_range) != 2 or not all(0.0 < a <= 180.0 for a in self.surface_range):
            raise ValueError(f"surface_range must be (lon, lat) half-ranges in (0, 180] degrees, got {self.surface_range}")
        if self.layers and not 0.5 < self.face_depth - self.shape_prior - self.depth_residual < self.face_depth <= 1.5:
            raise ValueError(f"face_depth must be in (0.5 + shape_prior + depth_residual, 1.5], got {self.face_depth}")
        if self.mutual_confidence not in (None, "learned", "fixed"):
            raise ValueError(f"mutual_confidence must be None, 'learned' or 'fixed', got {self.mutual_confidence!r}")
        if self.conf_floor <= 0 or not 0.0 <= self.light_floor < 1.0:
            raise ValueError(f"need conf_floor > 0 and light_floor in [0, 1); got {self.conf_floor}, {self.light_floor}")

    def network(self) -> "DecomposerConfig":
        """Only the `Decomposer`'s own fields (a `DecomposeConfig` drops its training settings)."""
        return DecomposerConfig(**{f.name: getattr(self, f.name) for f in fields(DecomposerConfig)})


@dataclass
class DecomposeConfig(DecomposerConfig):
    """Stage 2 settings: the decomposer's own (`DecomposerConfig`) and how it is trained."""

    # training images: the stage-1 generator's samples with their w (paper), the recipe's data
    # itself (folder or synthetic world; no w, so no yaw augmentation) (ours), or "mixed": even steps
    # the data, odd steps the generator (with w and the yaw augmentation) (ours)
    source: Literal["generator", "data", "mixed"] = "generator"

    # --- optimisation ---
    batch: int = 64  # images per step (unsup3d)
    iterations: int = 75000  # steps; ~30 epochs of 160k images at batch 64 (unsup3d's schedule)
    lr: float = 1e-4  # Adam learning rate (unsup3d)
    # ours: the share of the last steps over which the learning rate falls linearly towards 0 (0: constant, unsup3d).
    # The tiny recipe's arm at 1/3 (the head-surface phase), world images, 4500 steps, 3 seeds: slope within |yaw| 30
    # 0.881 vs 0.872 constant, overall 0.648 vs 0.710, MAE 14.0 vs 12.1 (decompose_decay_seeds.md): not used
    lr_decay: float = 0.0

    # --- losses ---
    # target pixels at |x| >= this (clamped generator samples, uncovered -1 borders) are left out of
    # the photometric loss: they can be matched exactly, which is what made sigma collapse (ours)
    saturated: float = 0.995
    flip_weight: float = 0.5  # weight of the horizontally flipped (symmetry) branch (unsup3d)
    # weight of an L1 between the image gradients of reconstruction and target (`losses.gradient_l1`),
    # both branches (ours; unsup3d's perceptual loss plays this part, and it needs VGG16 weights we
    # cannot download). Given the world's own depth, a 3x3-blurred albedo moved the layered loss's
    # preferred yaw for a true 30 degrees to 25, a 5x5 blur to 0 (yaw_landscape.md): sharp features
    # carry the pose. 0 turns it off. World images, 3000 steps, fixed confidence, weight 1: yaw slope
    # 0.195 vs 0.288, r 0.78 vs 0.88 (decompose_grad.md): worse, so off.
    gradient_weight: float = 0.0
    # weight of the structural dissimilarity (1 - SSIM) / 2 over 3x3 windows of both branches (`losses.dssim`;
    # ours, after Monodepth's 0.85 SSIM + 0.15 L1). The recipe's decomposers reconstruct world faces without eyes,
    # mouth or nose (a featureless head: decompose_recipe_uniform_s0.png, world_ablation pictures), which an L1
    # tolerates and SSIM does not. The tiny recipe's arm on world images, weight 10, 4500 steps, 3 seeds: eyes and mouth
    # in the albedo, yaw slope 0.685 / r 0.939 / MAE 12.8 / pitch MAE 4.05 (decompose_ssim10_4500_seeds.md; without it at
    # 2250 steps 0.541 / 0.87 / 19.8 / 5.45); at 1500 steps the yaw reads flatter (0.42 vs 0.55, seed 0), so it needs a long
    # run: off by default (the tiny recipe is too short), on in the showcase recipe. 0 turns it off.
    ssim_weight: float = 0.0
    # a robust photometric error (ours): each pixel's |diff| becomes c * log(1 + |diff| / c), the L1 for errors
    # well under c that grows only logarithmically above it, so pixels the image model cannot draw at the true
    # view (hair and neck that turn less than the face, the background layer's seam) pull the view less.
    # 0: unsup3d's plain (confidence-weighted) L1. Given a trained decomposer's own maps (the tiny recipe's,
    # seed 1), log(1 + |d| / 0.1) moved the preferred yaw of world faces at true 60 / 75 / 90 to 40 / 35 / 45
    # from 25 / 25 / 35 under the L1, and not at 10-45 (yaw_landscape_v13s1_cauchy01.md, _l1.md); trained with
    # c = 0.1 (world images, the recipe's arm, 2250 steps, seed 0) it lost the yaw: slope 0.028, r 0.15, the
    # canonical frame turned to the back of the head (decompose_robust01_s0.md; the L1: 0.539, r 0.881). Off.
    photometric_robust: float = 0.0
    # view cycle (ours): the model's own face layer, detached, re-rendered over its background at a random
    # known (pitch, yaw) in +-view_cycle_range, must be read back at that view by the view head; the
    # weight of the L1 in units of the view ranges. It ties the view head's scale to the face layer's
    # geometry, which the photometric loss alone leaves compressed (world yaw slope 0.63 even at
    # |yaw| <= 15). Only the view head gets its gradient. 0 turns it off. World images, 3000 steps, fixed
    # confidence: weight 0.1, 3 seeds: slope 0.310 +- 0.009 vs 0.288 +- 0.005 without, MAE 27.7 vs 28.6,
    # depth alike (decompose_cycle01_seeds.md). Larger weights lose the yaw: at 0.3 the view head
    # answered frontal for every face (slope 0, decompose_cycle03.md), at 1 the canonical frame turned
    # away from the camera (slope 0.012, decompose_cycle.md), so 0.1 sits near a cliff.
    view_cycle: float = 0.0
    view_cycle_range: tuple[float, float] = (20.0, 60.0)  # (pitch, yaw) half-ranges in degrees
    # the light the view cycle renders under: "own" (the face's) or "next" (the next face's in the batch), so that
    # the view head must read the same view under another light (ours): the tiny recipe's view head read a true
    # yaw of 30 as 24.0 lit from the left and 17.6 from the right (benchmarks/results/view_light_tiny_s1.md)
    view_cycle_light: Literal["own", "next"] = "own"
    # ours: during training, the share of images whose view-head input has a random rectangle (each side a quarter to
    # a half of the image's) filled with the image's mean colour; the maps, the light and the target see the whole
    # image. On bald world faces the main job's view head reads turns at half their size (slope 0.36 against 0.68
    # with hair; the regressor 1.00 on both, contrast_scale_v17.md): it reads the hair; this makes it read what is left.
    # The tiny recipe's arm at 0.5, world images, 4500 steps, 3 seeds: slope 0.703 vs 0.710, within |yaw| 30 0.885 vs
    # 0.872 (decompose_erase_seeds.md); bald faces 0.48 / 0.39 vs 0.41 / 0.41 (seeds 0 / 1); in v17's bundle the regressor
    # keeps [-6.1, 0] / [-3.0, 0] vs [-6.6, +6.5] / [-2.4, +6.0] (table2_tiny_v17_erase*.md): not used
    view_erase: float = 0.0
    # map cycle (ours): the same renders of the model's own face layer at known views must decompose back to
    # the maps they were drawn from (L1 on albedo, depth in units of depth_residual, opacity; only the albedo
    # and depth nets get its gradient), so that a canonical map cannot follow the view. 0 turns it off. Taught
    # 1000 steps, then released (bench_view_oracle, view_oracle_mapcycle_*.md), weight 1: yaw slope 0.40 / 0.48 after
    # 250 / 500 steps on the face-sized layer (the stage's own loss 0.47 / 0.41), 0.28 / 0.22 on the head-sized one
    # (0.34 / 0.33), albedo spread 0.17 vs 0.25: it makes the maps blind to the image rather than to the view; off.
    map_cycle: float = 0.0
    # flip symmetry fixes the canonical yaw and roll but not the pitch: any tilted frame is as
    # symmetric. This weight times (batch-mean pitch / 10 degrees)^2 pins the canonical pitch to the
    # data's mean pitch (ours; measured: with mutual reconstruction the frame drifted to +15 degrees
    # without it). 0 turns it off (unsup3d).
    pitch_gauge: float = 1.0
    # nothing else fixes the light's elevation either: the flip symmetry pins its horizontal direction, but a
    # light from below and a depth tilted to match draw the same image. This weight times (batch-mean dy /
    # 0.1)^2 pins the mean vertical light direction to the camera's height (ours). The tiny recipe's
    # decomposer without it: mean dy +0.53 (from below) against the world's -0.09, dy uncorrelated with the
    # world's (0.03) where dx is learned (0.67) (benchmarks/results/yaw_landscape_mixed_warm.md). At 1 (one seed) the
    # mean went to 0 but per face dy anti-correlated with the world's (-0.27) and the world yaw read r 0.78 vs 0.826,
    # slope 0.21 vs 0.204 (decompose_gan50_lgauge.md, yaw_landscape_lgauge.md): no gain, so off. 0 turns it off.
    light_gauge: float = 0.0
    perceptual_weight: float = 1.0  # VGG16 relu3_3 perceptual loss weight (unsup3d); 0 turns it off
    vgg_weights: Optional[str] = None  # local VGG16 weights file; absent: perceptual loss skipped (ours)
    mutual: bool = True  # mutual reconstruction on/off (paper Sec. 3.2)
    mutual_eps: float = 0.5  # weight of the swapped reconstruction: 0.5 CASIA, 0.1 FFHQ (paper Sec. 4.2)
    # the mutual partner of image i is the other image of its pair (2k, 2k+1), a second photo of the same
    # person, not image i - 1 (ours; the paper swaps with any other face): the data's batches come as
    # same-identity pairs, as a recognition set's identity folders give them (`sources.identity_pair_sampler`:
    # the synthetic world's identity, a folder's sub-folder, a RecordIO label), and in generator batches, once
    # v_yaw is fitted, image 2k+1 is Sec. 3.4's edit of image 2k (instead of aug_share). The canonical maps read
    # off one view must then draw the other at its own view, which a yaw compressed to suit one photo's blurred
    # maps does worse.
    identity_pairs: bool = False
    # surface 'head' only: train the first surface_warmup steps on the frontal depth surface, then go on from
    # those weights on the head surface with a fresh optimiser (ours). The view head keeps its reading and the
    # maps' pixels are reinterpreted over longitude and latitude, which start with the same silhouette. From
    # scratch the head surface turned its canonical frame away from the camera on 1 of 2 seeds (world images with
    # pairs, slope 0.611 / 0.092); started from the depth surface's 3000-step weights, 1500 more steps reached
    # slope 0.627 +- 0.025, r 0.911 on 2 seeds (decompose_pairs_head_seeds.md). 0: the head surface from step 0
    surface_warmup: int = 0
    # a label-free guard against a start that loses the yaw (ours): train `restarts` starts (start k: its own
    # initialisation and data order) for restart_steps steps each, score each by its reconstruction loss on the same
    # fixed batches, and go on from the best. A start whose canonical frame looks away from the camera, or whose
    # view head stays frontal, draws the faces worse from the first few hundred steps: world images with pairs, the
    # face-sized layer, total loss over steps 300-400: 0.261 for the seed that lost the yaw (slope 0.06) against
    # 0.233 / 0.239 for the two that kept it (0.47 / 0.49); the head surface from scratch: 0.263 lost vs 0.229 kept
    # (benchmarks/results/decompose_starts.md).
    # 1: no restarts; a run started from other weights (train_decomposer's init) has none either
    restarts: int = 1
    restart_steps: int = 300

    # --- yaw augmentation (paper Sec. 3.4) ---
    yaw_aug: bool = True  # train on G(w') extrapolated along v_yaw (needs w and a generator)
    aug_every: int = 10  # re-estimate v_yaw every this many steps (paper)
    aug_momentum: float = 0.995  # moving-average momentum of v_yaw (paper)
    aug_range: float = 10.0  # s ~ U[-aug_range, aug_range] in Eq. 4 (paper)
    aug_share: float = 0.25  # share of each batch replaced by augmented samples (ours; paper silent)
    aug_buffer: int = 4096  # recent (w, yaw) pairs kept for the least-squares fit; must exceed dim(w) (ours)
    # first v_yaw fit at this step (ours; paper silent): the first fit seeds the moving average, which then
    # keeps 0.995^k of it after k refreshes, so a fit made while the view head still reads noise steers the
    # augmentation for the whole of a short run. 0: fit as soon as the buffer holds more than d pairs
    aug_start: int = 0

    # --- bookkeeping ---
    log_every: int = 10  # steps between stats.jsonl lines
    snapshot_every: int = 1000  # steps between PNG snapshots
    checkpoint_every: int = 1000  # steps between resumable checkpoints

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batch", "aug_every", "aug_buffer", "log_every", "snapshot_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.aug_start < 0:
            raise ValueError(f"aug_start must be >= 0, got {self.aug_start}")
        if self.restarts < 1 or self.restart_steps < 1:
            raise ValueError(f"restarts and restart_steps must be >= 1, got {self.restarts}, {self.restart_steps}")
        if self.surface_warmup < 0 or (self.surface_warmup > 0 and self.surface != "head"):
            raise ValueError(f"surface_warmup must be >= 0 and needs surface 'head' (the depth surface is what it "
                             f"warms up on), got {self.surface_warmup} with surface {self.surface!r}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if not 0.0 <= self.view_erase <= 1.0:
            raise ValueError(f"view_erase must be in [0, 1] (a share of the images), got {self.view_erase}")
        if not 0.0 <= self.lr_decay <= 1.0:
            raise ValueError(f"lr_decay must be in [0, 1] (a share of the steps), got {self.lr_decay}")
        if not 0.0 < self.saturated <= 1.0:
            raise ValueError(f"saturated must be in (0, 1], got {self.saturated}")
        if self.gradient_weight < 0 or self.ssim_weight < 0:
            raise ValueError(f"gradient_weight and ssim_weight must be >= 0, got {self.gradient_weight}, {self.ssim_weight}")
        if self.photometric_robust < 0:
            raise ValueError(f"photometric_robust must be >= 0 (0: plain L1), got {self.photometric_robust}")
        if self.map_cycle < 0:
            raise ValueError(f"map_cycle must be >= 0, got {self.map_cycle}")
        if self.view_cycle < 0 or len(self.view_cycle_range) != 2 or not (
                0.0 <= self.view_cycle_range[0] <= self.pitch_range and 0.0 <= self.view_cycle_range[1] <= self.rot_range):
            raise ValueError(f"need view_cycle >= 0 and view_cycle_range (pitch, yaw) within (pitch_range, rot_range); "
                             f"got {self.view_cycle}, {self.view_cycle_range}")
        if self.view_cycle_light not in ("own", "next"):
            raise ValueError(f"view_cycle_light must be 'own' or 'next', got {self.view_cycle_light!r}")
        if self.pitch_gauge < 0 or self.light_gauge < 0:
            raise ValueError(f"pitch_gauge and light_gauge must be >= 0, got {self.pitch_gauge}, {self.light_gauge}")
        for name in ("mutual_eps", "aug_momentum", "aug_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mutual and self.batch < 2:
            raise ValueError("mutual reconstruction needs batch >= 2 (partners come from the batch)")
        if self.identity_pairs and (self.batch % 2 or not self.mutual):
            raise ValueError(f"identity_pairs needs mutual: true and an even batch (the pairs are mutual partners), "
                             f"got mutual {self.mutual}, batch {self.batch}; or set identity_pairs: false")
