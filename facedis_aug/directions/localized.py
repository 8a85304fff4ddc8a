"""Localized representation learning (paper Sec. 3.5, Eq. 5).

    min_{U, V}  ||J - U V^T||_F^2 + alpha ||U||_1 + beta sum_{i != j} (v_i^T v_j)^2   s.t. ||v_p|| = 1

J [S, d] is the Jacobian of the canonical albedo (RGB) + depth maps w.r.t. the latent w
(S = 4 x 64 x 64 rows, laid out as [4, H, W] in C order); U [S, P] holds sparse pixel
perturbations, V [d, P] the matching unit latent directions.

Two solvers:
- 'adam': the paper's. Adam (lr 1e-4) on U and on an unconstrained W with V = W / ||W|| (column-wise),
  so the unit-norm constraint holds exactly; the L1 term enters as its subgradient. The paper runs
  500k iterations.
- 'fast' (ours): alternating minimisation. With V fixed, U is a lasso whose rows decouple; it is
  solved by FISTA with soft-thresholding (step 1/L, L = 2 lambda_max(V^T V), adaptive restart).
  When V is orthonormal one step is exact: U = soft(J V, alpha / 2). With U fixed, the V problem only
  needs A = J^T U [d, P] and C = U^T U [P, P]:
      h(V) = -2 <V, A> + <V^T V, C> + beta ||offdiag(V^T V)||^2   (plus constants),
  so a few dozen Riemannian gradient steps on the product of unit spheres (tangent projection,
  retraction by renormalising, Armijo backtracking) cost O(d P^2) each, nothing of size S.
  Each outer iteration costs three S-sized matmuls (J V, J^T U, U^T U) plus the FISTA steps.
Both start from the top-P right singular vectors of J (random unit vectors beyond rank d) with the
matching exact U, unless `init='random'`.
"""
from __future__ import annotations

import math
from typing import Callable, Literal, Optional

import torch
from torch import Tensor

__all__ = ["localized_directions", "objective", "prune", "DEFAULT_ITERATIONS"]

# Defaults when `iterations` is None: the paper's 500k Adam steps; 300 outer alternating iterations.
DEFAULT_ITERATIONS = {"adam": 500_000, "fast": 300}

# callback(step, objective) -> True to stop early (used by benchmarks for wall-time budgets).
Callback = Callable[[int, float], Optional[bool]]


def _offdiag_sq(G: Tensor) -> Tensor:
    """sum_{i != j} G_ij^2."""
    return (G**2).sum() - (G.diagonal() ** 2).sum()


def objective(J: Tensor, U: Tensor, V: Tensor, alpha: float, beta: float) -> float:
    """Eq. 5 objective at (U, V), computed directly in float64 (the columns of V are used as given)."""
    _check_shapes(J, U.shape[1])
    if U.shape != (J.shape[0], U.shape[1]) or V.shape != (J.shape[1], U.shape[1]):
        raise ValueError(f"objective: expected U [S, P], V [d, P] for J {tuple(J.shape)}, got {tuple(U.shape)}, {tuple(V.shape)}")
    J64, U64, V64 = (x.detach().to(torch.float64) for x in (J, U, V))
    rec = ((J64 - U64 @ V64.T) ** 2).sum()
    return float(rec + alpha * U64.abs().sum() + beta * _offdiag_sq(V64.T @ V64))


def prune(U: Tensor, V: Tensor | None = None, threshold: float = 0.01) -> Tensor:
    """Keep mask [P] (bool): component p survives when ||u_p||_2 >= threshold (paper: 0.01)."""
    if U.ndim != 2:
        raise ValueError(f"prune: U must be [S, P], got {tuple(U.shape)}")
    if V is not None and (V.ndim != 2 or V.shape[1] != U.shape[1]):
        raise ValueError(f"prune: V must be [d, P] with P = {U.shape[1]}, got {tuple(V.shape)}")
    return torch.linalg.vector_norm(U.detach(), dim=0) >= threshold


def _check_shapes(J: Tensor, P: int) -> None:
    if J.ndim != 2:
        raise ValueError(f"localized_directions: J must be [S, d], got shape {tuple(J.shape)}")
    if not J.is_floating_point():
        raise ValueError("localized_directions: J must be a floating tensor")
    if P < 1:
        raise ValueError(f"localized_directions: P must be >= 1, got {P}")


def _soft(x: Tensor, t: float) -> Tensor:
    """Soft-thresholding, the proximal map of t ||.||_1."""
    return torch.sign(x) * (x.abs() - t).clamp_min(0.0)


def _normalize_cols(V: Tensor) -> Tensor:
    return V / torch.linalg.vector_norm(V, dim=0, keepdim=True).clamp_min(1e-30)


def _init(J: Tensor, P: int, alpha: float, init: str, seed: int) -> tuple[Tensor, Tensor]:
    S, d = J.shape
    g = torch.Generator().manual_seed(seed)
    if init == "svd":
        # Right singular vectors from the d x d Gram matrix (cheaper than an SVD of the tall J).
        J64 = J.to(torch.float64)
        evals, evecs = torch.linalg.eigh(J64.T @ J64)  # ascending
        k = min(P, d)
        V = evecs[:, -k:].flip(1).to(J.dtype)
        if P > d:  # more components than latent dimensions: the rest start as random unit vectors
            extra = torch.randn(d, P - d, generator=g, dtype=torch.float64).to(J.device, J.dtype)
            V = torch.cat([V, _normalize_cols(extra)], 1)
    elif init == "random":
        V = _normalize_cols(torch.randn(d, P, generator=g, dtype=torch.float64).to(J.device, J.dtype))
    else:
        raise ValueError(f"localized_directions: init must be 'svd' or 'random', got {init!r}")
    # Exact U for orthonormal V (rows decouple into 1-D lassos); a good start otherwise.
    U = _soft(J @ V, alpha / 2.0)
    return U, V


def _u_step(JV: Tensor, G: Tensor, U: Tensor, alpha: float, steps: int) -> Tensor:
    """FISTA with adaptive restart on  ||J - U V^T||^2 + alpha ||U||_1  (V fixed, G = V^T V).

    The gradient step Y - (2/L)(Y G - J V) is one matmul with M = I - (2/L) G [P, P] plus an
    in-place add, and the prox is softshrink: few passes over the S x P iterate per step.
    """
    L = max(2.0 * float(torch.linalg.eigvalsh(G.to(torch.float64)).max()), 1e-12)
    M = torch.eye(G.shape[0], dtype=G.dtype, device=G.device) - (2.0 / L) * G
    JVs = (2.0 / L) * JV
    thr = alpha / L
    Y, U_prev, t = U, U, 1.0
    for _ in range(steps):
        Z = torch.mm(Y, M).add_(JVs)  # mm + in-place add: measured faster than addmm on this CPU
        U_new = torch.nn.functional.softshrink(Z, thr) if thr > 0 else Z
        D = U_new - U_prev
        dd = float(torch.dot(D.reshape(-1), D.reshape(-1)))
        # Restart momentum when it points uphill, (Y - U_new).D > 0 (O'Donoghue & Candes 2015).
        uphill = float(torch.dot(Y.reshape(-1), D.reshape(-1))) - float(torch.dot(U_new.reshape(-1), D.reshape(-1))) > 0
        if uphill:
            t, Y = 1.0, U_new
        else:
            t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            Y = torch.add(U_new, D, alpha=(t - 1.0) / t_next)
            t = t_next
        U_prev = U_new
        # Converged: with V near-orthonormal (the beta term sees to it) this takes 2-3 steps.
        if dd <= 1e-10 * float(torch.dot(U_new.reshape(-1), U_new.reshape(-1))):
            break
    return U_prev


def _h(V: Tensor, A: Tensor, C: Tensor, beta: float) -> float:
    G = V.T @ V
    return float(-2.0 * (V * A).sum() + (G * C).sum() + beta * _offdiag_sq(G))


def _v_step(V: Tensor, A: Tensor, C: Tensor, beta: float, steps: int, lr: float) -> tuple[Tensor, float, float]:
    """Riemannian gradient descent on the unit-column manifold for h(V); returns (V, h(V), step size).

    Runs in float64: h is a difference of large terms (~ -||J||^2), so float32 rounding would
    hide the small decreases the line search must see. All matrices here are only d x P or P x P.
    """
    dtype = V.dtype
    # Renormalise in float64 first: float32 unit columns are off by ~1e-7, which would make the
    # retraction itself change h by more than a small step's decrease and stall the line search.
    V, A, C = _normalize_cols(V.to(torch.float64)), A.to(torch.float64), C.to(torch.float64)
    h = _h(V, A, C, beta)
    # Step floor 1 / L with L a curvature bound of h (2 ||C|| + 8 beta ||G||): after a cautious
    # backtracking phase the step restarts from here instead of creeping back up by doublings.
    c_norm = float(torch.linalg.eigvalsh(C).abs().max())
    g_norm = float(torch.linalg.eigvalsh(V.T @ V).abs().max())
    floor = 1.0 / max(2.0 * c_norm + 8.0 * beta * g_norm, 1e-12)
    for _ in range(steps):
        G = V.T @ V
        O = G - torch.diag_embed(G.diagonal())
        grad = -2.0 * A + 2.0 * V @ C + 4.0 * beta * V @ O
        rgrad = grad - V * (V * grad).sum(0, keepdim=True)  # project onto each sphere's tangent space
        gnorm2 = float((rgrad**2).sum())
        if gnorm2 < 1e-24:
            break
        trial = max(lr * 2.0, floor)  # let the step grow back after cautious phases
        for _ls in range(40):
            V_try = _normalize_cols(V - trial * rgrad)
            h_try = _h(V_try, A, C, beta)
            if h_try <= h - 1e-4 * trial * gnorm2:  # Armijo
                break
            trial *= 0.5
        else:
            break  # no descent step found: (numerically) stationary; keep the last good step size
        V, h, lr = V_try, h_try, trial
    return V.to(dtype), h, lr


def _fast(J, U, V, alpha, beta, iterations, tol, callback, inner_u, inner_v):
    jj = float((J.to(torch.float64) ** 2).sum())
    lr_v = 1.0 / max(1.0, float(torch.linalg.vector_norm(U, dim=0).max()) ** 2)
    prev = None
    if callback is not None and iterations > 0:
        # step 0 = the initial objective, as the Adam solver reports it
        if callback(0, objective(J, U, V, alpha, beta)):
            return U, V
    for it in range(iterations):
        JV = J @ V
        U = _u_step(JV, V.T @ V, U, alpha, inner_u)
        A = J.T @ U
        C = U.T @ U
        V, h, lr_v = _v_step(V, A, C, beta, inner_v, lr_v)
        obj = jj + h + alpha * float(U.abs().sum(dtype=torch.float64))
        if callback is not None and callback(it + 1, obj):
            break
        if prev is not None and abs(prev - obj) <= tol * max(abs(obj), 1e-30):
            break
        prev = obj
    return U, V


def _adam(J, U, V, alpha, beta, iterations, lr, tol, callback):
    U = U.clone().requires_grad_(True)
    W = V.clone().requires_grad_(True)
    opt = torch.optim.Adam([U, W], lr=lr)
    prev = None
    for it in range(iterations):
        Vn = _normalize_cols(W)
        G = Vn.T @ Vn
        loss = ((J - U @ Vn.T) ** 2).sum() + alpha * U.abs().sum() + beta * _offdiag_sq(G)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        obj = float(loss.detach())
        opt.step()
        if callback is not None and callback(it, obj):  # objective of the iterate before step `it`
            break
        if tol > 0 and prev is not None and abs(prev - obj) <= tol * max(abs(obj), 1e-30):
            break
        prev = obj
    with torch.no_grad():
        return U.detach(), _normalize_cols(W.detach())


def localized_directions(
    J: Tensor,
    P: int,
    alpha: float,
    beta: float,
    *,
    solver: Literal["fast", "adam"] = "fast",
    iterations: int | None = None,
    lr: float = 1e-4,
    seed: int = 0,
    tol: float = 1e-7,
    callback: Callback | None = None,
    init: Literal["svd", "random"] = "svd",
    inner_u: int = 10,
    inner_v: int = 30,
) -> tuple[Tensor, Tensor]:
    """Solve Eq. 5 for J [S, d]: returns (U [S, P], V [d, P]) with unit columns of V, in J's dtype.

    solver: 'adam' (paper: Adam with `lr`, `iterations` steps, default 500k) or 'fast'
    (alternating minimisation, `iterations` outer steps, default 300, each with `inner_u` FISTA
    steps for U and `inner_v` Riemannian steps for V). Stops early when the relative objective
    change per iteration is <= tol (tol=0 disables it) or when `callback(step, objective)` returns
    True. Deterministic for a given seed (used only by random initialisation).
    """
    _check_shapes(J, P)
    if alpha < 0 or beta < 0:
        raise ValueError(f"localized_directions: alpha and beta must be >= 0, got {alpha}, {beta}")
    if solver not in DEFAULT_ITERATIONS:
        raise ValueError(f"localized_directions: solver must be 'fast' or 'adam', got {solver!r}")
    if not torch.isfinite(J).all():
        raise ValueError("localized_directions: J contains NaN or Inf")
    iterations = DEFAULT_ITERATIONS[solver] if iterations is None else int(iterations)
    if iterations < 0:
        raise ValueError(f"localized_directions: iterations must be >= 0, got {iterations}")
    J = J.detach()
    with torch.no_grad():
        U, V = _init(J, P, alpha, init, seed)
    if solver == "fast":
        with torch.no_grad():
            U, V = _fast(J, U, V, alpha, beta, iterations, tol, callback, inner_u, inner_v)
    else:
        U, V = _adam(J, U, V, alpha, beta, iterations, lr, tol, callback)
    return U.contiguous(), V.contiguous()
