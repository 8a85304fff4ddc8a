"""The encoder stage: a planted case (a trained encoder beats the mean-w baseline, refinement lowers
the image loss), exact resume, file round trip and config errors. Tiny generator, CPU, seeded."""
from __future__ import annotations

import json

import pytest
import torch

from facedis_aug.testing import tiny_generator
from facedis_aug.encode import train as train_mod
from facedis_aug.encode.config import EncodeConfig
from facedis_aug.encode.model import LatentEncoder, fit_images, image_l1, load_encoder, refine_latent
from facedis_aug.encode.train import generator_samples, train_encoder, w_statistics
from facedis_aug.ops.dataconf import ConfigError, from_dict

TINY = dict(backbone="test_efficientnet", batch=16, lr=3e-3, eval_samples=48, log_every=10, snapshot_every=1000, checkpoint_every=1000)


@pytest.fixture(scope="module")
def G():
    return tiny_generator(resolution=32, w_dim=16, channels=16, seed=0)


@pytest.fixture(scope="module")
def trained(G, tmp_path_factory):
    run = tmp_path_factory.mktemp("enc")
    faces = generator_samples(G, 16, seed=99)[0]  # stand-in "data images" for the max_l1 bound
    path = train_encoder(EncodeConfig(iterations=150, **TINY), G, run, seed=0, face_images=faces)
    return run, path


def test_trained_encoder_beats_mean_w_and_refinement_helps(trained):
    run, path = trained
    rep = json.loads((run / "eval.json").read_text())
    # held-out generator samples: the mean-w answer scores ~1 by construction; training must beat it clearly
    assert rep["w_rel_mse"] < 0.85 * rep["w_rel_mse_mean_baseline"], rep
    assert rep["l1_gen"] < rep["l1_gen_mean_w"], rep
    assert rep["l1_gen_refined"] < rep["l1_gen"], rep  # the short optimisation lowers the image loss
    assert rep["max_l1"] > rep["l1_data"] and rep["max_l1_from"] == "data images"
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["step"] == 149 and (run / "snapshots" / "encode_000000.png").is_file()


def test_saved_encoder_round_trip(trained, G):
    _, path = trained
    E = load_encoder(path)
    assert E.meta["max_l1"] > 0 and E.meta["eval"]["refine_steps"] == 10 and not E.training
    x, _ = generator_samples(G, 4, seed=5)
    again = load_encoder(path)
    with torch.no_grad():
        torch.testing.assert_close(E(fit_images(x, E.image_size)), again(fit_images(x, again.image_size)))
    with pytest.raises(ValueError, match="not an encoder file"):
        load_encoder(path.parent / "checkpoint.safetensors")


def test_refinement_never_worse_and_batch_independent(G):
    mean, std = w_statistics(G, seed=0, n=256)
    x, w_true = generator_samples(G, 3, seed=7)
    w0 = mean.expand(3, -1).clone()
    w, l1_start, l1_end = refine_latent(G, x, w0, steps=8, lr=0.1, reg=0.0, w_std=std)
    assert (l1_end < l1_start).all()
    with torch.no_grad():
        torch.testing.assert_close(image_l1(G, w, x), l1_end, atol=1e-5, rtol=0)
    alone, _, _ = refine_latent(G, x[1:2], w0[1:2], steps=8, lr=0.1, reg=0.0, w_std=std)
    torch.testing.assert_close(alone, w[1:2], atol=1e-5, rtol=0)
    same, a, b = refine_latent(G, x, w0, steps=0, lr=0.1, reg=0.0, w_std=std)
    assert torch.equal(same, w0) and torch.equal(a, b)


def test_interrupted_training_resumes_to_the_same_weights(G, tmp_path, monkeypatch):
    cfg = EncodeConfig(iterations=4, **{**TINY, "checkpoint_every": 2, "eval_samples": 4, "batch": 4})
    ref = load_encoder(train_encoder(cfg, G, tmp_path / "a", seed=1))
    real = train_mod.generator_samples
    calls = {"n": 0}

    def crash_at_step_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third training batch: after the step-2 checkpoint
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "generator_samples", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_encoder(cfg, G, tmp_path / "b", seed=1)
    monkeypatch.setattr(train_mod, "generator_samples", real)
    assert not (tmp_path / "b" / "encoder.safetensors").exists()
    seen: list[int] = []  # the pipeline's hook (threads handed back by a finished side process) sees every step
    resumed = load_encoder(train_encoder(cfg, G, tmp_path / "b", seed=1, on_step=seen.append))
    assert seen == [3, 4]
    for (k, a), (_, b) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=k)
    with pytest.raises(ValueError, match="other encode settings"):
        train_encoder(EncodeConfig(iterations=5, **{**TINY, "checkpoint_every": 2, "batch": 4}), G, tmp_path / "b", seed=1)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="image_size"):
        from_dict(EncodeConfig, {"image_size": 20}, "encode")
    with pytest.raises(ConfigError, match="unknown key 'encode.bakbone'"):
        from_dict(EncodeConfig, {"bakbone": "resnet18"}, "encode")
    with pytest.raises(ValueError, match="encode.backbone"):
        LatentEncoder(EncodeConfig(backbone="no_such_net"), torch.zeros(4), torch.ones(4), 32)


def test_bf16_training_learns_and_keeps_fp32_targets(G, tmp_path):
    """precision=bf16 autocasts the encoder and G(E(x)) only: the logged losses stay finite and fall,
    and the held-out report (fp32) beats the mean-w baseline as the fp32 run does."""
    cfg = EncodeConfig(iterations=60, precision="bf16", **{**TINY, "log_every": 5})
    path = train_encoder(cfg, G, tmp_path, seed=0)
    lines = [json.loads(x) for x in (tmp_path / "stats.jsonl").read_text().splitlines()]
    totals = [rec["total"] for rec in lines]
    assert all(torch.isfinite(torch.tensor(totals))) and sum(totals[-3:]) < sum(totals[:3])
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["w_rel_mse"] < report["w_rel_mse_mean_baseline"]
    assert path.is_file()
    with pytest.raises(ConfigError, match="precision"):
        from_dict(EncodeConfig, {"precision": "fp16"}, "encode")
