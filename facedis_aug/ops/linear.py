"""Least-squares semantic directions (paper Eq. 2-3) and latent editing along them (Eq. 4).

Bottom layer: plain torch, no other package imports. Used by stage 2 (yaw re-estimation for the
Sec. 3.4 augmentation) and stage 3 (the 14 univariate semantics and the per-pixel Jacobian).
"""
from __future__ import annotations

import math

from typing import Any

import torch
from torch import Tensor

__all__ = [
    "fit_directions",
    "fit_directions_with_r2",
    "edit_latent",
    "unit_direction",
    "projection_std",
]

# |‖v‖ - 1| above this is a caller bug (a raw gradient passed where a unit direction is expected).
_UNIT_TOL = 1e-3


def _check_regression_inputs(delta_w: Tensor, delta_y: Tensor) -> None:
    if not isinstance(delta_w, Tensor) or not isinstance(delta_y, Tensor):
        raise TypeError("fit_directions: delta_w and delta_y must be torch tensors")
    if delta_w.ndim != 2:
        raise ValueError(f"fit_directions: delta_w must be [N, d], got shape {tuple(delta_w.shape)}")
    if delta_y.ndim != 2:
        raise ValueError(
            f"fit_directions: delta_y must be [N, k] (use delta_y[:, None] for one semantic), got shape {tuple(delta_y.shape)}"
        )
    n, d = delta_w.shape
    if delta_y.shape[0] != n:
        raise ValueError(f"fit_directions: delta_w has {n} rows but delta_y has {delta_y.shape[0]}")
    if n <= d:
        raise ValueError(
            f"fit_directions: need more pairs than latent dimensions (N > d, paper Eq. 3); got N={n}, d={d}"
        )
    if not (torch.isfinite(delta_w).all() and torch.isfinite(delta_y).all()):
        raise ValueError("fit_directions: delta_w / delta_y contain NaN or Inf")


def fit_directions_with_r2(delta_w: Tensor, delta_y: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares gradients of Eq. 2-3 and their coefficient of determination.

    delta_w: [N, d] latent differences w1 - w0; delta_y: [N, k] semantic differences (k semantics).
    Returns (grads [k, d], r2 [k]) in delta_w's floating dtype. grads[j] minimises
    ||delta_y[:, j] - delta_w @ g||^2; it is NOT normalised (see `unit_direction`).
    r2[j] = 1 - SS_res / SS_tot with SS_tot about the mean of delta_y[:, j] (the usual centred
    R^2, so it can be negative for a useless fit); NaN where delta_y[:, j] is constant.
    Solved in float64 by a QR-based least-squares routine, never by forming an inverse: the
    normal-equation inverse of Eq. 3 squares the condition number of delta_w.
    """
    _check_regression_inputs(delta_w, delta_y)
    out_dtype = delta_w.dtype if delta_w.is_floating_point() else torch.get_default_dtype()
    a = delta_w.detach().to(torch.float64)
    b = delta_y.detach().to(a.device, torch.float64)
    # QR (Householder) least squares: stable, and the only well-posed answer for N > d full rank.
    q, r = torch.linalg.qr(a, mode="reduced")  # q [N, d], r [d, d]
    diag = r.diagonal().abs()
    if diag.min() <= diag.max() * (a.shape[1] * torch.finfo(torch.float64).eps) * 10 or diag.max() == 0:
        raise ValueError(
            "fit_directions: delta_w is rank deficient (some latent directions never vary across the pairs); "
            "sample more / more diverse pairs"
        )
    x = torch.linalg.solve_triangular(r, q.T @ b, upper=True)  # [d, k]
    resid = b - a @ x
    ss_res = (resid**2).sum(0)
    ss_tot = ((b - b.mean(0, keepdim=True)) ** 2).sum(0)
    r2 = torch.where(ss_tot > 0, 1.0 - ss_res / ss_tot.clamp_min(1e-300), torch.full_like(ss_tot, math.nan))
    return x.T.contiguous().to(out_dtype), r2.to(out_dtype)


def fit_directions(delta_w: Tensor, delta_y: Tensor, return_r2: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Eq. 3 gradients [k, d] from delta_w [N, d] and delta_y [N, k]; with return_r2, (grads, r2 [k])."""
    grads, r2 = fit_directions_with_r2(delta_w, delta_y)
    return (grads, r2) if return_r2 else grads


def unit_direction(g: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """Split gradient(s) g [d] or [k, d] into unit direction(s) v (same shape) and norm(s) ([] or [k])."""
    if g.ndim not in (1, 2):
        raise ValueError(f"unit_direction: expected [d] or [k, d], got shape {tuple(g.shape)}")
    norm = torch.linalg.vector_norm(g, dim=-1)
    if (norm <= eps).any():
        raise ValueError("unit_direction: a gradient has (near) zero norm; it has no direction")
    return g / norm.unsqueeze(-1), norm


def projection_std(w: Tensor, v: Tensor) -> float:
    """sigma_w of Eq. 4: the sample std (N - 1 denominator) of w @ v over w [N, d], v [d]."""
    if w.ndim != 2 or v.ndim != 1 or w.shape[1] != v.shape[0]:
        raise ValueError(f"projection_std: expected w [N, d] and v [d], got {tuple(w.shape)} and {tuple(v.shape)}")
    if w.shape[0] < 2:
        raise ValueError("projection_std: need at least 2 samples for a standard deviation")
    proj = w.detach().to(torch.float64) @ v.detach().to(w.device, torch.float64)
    return float(proj.std(correction=1))


def edit_latent(w: Tensor, v: Tensor, s: float | Tensor, sigma: float | Tensor) -> Tensor:
    """Eq. 4: w' = w - (w.v) v + s * sigma * v.

    w: [B, d] latents; v: [d] unit direction (raises if ||v|| is not 1 within 1e-3);
    s: a number, a 0-d tensor or a [B] tensor (one scale per sample, in units of sigma);
    sigma: the std of w.v over samples (a number or 0-d tensor). Returns [B, d].
    The component of w along v is replaced, so every output has w'.v = s * sigma exactly and the
    part of w orthogonal to v is untouched. Differentiable in all tensor arguments.
    """
    if w.ndim != 2:
        raise ValueError(f"edit_latent: w must be [B, d], got shape {tuple(w.shape)}")
    if v.ndim != 1 or v.shape[0] != w.shape[1]:
        raise ValueError(f"edit_latent: v must be [d] = [{w.shape[1]}], got shape {tuple(v.shape)}")
    vnorm = float(torch.linalg.vector_norm(v.detach()))
    if not abs(vnorm - 1.0) <= _UNIT_TOL:
        raise ValueError(f"edit_latent: v must have unit length (got ||v|| = {vnorm:.6g}); use unit_direction(g)")
    b = w.shape[0]
    s_t = torch.as_tensor(s, dtype=w.dtype, device=w.device)
    if s_t.ndim == 0:
        s_t = s_t.expand(b)
    elif s_t.shape != (b,):
        raise ValueError(f"edit_latent: s must be a number or [B] = [{b}], got shape {tuple(s_t.shape)}")
    sigma_t = torch.as_tensor(sigma, dtype=w.dtype, device=w.device)
    if sigma_t.ndim != 0:
        raise ValueError(f"edit_latent: sigma must be a scalar, got shape {tuple(sigma_t.shape)}")
    v = v.to(w.dtype)
    proj = w @ v  # [B]
    return w + (s_t * sigma_t - proj).unsqueeze(1) * v.unsqueeze(0)


def value_to_s(value: Any, intercept: float, units_per_sigma: float, knots: Any = None) -> Any:
    """The calibration of a univariate direction: the Eq. 4 scale s that puts the semantic at `value`
    (its units, e.g. degrees), s = (value - intercept) / units_per_sigma (exact under Eq. 2's linear model),
    or through a measured monotone curve when `knots` = (s_knots, value_knots) is given (`curve_value_to_s`).
    Works on floats, numpy arrays and tensors alike."""
    if knots is not None:
        return curve_value_to_s(value, *knots, units_per_sigma)
    return (value - intercept) / units_per_sigma


def s_to_value(s: Any, intercept: float, units_per_sigma: float, knots: Any = None) -> Any:
    """Inverse of `value_to_s`: the semantic value an edit of scale s produces."""
    if knots is not None:
        return curve_s_to_value(s, *knots, units_per_sigma)
    return intercept + units_per_sigma * s


def monotone_knots(s: Any, values: Any, centre: float, increasing: bool) -> tuple[list[float], list[float]]:
    """Knots of a monotone piecewise-linear calibration from readings `values` at edit scales `s` (both [K],
    s ascending): the readings are first cut on each side of the knot nearest `centre` at their extreme on
    that side (the least below it, the greatest above it, for a rising response), so a far tail that turns
    back is not pooled into the near side; then the isotonic (pool-adjacent-violators) fit in the given
    direction, cut again at the first step that does not move strictly (where the response saturates, an
    inverse would be ambiguous). Returns (s_knots, value_knots), at least two knots."""
    import numpy as np

    x, y = np.asarray(s, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2 or not np.all(np.diff(x) > 0) or not np.all(np.isfinite(y)):
        raise ValueError(f"monotone_knots: need >= 2 finite readings at ascending s, got s {x.tolist()} and values {y.tolist()}")
    z = y if increasing else -y
    # without this cut, a response that turns back far out (the main job's v17 bundle: the view head's yaw falls to
    # -9.7 at s = -3.3 and climbs back to +4.6 at s = -9.3) pools the whole side into one flat value near the centre
    # (-5.3 from s = -9.3 to -0.3), and the line's slope then stands in for readings the head did make
    c = int(np.argmin(np.abs(x - centre)))
    first, last = int(np.argmin(z[: c + 1])), c + int(np.argmax(z[c:]))
    x, z = x[first : last + 1], z[first : last + 1]
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v in z:
        blocks.append([float(v), 1.0, 1])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            (m1, w1, n1), (m2, w2, n2) = blocks[-2], blocks[-1]
            blocks[-2:] = [[(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2]]
    fit = np.concatenate([np.full(n, m) for m, _, n in blocks])
    c -= first  # the knot nearest the centre, in the cut readings
    step = 1e-5 * max(1.0, float(np.abs(fit).max()))  # a smaller step counts as flat (knots are stored to 6 decimals)
    lo = c
    while lo > 0 and fit[lo] - fit[lo - 1] > step:
        lo -= 1
    hi = c
    while hi < x.size - 1 and fit[hi + 1] - fit[hi] > step:
        hi += 1
    if hi == lo:  # the readings do not move at the centre: no curve, only its one value
        raise ValueError(f"monotone_knots: the readings do not {'rise' if increasing else 'fall'} around s = {centre:g}: {y.tolist()}")
    keep = slice(lo, hi + 1)
    return x[keep].tolist(), (fit[keep] if increasing else -fit[keep]).tolist()


def _as_input_type(out: Any, like: Any) -> Any:
    if isinstance(like, Tensor):
        return torch.as_tensor(out, dtype=like.dtype if like.is_floating_point() else torch.float64, device=like.device)
    return float(out) if getattr(out, "ndim", 1) == 0 else out


def curve_s_to_value(s: Any, knots_s: Any, knots_value: Any, units_per_sigma: float) -> Any:
    """The semantic value an edit of scale s produces under a monotone piecewise-linear calibration (knots from
    `monotone_knots`); beyond the end knots it goes on straight with `units_per_sigma` (the line's slope)."""
    import numpy as np

    ks, kv = np.asarray(knots_s, dtype=np.float64), np.asarray(knots_value, dtype=np.float64)
    x = np.asarray(s.detach().cpu() if isinstance(s, Tensor) else s, dtype=np.float64)
    out = np.interp(x, ks, kv)
    out = np.where(x < ks[0], kv[0] + units_per_sigma * (x - ks[0]), out)
    out = np.where(x > ks[-1], kv[-1] + units_per_sigma * (x - ks[-1]), out)
    return _as_input_type(out, s)


def curve_value_to_s(value: Any, knots_s: Any, knots_value: Any, units_per_sigma: float) -> Any:
    """Inverse of `curve_s_to_value`: the Eq. 4 scale s that puts the semantic at `value`."""
    import numpy as np

    ks, kv = np.asarray(knots_s, dtype=np.float64), np.asarray(knots_value, dtype=np.float64)
    if kv[-1] < kv[0]:  # a falling calibration: interp needs ascending x
        ks, kv = ks[::-1], kv[::-1]
    y = np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=np.float64)
    out = np.interp(y, kv, ks)
    out = np.where(y < kv[0], ks[0] + (y - kv[0]) / units_per_sigma, out)
    out = np.where(y > kv[-1], ks[-1] + (y - kv[-1]) / units_per_sigma, out)
    return _as_input_type(out, value)
