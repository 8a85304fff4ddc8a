"""Training loop: exact resume, non-finite skipping, decorrelation confined to F, ADA-lite, 2-process gloo."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from facedis_aug.gan.config import GanConfig
from facedis_aug.gan.networks import load_generator
from facedis_aug.gan.train import ada_augment, checkpoint_generator, mirror_half, train_gan
from facedis_aug.ops import load_safetensors, read_json

B = 4
CFG = GanConfig(
    resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=32, batch=B,
    kimg=6 * B / 1000, pl_interval=2, r1_interval=3, decorr_samples=64, log_kimg=2 * B / 1000,
    snapshot_kimg=3 * B / 1000, snapshot_images=4, checkpoint_kimg=2 * B / 1000,
    ada=True, ada_interval=1, ada_kimg=0.1, ada_target=-1.0,  # target -1: p rises every step, so ADA runs
)  # fmt: skip

SOURCE = '''
def blobs(start, rank, world, B=4, R=32, nan_steps=()):
    """Deterministic coloured discs on grey, one batch per (step, rank)."""
    import torch
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, R), torch.linspace(-1, 1, R), indexing="ij")
    step = start
    while True:
        g = torch.Generator().manual_seed(step * world + rank)
        c = torch.rand(B, 2, generator=g) - 0.5
        r = torch.rand(B, generator=g) * 0.3 + 0.2
        col = torch.rand(B, 3, generator=g) * 2 - 1
        m = (((xx - c[:, 0, None, None]) ** 2 + (yy - c[:, 1, None, None]) ** 2) < r[:, None, None] ** 2).float()[:, None]
        img = col[:, :, None, None] * m - 0.5 * (1 - m)
        yield img * float("nan") if step in nan_steps else img
        step += 1
'''
exec(SOURCE)


class Killed(Exception):
    pass


def _run(run_dir: Path, cfg: GanConfig = CFG, kill_at: int | None = None, nan_steps=(), calls: list | None = None) -> Path:
    def make_batches(start, rank, world):
        if calls is not None:
            calls.append(start)
        for step, b in enumerate(blobs(start, rank, world, nan_steps=nan_steps), start=start):  # noqa: F821
            if step == kill_at:
                raise Killed
            yield b

    return train_gan(cfg, make_batches, run_dir, seed=3)


def _final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_safetensors(run_dir / read_json(run_dir / "checkpoint.json")["file"])[0]


def test_resume_is_bit_exact(tmp_path: Path):
    full = _run(tmp_path / "a")
    with pytest.raises(Killed):
        _run(tmp_path / "b", kill_at=5)  # dies during step 5; the last checkpoint is after step 4
    assert read_json(tmp_path / "b" / "checkpoint.json")["step"] == 4
    # a stopped run can be looked at: its last checkpoint's G_ema and the kimg it reached
    G4, kimg4 = checkpoint_generator(tmp_path / "b", CFG)
    assert kimg4 == pytest.approx(4 * B / 1000)
    ema4 = {k[len("G_ema."):]: v for k, v in _final_state(tmp_path / "b").items() if k.startswith("G_ema.")}
    assert all(torch.equal(G4.state_dict()[k], v) for k, v in ema4.items()) and not G4.training
    with pytest.raises(ValueError, match="no checkpoint"):
        checkpoint_generator(tmp_path / "none", CFG)
    calls: list[int] = []
    resumed = _run(tmp_path / "b", calls=calls)
    assert calls == [4]
    a, b = _final_state(tmp_path / "a"), _final_state(tmp_path / "b")
    assert a.keys() == b.keys() and any(k.startswith("opt_D.") for k in a) and "state.ada_p" in a
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert torch.equal(load_safetensors(full)[0]["mapping.w_avg"], load_safetensors(resumed)[0]["mapping.w_avg"])
    assert 0 < a["state.ada_p"].item() <= 1  # ADA-lite moved p
    # no step is logged twice after the resume: the resumed log equals the uninterrupted one
    steps = lambda d: [json.loads(x)["step"] for x in (tmp_path / d / "stats.jsonl").read_text().splitlines()]  # noqa: E731
    assert steps("b") == steps("a") and len(set(steps("a"))) == len(steps("a"))
    # the run folder has what the stage promises
    stats = [json.loads(line) for line in (tmp_path / "a" / "stats.jsonl").read_text().splitlines()]
    assert {"loss_G", "loss_D", "rho_mean", "rho_max", "var_cv", "img_per_s"} <= stats[-1].keys()
    assert (tmp_path / "a" / "snapshots" / "fakes_0000006.png").exists()
    assert len(list((tmp_path / "a").glob("checkpoint-*.safetensors"))) == 1
    G = load_generator(full)
    assert G(torch.randn(2, 16)).shape == (2, 3, 32, 32)
    G6, _ = checkpoint_generator(tmp_path / "a", CFG)  # the last checkpoint is the final step: the same G_ema
    assert all(torch.equal(G6.state_dict()[k], v) for k, v in G.state_dict().items())
    assert _run(tmp_path / "a") == full  # a finished stage returns at once


def test_non_finite_steps_are_skipped_then_stop(tmp_path: Path):
    _run(tmp_path / "one", nan_steps={2})
    events = [json.loads(line) for line in (tmp_path / "one" / "stats.jsonl").read_text().splitlines()]
    skipped = [e for e in events if e.get("event") == "non_finite_skipped"]
    assert [e["step"] for e in skipped] == [3]
    assert all(torch.isfinite(v).all() for k, v in _final_state(tmp_path / "one").items() if v.is_floating_point())

    cfg = replace(CFG, max_bad_steps=2)
    with pytest.raises(RuntimeError, match=r"non-finite.*checkpoint-00000002\.safetensors"):
        _run(tmp_path / "many", cfg=cfg, nan_steps=set(range(2, 100)))


def test_decorrelation_changes_mapping_only(tmp_path: Path):
    cfg = replace(CFG, kimg=B / 1000, pl_weight=0.0, ada=False)  # one step; PL would mix F into G's update
    off = _final_state(Path(_run(tmp_path / "off", cfg=replace(cfg, decorr_weight=0.0))).parent)
    on = _final_state(Path(_run(tmp_path / "on", cfg=replace(cfg, decorr_weight=10.0))).parent)
    syn = [k for k in off if k.startswith("G.synthesis.")]
    mapw = [k for k in off if k.startswith("G.mapping.layers")]
    assert syn and all(torch.equal(off[k], on[k]) for k in syn)
    assert all(not torch.equal(off[k], on[k]) for k in mapw)


def test_mirror_half_flips_about_half_the_images_and_follows_the_seed():
    x = torch.rand(1000, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    y = mirror_half(x)
    flipped = (y == x.flip(3)).flatten(1).all(1)
    kept = (y == x).flatten(1).all(1)
    assert bool((flipped ^ kept).all())  # every image is itself or its mirror (random images are not symmetric)
    assert 430 <= int(flipped.sum()) <= 570
    torch.manual_seed(5)
    assert torch.equal(mirror_half(x), y)  # the same seed flips the same images (exact resume)


def test_mirror_trains_and_resumes_bit_exactly(tmp_path: Path):
    cfg = replace(CFG, mirror=True)
    whole = _final_state(_run(tmp_path / "whole", cfg).parent)
    with pytest.raises(Killed):
        _run(tmp_path / "cut", cfg, kill_at=3)
    resumed = _final_state(_run(tmp_path / "cut", cfg).parent)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    plain = _final_state(_run(tmp_path / "plain").parent)
    assert any(not torch.equal(whole[k], plain[k]) for k in whole)  # the switch changes what is trained


def test_ada_augment():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32, requires_grad=True)
    assert ada_augment(x, 0.0) is x
    y = ada_augment(x, 1.0)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # translation alone is a permutation of pixels with reflect padding: a constant image stays constant
    c = torch.full((4, 3, 32, 32), 0.3)
    assert torch.allclose(ada_augment(c, 1.0).std(dim=[2, 3]), torch.zeros(4, 3), atol=1e-6)


def test_two_process_gloo_torchrun(tmp_path: Path):
    script = tmp_path / "ddp_train.py"
    script.write_text(
        SOURCE
        + textwrap.dedent(
            f"""
            import sys
            from facedis_aug.gan.config import GanConfig
            from facedis_aug.gan.train import train_gan
            cfg = GanConfig(**{dict(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=32,
                                     batch=B, kimg=3 * 2 * B / 1000, decorr_samples=64, snapshot_images=4, pl_interval=2,
                                     r1_interval=2, log_kimg=0.008, snapshot_kimg=1.0, checkpoint_kimg=1.0)!r})
            train_gan(cfg, blobs, sys.argv[1], seed=0)
            """
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = read_json(tmp_path / "run" / "checkpoint.json")
    assert info["step"] == 3 and info["world_size"] == 2 and info["kimg"] == pytest.approx(0.024)
    assert (tmp_path / "run" / "gan.safetensors").exists()  # and train_gan checked the replicas agree


def test_noise_off_leaves_noise_strengths_at_zero_and_bf16_trains(tmp_path: Path):
    """gan.noise=false trains without noise inputs: every noise_strength keeps its initial 0 while the
    convolution weights move; the same steps under CPU bf16 autocast stay finite."""
    cfg = replace(CFG, ada=False)
    for name, c in (("fp32", replace(cfg, noise=False)), ("bf16", replace(cfg, noise=False, precision="bf16"))):
        state = _final_state(Path(_run(tmp_path / name, cfg=c)).parent)
        strengths = [k for k in state if k.startswith(("G.", "G_ema.")) and k.endswith("noise_strength")]
        assert strengths and all(float(state[k]) == 0.0 for k in strengths), name
        assert all(torch.isfinite(v).all() for k, v in state.items() if v.is_floating_point()), name
    on = _final_state(Path(_run(tmp_path / "on", cfg=cfg)).parent)
    assert any(float(on[k]) != 0.0 for k in strengths)  # with noise the strengths do learn


def test_auto_precision_trains_in_fp32_on_a_cpu_without_native_bf16(tmp_path: Path, monkeypatch):
    """gan.precision auto resolves per host and the run's stats.jsonl records what it used."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    run = Path(_run(tmp_path / "auto", cfg=replace(CFG, precision="auto", ada=False))).parent
    lines = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    used = {rec["precision"] for rec in lines if "s_per_step" in rec}
    assert used == {"fp32"}
