"""Eq. 5 solvers: objective vs wall time, ours ('fast', alternating) against the paper's Adam, same J.

J is synthetic with planted structure at the real size (S = 4 x 64 x 64 = 16384 rows: albedo RGB +
depth; d latent dims): K sparse blob-shaped perturbations placed in the face, around it and in the
background, tied to orthonormal latent directions, plus dense noise. Both solvers start from the
same SVD initialisation and get the same wall-time budget. Also reported: kept components
(||u_p|| >= 0.01), how many planted directions are recovered (|cos| > 0.9), and the region
make-up of the kept components and of the Ward clusters.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_localized            # d = 512, P = 200, ~2.5 min
    OMP_NUM_THREADS=1 python -m benchmarks.bench_localized --d 128 --budget 30
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch


from benchmarks.common import write_results
from facedis_aug.directions.cluster import cluster_directions, region_of_component
from facedis_aug.directions.localized import localized_directions, objective, prune


def face_masks(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Planted 'face' ellipse and the ring 'around' it (hair / ears / neck band) on an h x w grid."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = ((yy - 0.52 * h) / (0.36 * h)) ** 2 + ((xx - 0.5 * w) / (0.28 * w)) ** 2
    face = r <= 1.0
    around = (r <= 1.8) & ~face
    return face, around


def planted_jacobian(H: int, W: int, d: int, K: int, noise: float, seed: int):
    """J = U0 V0^T + noise: K blobs (radius 3-9 px, 1-4 channels, peak 1-3) tied to orthonormal V0."""
    rng = np.random.default_rng(seed)
    face, around = face_masks(H, W)
    regions = {"face": face, "around": around, "background": ~(face | around)}
    names = ["face", "around", "background"]
    U0 = np.zeros((4, H, W, K))
    where = []
    yy, xx = np.mgrid[0:H, 0:W]
    for k in range(K):
        reg = names[k % 3]
        ys, xs = np.nonzero(regions[reg])
        i = rng.integers(len(ys))
        rad = rng.uniform(3, 9)
        blob = np.exp(-((yy - ys[i]) ** 2 + (xx - xs[i]) ** 2) / (2 * (rad / 2) ** 2))
        blob[blob < 0.05] = 0.0  # compact support: the components are sparse
        chans = rng.choice(4, size=rng.integers(1, 5), replace=False)
        for c in chans:
            U0[c, :, :, k] = rng.uniform(1, 3) * rng.choice([-1, 1]) * blob
        where.append(reg)
    U0 = torch.from_numpy(U0.reshape(4 * H * W, K)).float()
    V0, _ = torch.linalg.qr(torch.from_numpy(rng.standard_normal((d, K))).float())
    g = torch.Generator().manual_seed(seed)
    J = U0 @ V0.T + noise * torch.randn(U0.shape[0], d, generator=g)
    return J, U0, V0, where, face, around


def run_solver(J, P, alpha, beta, solver, budget_s, lr, seed):
    trace: list[tuple[float, float, int]] = []
    t0 = time.perf_counter()

    def cb(step: int, obj: float) -> bool:
        t = time.perf_counter() - t0
        if solver == "fast" or step % 10 == 0 or t >= budget_s:  # Adam logs every 10th step to keep the file small
            trace.append((t, obj, step))
        return t >= budget_s

    U, V = localized_directions(J, P, alpha, beta, solver=solver, iterations=10**9 if solver == "adam" else 100000,
                                lr=lr, seed=seed, tol=0.0, callback=cb)
    wall = time.perf_counter() - t0
    return U, V, trace, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="map side H = W (S = 4 H W)")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--P", type=int, default=200)
    ap.add_argument("--K", type=int, default=48, help="planted components")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--budget", type=float, default=60.0, help="wall seconds per solver")
    ap.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper: 1e-4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="localized_solver")
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    H = W = args.size
    J, U0, V0, where, face, around = planted_jacobian(H, W, args.d, args.K, args.noise, args.seed)
    planted_obj = objective(J, U0, V0, args.alpha, args.beta)
    rows, traces, extra_clusters = [], {}, {}
    for solver in ("fast", "adam"):
        U, V, trace, wall = run_solver(J, args.P, args.alpha, args.beta, solver, args.budget, args.lr, args.seed)
        keep = prune(U, V, 0.01)
        Vk, Uk = V[:, keep], U[:, keep]
        cos = (V0.T @ Vk).abs() if Vk.shape[1] else torch.zeros(args.K, 1)
        recovered = int((cos.max(1).values > 0.9).sum())
        regions = [region_of_component(Uk[:, p], face, around) for p in range(Uk.shape[1])]
        make_up = {r: regions.count(r) for r in ("face", "around", "background")}
        if Vk.shape[1] >= 2:
            labels, _ = cluster_directions(Vk, num_clusters=3)
            extra_clusters[solver] = {
                str(c): {r: int(sum(1 for l, g in zip(labels, regions) if l == c and g == r)) for r in make_up}
                for c in sorted(set(labels.tolist()))
            }
        rows.append({
            "solver": solver,
            "steps": trace[-1][2] if trace else 0,
            "wall_s": wall,
            "initial_objective": trace[0][1] if trace else math.nan,
            "final_objective": objective(J, U, V, args.alpha, args.beta),
            "kept": int(keep.sum()),
            "kept_face/around/bg": f"{make_up['face']}/{make_up['around']}/{make_up['background']}",
            "planted_recovered": f"{recovered}/{args.K}",
        })
        traces[solver] = trace
        print(f"{solver}: {rows[-1]}", flush=True)
    # time for each solver to reach the final objective of Adam (the paper's solver)
    adam_final = min(o for _, o, _ in traces["adam"])
    for r in rows:
        tr = traces[r["solver"]]
        r["s_to_adam_final"] = next((t for t, o, _ in tr if o <= adam_final * (1 + 1e-9)), math.nan)

    notes = (
        f"Synthetic J [S={4 * H * W}, d={args.d}] = U0 V0^T + N(0, {args.noise}^2): K={args.K} planted blob components "
        f"(1/3 face, 1/3 around, 1/3 background) with orthonormal V0; P={args.P}, alpha={args.alpha}, beta={args.beta}. "
        f"Objective of the planted (U0, V0): {planted_obj:.6g}. Both solvers start from the same SVD initialisation "
        f"(objective {rows[0]['initial_objective']:.6g}) and run for the same wall budget of {args.budget:.0f} s; "
        f"Adam uses lr={args.lr} (paper). 'steps' are outer alternating iterations for fast and Adam steps for adam. "
        "s_to_adam_final: seconds each solver needed to reach Adam's final objective. "
        "planted_recovered: planted v0 with |cos| > 0.9 to some kept v_p. "
        "CPU shared with other jobs (2 cores, up to 7 concurrent users), single torch thread: timings are noisy and pessimistic. "
        f"Ward clusters (3) of the kept v_p by region of their u_p: {extra_clusters} -- V0 is random here, so the "
        "clusters carry no regional meaning on this J; they only exercise the plumbing (the real make-up comes "
        "from the directions stage on a generator's J). The optimum of Eq. 5 is not the planted (U0, V0) (its "
        "objective is higher), so planted_recovered below K is expected; 'kept' vs K is the sharper check."
    )
    out = write_results(args.name, rows, f"Eq. 5 solvers: objective vs wall time (S={4 * H * W}, d={args.d}, P={args.P})",
                        notes=notes, extra={"traces": {k: [list(x) for x in v] for k, v in traces.items()},
                                            "planted_objective": planted_obj, "clusters": extra_clusters})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for solver, tr in traces.items():
        ax.plot([t for t, _, _ in tr], [o for _, o, _ in tr], label=f"{solver} ({'ours' if solver == 'fast' else 'paper, Adam lr ' + str(args.lr)})")
    ax.axhline(planted_obj, color="grey", ls="--", lw=0.8, label="planted (U0, V0)")
    ax.set_yscale("log")
    ax.set_xlabel("wall seconds (1 shared CPU thread)")
    ax.set_ylabel("Eq. 5 objective")
    ax.set_title(f"S={4 * H * W}, d={args.d}, P={args.P}, alpha={args.alpha}, beta={args.beta}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(out) / f"{args.name}.png", dpi=110)
    print(f"wrote {Path(out) / (args.name + '.png')}")


if __name__ == "__main__":
    main()
