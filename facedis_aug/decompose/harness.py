"""A known-answer harness for stage 2: faces whose view is known, drawn by the decomposer's own renderer.

    harness = ViewHarness(image_size=32, identities=64, seed=0)
    images, truth = harness.batch(step, batch=16)       # truth: dict(yaw, pitch [B] degrees, ...)

Each face is a synthetic-world identity's true canonical albedo, depth and skin mask (the world's own
maps, not a learned model), rendered by `Renderer.reconstruct_layered` at yaw U[-yaw_range, yaw_range],
pitch U[-pitch_range, pitch_range] and a random RGB light (fixed to the camera by default, as in
photos), over a background that stays still in the
image frame (a smooth random colour field per image), as in photos. A decomposer that cannot learn
the yaw of these faces cannot learn it from photos either; one that can is not yet proven on photos
(the world benchmark is for that). Batches are a pure function of (seed, step).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.synthetic import SyntheticFaces
from ..ops.resize import resize_square
from .renderer import Renderer

# The harness's faces are the world's skin only (no hair), at depth / 10: their outline sits 0.03 in front
# of the pivot and the nose about 0.085. A decomposer trained on them gets this face-layer prior (the
# default, head-shaped prior has its outline at the pivot, as the world's heads with their hair do):
# with the outline at 1.0 and the true albedo and opacity, the harness loss's gradient w.r.t. yaw pointed
# away from the true yaw (corr -0.08).
HARNESS_GEOMETRY = dict(face_depth=0.97, shape_prior=0.05)


class ViewHarness:
    def __init__(self, image_size: int = 32, identities: int = 64, seed: int = 0, yaw_range: float = 60.0,
                 pitch_range: float = 10.0, fov: float = 10.0, background: float = 0.6,
                 light_frame: str = "camera"):
        if identities < 1:
            raise ValueError(f"identities must be >= 1, got {identities}")
        self.image_size, self.seed = int(image_size), int(seed)
        self.yaw_range, self.pitch_range = float(yaw_range), float(pitch_range)
        self.background = float(background)  # amplitude of the still colour field; 0 = flat grey
        if light_frame not in ("camera", "canonical"):
            raise ValueError(f"light_frame must be 'camera' or 'canonical', got {light_frame!r}")
        self.light_frame = light_frame  # camera: a still light the head turns under, as in photos
        self.renderer = Renderer(image_size, fov)
        world = SyntheticFaces(identities, 64, seed=seed, num_identities=identities)
        with torch.no_grad():
            maps = world.world.render(world.params(torch.arange(identities)), with_maps=True)
        mask = maps["mask"].float()[:, None]
        # world units: camera 10 away, the face's front 9-10, so depth / 10 puts it about 1 away (the
        # renderer's rotation centre) with the world's relief; off the face the depth does not matter
        depth = torch.where(mask > 0, maps["depth"][:, None] / 10.0, torch.ones_like(mask))
        self.albedo = resize_square(maps["albedo"].float() * 2 - 1, image_size)  # [N, 3, S, S]
        self.depth = resize_square(depth, image_size)[:, 0]  # [N, S, S]
        self.alpha = resize_square(mask, image_size)[:, 0]  # [N, S, S] soft at the edge after area averaging

    def __repr__(self) -> str:
        return (f"ViewHarness(image_size={self.image_size}, identities={self.albedo.shape[0]}, seed={self.seed}, "
                f"yaw_range={self.yaw_range}, pitch_range={self.pitch_range})")

    @torch.no_grad()
    def batch(self, step: int, batch: int) -> tuple[Tensor, dict[str, Tensor]]:
        """(images [B, 3, S, S] in [-1, 1], truth dict: yaw, pitch [B] degrees, light [B, 8], identity [B])."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 7)
        u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
        ident = torch.randint(0, self.albedo.shape[0], (batch,), generator=g)
        view = torch.zeros(batch, 6)
        view[:, 0] = (u(batch) * 2 - 1) * self.pitch_range
        view[:, 1] = (u(batch) * 2 - 1) * self.yaw_range
        light = torch.cat([0.2 + 0.3 * u(batch, 1).expand(batch, 3) + 0.05 * u(batch, 3),
                           0.4 + 0.4 * u(batch, 1).expand(batch, 3) + 0.05 * u(batch, 3),
                           (u(batch, 2) * 2 - 1) * 0.7], 1).clamp(max=1.0)
        s = self.image_size
        background = F.interpolate((torch.rand(batch, 3, 4, 4, generator=g) * 2 - 1) * self.background, size=(s, s), mode="bicubic",
                                   align_corners=False).clamp(-1, 1)
        out = self.renderer.reconstruct_layered(self.albedo[ident], self.depth[ident], self.alpha[ident], light, view,
                                                background, camera_light=self.light_frame == "camera")
        truth = {"yaw": view[:, 1], "pitch": view[:, 0], "light": light, "identity": ident}
        return out.image.clamp(-1, 1), truth

    def sampler(self, batch: int):
        """A stage-2 sampler (step -> (images, None)) over this harness, for `train_decomposer`."""
        return lambda step: (self.batch(step, batch)[0], None)


def view_scores(pred_yaw: Tensor, true_yaw: Tensor) -> dict[str, float]:
    """Least-squares slope of predicted on true yaw (1 = right scale, 0 = constant), Pearson r and MAE."""
    p, t = pred_yaw.double(), true_yaw.double()
    tc, pc = t - t.mean(), p - p.mean()
    r = float((tc @ pc) / (tc.norm() * pc.norm()).clamp(min=1e-12))
    return {"slope": float((tc @ pc) / (tc @ tc).clamp(min=1e-12)), "r": r, "mae": float((p - t).abs().mean())}
