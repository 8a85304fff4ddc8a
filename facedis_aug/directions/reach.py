"""The turn an edit delivers: a univariate direction's calibration read off edits, and its reach.

Eq. 3 fits each semantic over natural samples, where the other factors that go with it (light, hair,
skin) move too; an edit moves w along v alone. So the least-squares slope and the turn an edit
delivers differ: on one tiny bundle the view head read 8.2 degrees per sigma over natural samples and
4.4 over edits along v_yaw (the evaluation regressor: 4.4; benchmarks/results/reach_readers_*.md).
The degrees -> s calibration is therefore measured where it is used: faces edited along v and read
by the decomposer, at offsets from the faces' own mean position along v.

    cal = calibrate_by_edits(G, decomposer, v, sigma, "yaw", w_fit, w_check)
    cal["intercept"], cal["units_per_sigma"]    # y(s) = intercept + units_per_sigma * s, s = w'.v / sigma
    cal["knots"]                                # {"s": [...], "value": [...]}: the measured response, monotone
    cal["reach"]                                # [lo, hi]: asked values delivered within 15% on held-out faces

The line is fitted to the mean reading over |offset| <= `halfwidth` sigma (where the decomposer reads
faces like its training data). The response over the whole edit grid is S-shaped, not straight: on the
main job's bundle (v11) the line overshot its own readings by 17% at +14.8 degrees, where the reach
walk stopped (table2_tiny_v11_mirror.md). With `curve` the calibration is the mean reading itself,
cut on each side at its extreme reading (a far tail that turns back is left out), made monotone
(ops.linear.monotone_knots) and cut where it stops moving, and s is found by inverting it; the line is
kept for Eq. 2's linear model and beyond the knots. (Off by default, on in recipes/tiny.yaml: the view
head reads large turns compressed, so the curve is truer to the head and less true to the turn; see
DirectionsConfig.edit_curve.) The reach (DESIGN.md: the largest |value| at which the delivered value
stays within 15% of the asked one) is walked outward on each side over *other* faces (`w_check`), so
the line is not judged on the faces it was fitted to.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..ops.linear import curve_s_to_value, edit_latent, monotone_knots
from .semantics import SEMANTICS, measure_semantics

REACH_TOL = 0.15  # DESIGN.md: delivered within 15% of asked
# ours: below |asked| = floor / tol the 15% band is narrower than the readings' own noise (the mean view-head yaw of
# two sets of 64 faces at the same edit differs by up to 1.1 degrees on the tiny bundles), so near the faces' own
# yaw the band is +-floor instead
REACH_FLOOR = 2.0
EDIT_OFFSETS = tuple(float(o) for o in range(-10, 11))  # sigma from the faces' mean; PoseExtrapolate's max_s is 10
FIT_HALFWIDTH = 2.0  # the calibration line is fitted over |offset| <= this (bench_reach_readers: s = -2..2)


def mirror_asymmetry(img: Tensor, margin: float = 0.1875) -> Tensor:
    """Mean |x - mirror(x)| over the image's centre (a `margin` share of the side cut off all round, where the
    face is): [B, C, R, R] -> [B]. A frontal face under a frontal light is nearly its own mirror image."""
    if img.ndim != 4:
        raise ValueError(f"expected images [B, C, R, R], got {tuple(img.shape)}")
    r = img.shape[-1]
    m = int(round(r * margin))
    x = img[..., m : r - m, m : r - m]
    return (x - x.flip(-1)).abs().mean((1, 2, 3))


def least_position(xs: Sequence[float], values: Any) -> np.ndarray:
    """Per column of values [K, N] (K evenly spaced xs), the x of the least value, refined by a parabola
    through it and its two neighbours (an end point is moved inward first) -> [N]."""
    x, a = np.asarray(xs, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if x.ndim != 1 or x.size < 3 or a.shape[0] != x.size:
        raise ValueError(f"least_position: need >= 3 positions and values [K, N] alike, got {x.shape} and {a.shape}")
    k = np.clip(a.argmin(0), 1, x.size - 2)
    out = np.empty(a.shape[1])
    for n, i in enumerate(k):
        y0, y1, y2 = a[i - 1, n], a[i, n], a[i + 1, n]
        den = y0 - 2 * y1 + y2
        out[n] = x[i] + (0.5 * (y0 - y2) / den if den > 0 else 0.0) * (x[i + 1] - x[i])
    return out


@torch.no_grad()
def edit_readings(G: nn.Module, decomposer: nn.Module, w: Tensor, v: Tensor, sigma: float, positions: Sequence[float],
                  name: str, batch_size: int = 64, mirror_average: bool = False,
                  with_asymmetry: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The decomposer's reading of semantic `name` on G(edit_latent(w, v, s, sigma)) for each absolute
    position s in `positions` (units of sigma; w'.v = s sigma). w [N, d], v [d] -> [K, N] float64, and with
    `with_asymmetry` the images' `mirror_asymmetry` [K, N] beside it. mirror_average: see `semantics.decompose`."""
    if w.ndim != 2 or v.shape != (w.shape[1],):
        raise ValueError(f"expected w [N, d] and v [d], got {tuple(w.shape)} and {tuple(v.shape)}")
    j = SEMANTICS.index(name)
    v = v.to(w.device, w.dtype)
    rows, asym = [], []
    for s in positions:
        out, out_a = [], []
        for i in range(0, w.shape[0], batch_size):
            img = G.synthesis(edit_latent(w[i : i + batch_size], v, float(s), sigma), noise_mode="const").clamp(-1, 1)
            out.append(measure_semantics(decomposer, img, mirror_average)[:, j].double().cpu())
            if with_asymmetry:
                out_a.append(mirror_asymmetry(img).double().cpu())
        rows.append(torch.cat(out))
        if with_asymmetry:
            asym.append(torch.cat(out_a))
    return (torch.stack(rows), torch.stack(asym)) if with_asymmetry else torch.stack(rows)


def delivered_reach(asked: Sequence[float], delivered: Sequence[float], tol: float = REACH_TOL,
                    floor: float = 0.0) -> tuple[float, float]:
    """(lo, hi): on each side of 0, walking outward over the asked values, the last one delivered
    within max(tol * |asked|, floor) before the first that is not (0 when the first one already misses)."""
    a, d = np.asarray(asked, dtype=np.float64), np.asarray(delivered, dtype=np.float64)
    if a.shape != d.shape or a.ndim != 1:
        raise ValueError(f"asked and delivered must be 1-D and alike, got {a.shape} and {d.shape}")
    ends = []
    for side in (-1.0, 1.0):
        best = 0.0
        for i in sorted(np.flatnonzero(a * side > 0), key=lambda i: abs(a[i])):
            if not abs(d[i] - a[i]) <= max(tol * abs(a[i]), floor):  # NaN readings miss too
                break
            best = float(a[i])
        ends.append(best)
    return ends[0], ends[1]


def calibrate_by_edits(G: nn.Module, decomposer: nn.Module, v: Tensor, sigma: float, name: str, w_fit: Tensor,
                       w_check: Tensor, offsets: Sequence[float] = EDIT_OFFSETS, halfwidth: float = FIT_HALFWIDTH,
                       tol: float = REACH_TOL, floor: float = REACH_FLOOR, batch_size: int = 64,
                       mirror_average: bool = False, curve: bool = False, zero: str = "reader") -> dict[str, Any]:
    """Calibration and reach of direction v (unit, [d]) for semantic `name` from edits (see module doc).

    w_fit [N, d]: faces whose mean reading per position gives the line (and with `curve` the knots);
    w_check [M, d]: other faces on which the reach is walked. Returns intercept, units_per_sigma, knots
    (None without `curve`, or where the readings do not move about the faces' mean), reach [lo, hi], and the
    curve (positions s, asked, delivered on each set) for directions.json. zero="symmetry" (an odd semantic, yaw): the calibration is shifted so that it says 0 where
    the fit faces are least mirror-asymmetric (`mirror_asymmetry`, mean over the faces, `least_position`)
    instead of where the reader says 0; its readings (both face sets, as stored) are shifted alike, and the
    shift is returned under "zero"."""
    if zero not in ("reader", "symmetry"):
        raise ValueError(f"zero must be 'reader' or 'symmetry', got {zero!r}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    off = np.asarray(offsets, dtype=np.float64)
    near = np.abs(off) <= halfwidth
    if near.sum() < 2:
        raise ValueError(f"need at least two offsets within +-{halfwidth} sigma to fit a line, got {list(offsets)}")
    v = v / v.norm()
    centre = float((w_fit.double() @ v.double()).mean()) / sigma  # the faces' own mean position along v
    pos = centre + off
    fit, asym = edit_readings(G, decomposer, w_fit, v, sigma, pos.tolist(), name, batch_size, mirror_average, with_asymmetry=True)
    fit, asym = fit.mean(1).numpy(), asym.mean(1).numpy()
    slope, intercept = np.polyfit(pos[near], fit[near], 1)
    ks = kv = None
    if curve and slope != 0:
        try:
            ks, kv = monotone_knots(pos, fit, centre, increasing=slope > 0)
        except ValueError:  # the readings do not move about the faces' mean (an untrained reader): the line stands
            pass
    curve = ks is not None
    zero_info, shift = None, 0.0
    if zero == "symmetry":
        s0 = float(least_position(pos, asym)[0])
        shift = float(curve_s_to_value(s0, ks, kv, float(slope))) if curve else float(intercept + slope * s0)
        intercept, kv = intercept - shift, (None if kv is None else [x - shift for x in kv])
        zero_info = {"by": "mirror symmetry", "s": round(s0, 4), "shift": round(shift, 3)}
    asked = np.asarray(curve_s_to_value(pos, ks, kv, float(slope))) if curve else intercept + slope * pos
    knots = None if ks is None else {"s": [round(float(x), 6) for x in ks], "value": [round(float(x), 6) for x in kv]}
    check = edit_readings(G, decomposer, w_check, v, sigma, pos.tolist(), name, batch_size, mirror_average).mean(1).numpy()
    # with the symmetry zero the reader's zero is taken to be off by the shift on every face, so its readings are too
    check, fit = check - shift, fit - shift
    lo, hi = delivered_reach(asked, check, tol, floor)
    return {"intercept": float(intercept), "units_per_sigma": float(slope), "knots": knots, "zero": zero_info, "reach": [lo, hi],
            "reach_tol": tol, "reach_floor": floor,
            "fit_halfwidth": float(halfwidth), "faces": [int(w_fit.shape[0]), int(w_check.shape[0])],
            "curve": {"s": [round(float(x), 4) for x in pos], "asked": [round(float(x), 3) for x in asked],
                      "delivered_fit": [round(float(x), 3) for x in fit], "asymmetry_fit": [round(float(x), 5) for x in asym],
                      "delivered_check": [round(float(x), 3) for x in check]}}  # fmt: skip


def reach_png(name: str, entry: dict[str, Any], path: Any, unit: str = "deg") -> Any:
    """Asked (the calibration line) and delivered (both face sets) against the edit position, the
    measured reach shaded: what `calibrate_by_edits` stored in a directions.json entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = entry["edit_check"]["curve"]
    lo, hi = entry["reach"]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.axhspan(lo, hi, color="tab:green", alpha=0.12, label=f"reach [{lo:+.1f}, {hi:+.1f}] {unit}")
    ax.plot(c["s"], c["asked"], "k-", lw=1.2, label="asked (calibration " + ("curve)" if entry.get("knots") else "line)"))
    ax.plot(c["s"], c["delivered_fit"], "o", ms=3, color="tab:blue", label="delivered, faces the line was fitted on")
    ax.plot(c["s"], c["delivered_check"], "s", ms=3, color="tab:orange", label="delivered, other faces (the reach's)")
    ax.set_xlabel(f"s = w'.v_{name} / sigma")
    ax.set_ylabel(f"{name} read by the view head ({unit})")
    ax.set_title(f"v_{name}: {entry['units_per_sigma']:+.2f} {unit} per sigma, within "
                 f"{entry['edit_check']['reach_tol']:.0%} over the shaded band", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
