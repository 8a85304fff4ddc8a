"""CFP-style verification protocol: frontal-frontal (FF) and frontal-profile (FP) pairs, 10 folds.

    pairs = make_pairs(identity, is_profile, folds=10, pairs_per_fold=300, seed=0)
    s = pair_scores(emb, pairs["FP"])                      # cosine similarity per pair [P]
    kfold_accuracy(s, pairs["FP"]["same"], pairs["FP"]["fold"])   # {"mean", "std", "per_fold", ...}

Folds are disjoint in identity (the identities are shuffled with the seed and split evenly). In
each fold a protocol has the same number of positive pairs (two images of one identity) and
negative pairs (two identities): FF pairs two frontal images, FP a frontal image (first) and a
profile image (second). The accuracy of fold k uses the threshold that maximises accuracy on the
other folds (LFW / CFP practice); mean and std are over the folds.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

PROTOCOLS = ("FF", "FP")


def _fold_pairs(ids: np.ndarray, first: np.ndarray, second: np.ndarray, n: int, rng: np.random.Generator, distinct: bool) -> tuple[np.ndarray, np.ndarray]:
    """n positive and n negative pairs (a, b) with a from `first`, b from `second` (image indices).
    distinct: a < b (pairs within one pool, unordered). n shrinks to the number of positives available."""
    a, b = np.meshgrid(first, second, indexing="ij")
    a, b = a.ravel(), b.ravel()
    same = ids[a] == ids[b]
    pos = np.flatnonzero(same & (a < b if distinct else True))
    neg = np.flatnonzero(~same & (a < b if distinct else True))
    k = min(n, len(pos), len(neg))
    pick_pos = rng.choice(pos, size=k, replace=False)
    pick_neg = rng.choice(neg, size=k, replace=False)
    sel = np.concatenate([pick_pos, pick_neg])
    return np.stack([a[sel], b[sel]], 1), np.r_[np.ones(k, bool), np.zeros(k, bool)]


def make_pairs(identity: Any, is_profile: Any, folds: int = 10, pairs_per_fold: int = 300, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """identity [M], is_profile [M] bool (else frontal) over the test images ->
    {"FF" | "FP": {"a": [P], "b": [P] image indices, "same": [P] bool, "fold": [P] int}},
    with up to `pairs_per_fold` positives and as many negatives per fold."""
    ids = np.asarray(identity).astype(np.int64)
    prof = np.asarray(is_profile).astype(bool)
    if ids.shape != prof.shape or ids.ndim != 1:
        raise ValueError("identity and is_profile must be [M] arrays of one length")
    uniq = np.unique(ids)
    if folds < 2 or len(uniq) < 2 * folds:
        raise ValueError(f"need folds >= 2 and at least 2 identities per fold; got {folds} folds, {len(uniq)} identities")
    rng = np.random.default_rng([seed, 0x9A125])
    groups = np.array_split(rng.permutation(uniq), folds)
    out: dict[str, dict[str, list]] = {p: {"a": [], "b": [], "same": [], "fold": []} for p in PROTOCOLS}
    for f, group in enumerate(groups):
        inside = np.isin(ids, group)
        frontal, profile = np.flatnonzero(inside & ~prof), np.flatnonzero(inside & prof)
        for proto, second, distinct in (("FF", frontal, True), ("FP", profile, False)):
            ab, same = _fold_pairs(ids, frontal, second, pairs_per_fold, rng, distinct)
            d = out[proto]
            d["a"].append(ab[:, 0])
            d["b"].append(ab[:, 1])
            d["same"].append(same)
            d["fold"].append(np.full(len(same), f))
    return {p: {k: np.concatenate(v) for k, v in d.items()} for p, d in out.items()}


def pair_scores(emb: Tensor, pairs: dict[str, np.ndarray]) -> np.ndarray:
    """Cosine similarity [P] of the pairs, from unit embeddings emb [M, D]."""
    a, b = torch.as_tensor(pairs["a"]), torch.as_tensor(pairs["b"])
    return (emb[a] * emb[b]).sum(1).double().numpy()


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy): the cut that maximises accuracy of `score > threshold` -> same."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], same[order].astype(np.int64)
    n = len(s)
    # cut after position k (k = 0..n): below are predicted different
    neg_below = np.r_[0, np.cumsum(1 - y)]
    pos_above = y.sum() - np.r_[0, np.cumsum(y)]
    acc = (neg_below + pos_above) / n
    valid = np.r_[True, s[1:] > s[:-1], True]  # cut only between distinct scores
    acc = np.where(valid, acc, -1.0)
    k = int(np.argmax(acc))
    lo = s[k - 1] if k > 0 else s[0] - 1.0
    hi = s[k] if k < n else s[-1] + 1.0
    return float((lo + hi) / 2), float(acc[k])


def kfold_accuracy(scores: Any, same: Any, fold: Any) -> dict[str, Any]:
    """Verification accuracy per fold (threshold from the other folds): mean, std (over folds,
    population std as in LFW reports), per_fold [K], thresholds [K]."""
    scores, same, fold = np.asarray(scores, np.float64), np.asarray(same, bool), np.asarray(fold)
    accs, ths = [], []
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        t, _ = best_threshold(scores[train], same[train])
        accs.append(float(((scores[test] > t) == same[test]).mean()))
        ths.append(t)
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "per_fold": accs, "thresholds": ths}
