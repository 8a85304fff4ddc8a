"""The verification protocol (benchmarks/pair_protocol.py) and the recognizer (benchmarks/recognizer.py).

Known answers: perfect embeddings verify at 1.0, random ones at ~0.5; margin logits match the
ArcFace / CosFace formulas; a saved recognizer reloads to the same embeddings; an interrupted
training run resumes to the same weights as an uninterrupted one.
"""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F


from benchmarks.pair_protocol import best_threshold, kfold_accuracy, make_pairs, pair_scores
from benchmarks.recognizer import (
    MarginHead,
    RecognizerConfig,
    TrainConfig,
    embed,
    load_recognizer,
    save_recognizer,
    train_recognizer,
)


def _test_layout(num_ids=40, frontal=3, profile=2):
    ids = np.repeat(np.arange(num_ids), frontal + profile)
    prof = np.tile(np.r_[np.zeros(frontal, bool), np.ones(profile, bool)], num_ids)
    return ids, prof


def test_pairs_are_balanced_disjoint_and_of_the_right_kind():
    ids, prof = _test_layout()
    pairs = make_pairs(ids, prof, folds=4, pairs_per_fold=15, seed=3)
    fold_ids = []
    for proto in ("FF", "FP"):
        d = pairs[proto]
        a, b, same, fold = d["a"], d["b"], d["same"], d["fold"]
        assert (same == (ids[a] == ids[b])).all()
        for f in range(4):
            m = fold == f
            assert same[m].sum() == (~same[m]).sum() == 15  # 10 ids x C(3,2) = 30 FF / 60 FP positives available
            fold_ids.append(set(ids[a[m]]) | set(ids[b[m]]))
        assert not prof[a].any()  # the first image is always frontal
        assert (prof[b] == (proto == "FP")).all()
        assert (a != b).all() and len({(x, y) for x, y in zip(a, b)}) == len(a)  # no pair twice
    for f in range(4):  # a fold's identities appear in no other fold
        others = set().union(*(fold_ids[g] for g in range(4) if g != f), *(fold_ids[4 + g] for g in range(4) if g != f))
        assert not (fold_ids[f] | fold_ids[4 + f]) & others
    with pytest.raises(ValueError):
        make_pairs(ids[:10], prof[:10], folds=10)


def test_pairs_shrink_to_the_available_positives():
    ids, prof = _test_layout(num_ids=20, frontal=2, profile=1)
    d = make_pairs(ids, prof, folds=2, pairs_per_fold=1000, seed=0)["FF"]
    assert d["same"].sum() == (~d["same"]).sum() == 20  # one frontal-frontal positive per identity


def test_best_threshold_known_case():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.25])
    same = np.array([0, 0, 0, 1, 1, 1], bool)
    t, acc = best_threshold(scores, same)
    # sorted: 0.1-, 0.2-, 0.25+, 0.3-, 0.7+, 0.8+; cutting after 0.2 or after 0.3 both get 5 of 6; the first wins
    assert acc == pytest.approx(5 / 6) and t == pytest.approx(0.225)
    t, acc = best_threshold(np.array([0.1, 0.9]), np.array([False, True]))
    assert acc == 1.0 and 0.1 < t < 0.9


def test_kfold_accuracy_perfect_embeddings_give_one_random_give_half():
    ids, prof = _test_layout(num_ids=200, frontal=3, profile=3)
    pairs = make_pairs(ids, prof, folds=10, pairs_per_fold=100, seed=0)
    perfect = F.one_hot(torch.as_tensor(ids), 200).float()  # unit vectors, one per identity
    g = torch.Generator().manual_seed(0)
    rand = F.normalize(torch.randn(len(ids), 64, generator=g), dim=1)
    for proto in ("FF", "FP"):
        d = pairs[proto]
        res = kfold_accuracy(pair_scores(perfect, d), d["same"], d["fold"])
        assert res["mean"] == 1.0 and res["std"] == 0.0 and len(res["per_fold"]) == 10
        res = kfold_accuracy(pair_scores(rand, d), d["same"], d["fold"])
        assert abs(res["mean"] - 0.5) < 0.05, res["mean"]
        # inverted similarity: the threshold is fitted on other folds, so it cannot learn the flip away
        assert kfold_accuracy(-pair_scores(perfect, d), d["same"], d["fold"])["mean"] <= 0.5 + 1e-9


def test_margin_heads_match_the_formulas():
    torch.manual_seed(0)
    for margin, m in (("cosface", 0.35), ("arcface", 0.5)):
        head = MarginHead(8, 5, margin=margin, scale=10.0, m=m)
        emb = torch.randn(4, 8)
        labels = torch.tensor([0, 3, 4, 1])
        logits = head(emb, labels)
        cos = F.normalize(emb, dim=1) @ F.normalize(head.weight, dim=1).T
        tgt = cos[torch.arange(4), labels]
        if margin == "cosface":
            want = 10.0 * (tgt - m)
        else:
            theta = torch.acos(tgt.clamp(-1, 1))
            want = torch.where(theta + m < math.pi, 10.0 * torch.cos(theta + m), 10.0 * (tgt - math.sin(math.pi - m) * m))
        assert torch.allclose(logits[torch.arange(4), labels], want, atol=1e-5)
        other = torch.ones_like(logits, dtype=torch.bool)
        other[torch.arange(4), labels] = False
        assert torch.allclose(logits[other], 10.0 * cos[other], atol=1e-5)
    with pytest.raises(ValueError):
        MarginHead(8, 5, margin="softmax")


def _toy(n=48, classes=4, side=16):
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(n) % classes
    base = torch.rand(classes, 3, 1, 1, generator=g)
    images = (base[labels] + 0.1 * torch.rand(n, 3, side, side, generator=g)).clamp(0, 1)
    return (images * 255).round().to(torch.uint8), labels


def test_recognizer_learns_saves_and_reloads(tmp_path):
    images, labels = _toy()
    cfg = RecognizerConfig("resnet10t", input_size=16, embedding_dim=16)
    model, stats = train_recognizer(images, labels, 4, cfg, TrainConfig(steps=25, batch=16, lr=3e-3, warmup=3), seed=0, log=None)
    assert stats["final_loss"] < stats["initial_loss"]
    e = embed(model, images.float() / 255)
    assert e.shape == (48, 16) and torch.allclose(e.norm(dim=1), torch.ones(48), atol=1e-5)
    assert torch.allclose(embed(model, images), e, atol=1e-6)  # uint8 input is read as /255
    path = save_recognizer(model, tmp_path / "r.safetensors", {"note": "toy"})
    again = load_recognizer(path)
    assert again.meta == {"note": "toy"} and not again.training
    assert torch.allclose(embed(again, images), e, atol=1e-6)
    assert not any(p.requires_grad for p in again.parameters())
    sim = e @ e.T  # same-class images are more similar than other-class ones after training
    same = labels[:, None] == labels[None, :]
    assert sim[same].mean() > sim[~same].mean() + 0.2


def test_load_recognizer_refuses_other_files(tmp_path):
    from facedis_aug.ops.io import save_safetensors

    save_safetensors(tmp_path / "x.safetensors", {"w": torch.zeros(2)}, {"format": "something.else"})
    with pytest.raises(ValueError, match="not a recognizer file"):
        load_recognizer(tmp_path / "x.safetensors")


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    images, labels = _toy(n=32)
    cfg = RecognizerConfig("resnet10t", input_size=16, embedding_dim=8)
    tc = TrainConfig(steps=6, batch=8, warmup=2, checkpoint_every=3)
    calls = {"n": 0}

    def crash_at_step_4(batch, seed):
        calls["n"] += 1
        if seed % 1_000_003 == 4 and calls["n"] < 10:
            raise KeyboardInterrupt("simulated interruption")
        return batch

    full, _ = train_recognizer(images, labels, 4, cfg, tc, seed=5, augment=lambda b, s: b, log=None)
    ckpt = tmp_path / "ckpt.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_recognizer(images, labels, 4, cfg, tc, seed=5, augment=crash_at_step_4, checkpoint=ckpt, log=None)
    assert ckpt.is_file()
    calls["n"] = 100
    resumed, stats = train_recognizer(images, labels, 4, cfg, tc, seed=5, augment=crash_at_step_4, checkpoint=ckpt, log=None)
    assert stats["resumed_at_step"] == 3
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k
