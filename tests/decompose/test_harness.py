"""Stage 2 against a known answer: faces of known yaw drawn by the renderer over a still background
(`decompose.harness`). The decomposer must learn their yaw with the right sign and a useful scale, and
a learned confidence must not end worse than a fixed one (it used to swallow the loss)."""
from __future__ import annotations

import pytest
import torch

from facedis_aug.decompose import DecomposeConfig, Decomposer, Renderer, decomposition_loss
from facedis_aug.decompose.harness import HARNESS_GEOMETRY, ViewHarness, view_scores

# the tiny recipe's widths and batch, the harness faces' own geometry; they need no mutual reconstruction
# depth_residual 0.01: on these renderer-made faces the default 0.02 lets the face flatten and the yaw
# overshoot after ~400 steps (slope 1.46 by 800; see DecomposeConfig.depth_residual)
TINY = dict(image_size=32, channels=16, bottleneck=64, head_channels=32, conf_channels=8, conf_bottleneck=32,
            batch=16, lr=5e-4, perceptual_weight=0.0, mutual=False, yaw_aug=False, depth_residual=0.01,
            **HARNESS_GEOMETRY)


def _train(steps: int, background: float, **kw) -> dict[str, float]:
    torch.manual_seed(0)
    cfg = DecomposeConfig(**{**TINY, **kw})
    harness = ViewHarness(32, identities=32, seed=0, background=background)
    model, renderer = Decomposer(cfg), Renderer(32, cfg.fov)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for step in range(steps):
        x, _ = harness.batch(step, cfg.batch)
        out = decomposition_loss(cfg, model, renderer, x)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()
    x, truth = harness.batch(10**6, 256)  # held-out views
    model.eval()
    return view_scores(model.estimate_view(x)["yaw"], truth["yaw"])


def test_harness_is_a_pure_function_of_the_step():
    h = ViewHarness(32, identities=4, seed=0)
    a, ta = h.batch(3, 5)
    b, tb = h.batch(3, 5)
    c, _ = h.batch(4, 5)
    assert torch.equal(a, b) and torch.equal(ta["yaw"], tb["yaw"])
    assert not torch.equal(a, c)
    assert a.shape == (5, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert ta["yaw"].abs().max() <= 60 and ta["pitch"].abs().max() <= 10


def test_view_scores_known_answers():
    t = torch.linspace(-60, 60, 50)
    s = view_scores(0.5 * t + 3.0, t)
    assert s["slope"] == pytest.approx(0.5, abs=1e-6) and s["r"] == pytest.approx(1.0, abs=1e-6)
    assert view_scores(-t, t)["r"] == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.slow
def test_learns_yaw_on_a_flat_still_background():
    # measured here (seed 0, 500 steps): slope 0.82, r 0.998 (0.88 by 800 steps). Before the light was
    # fixed to the camera it stalled near 0.43 (the light head explained part of every turn)
    s = _train(500, background=0.0, confidence="fixed")
    assert s["r"] >= 0.95, s
    assert 0.7 <= s["slope"] <= 1.3, s


@pytest.mark.slow
def test_learns_yaw_sign_on_a_textured_still_background_and_learned_confidence_is_no_worse():
    # measured here (seed 0, 300 steps): fixed sigma slope 0.374 r 0.963, learned sigma (with its floor)
    # 0.390 r 0.962 (0.59 by 800 steps: a textured background is learned more slowly, the target 0.7 is
    # not reached at this size); before the floor a learned sigma fell to 1e-9 and took the slope from
    # 1.19 to 0.17
    fixed = _train(300, background=0.6, confidence="fixed")
    learned = _train(300, background=0.6, confidence="learned")
    for s in (fixed, learned):
        assert s["r"] >= 0.93, s
        assert s["slope"] >= 0.3, s
    assert learned["r"] >= fixed["r"] - 0.03 and learned["slope"] >= 0.85 * fixed["slope"], (fixed, learned)
