"""`python -m train_gan`: run folder layout, stage skipping, one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from facedis_aug import pipeline
from facedis_aug.ops.dataconf import ConfigError
from facedis_aug.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny.yaml"


def run_cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "train_gan", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_bad_key_is_one_line_without_traceback(tmp_path):
    r = run_cli("--recipe", TINY, "--out", tmp_path / "run", "gan.resolutoin=64")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "gan.resolutoin" in lines[0]
    assert "resolution" in lines[0]  # names the valid keys


def test_missing_data_folder_is_one_line(tmp_path):
    r = run_cli("--recipe", TINY, "--out", tmp_path / "run", "--data", tmp_path / "nowhere", "run.stages=[]")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "nowhere" in r.stderr


def test_run_folder_with_preview(tmp_path):
    out = tmp_path / "run"
    r = run_cli("--recipe", TINY, "--out", out, "run.stages=[]", "run.preview_images=16")
    assert r.returncode == 0, r.stderr
    assert (out / "recipe.yaml").is_file() and (out / "data_preview.png").is_file()
    resolved = load_recipe(out / "recipe.yaml")
    assert resolved.run.preview_images == 16 and resolved.gan.resolution == load_recipe(TINY).gan.resolution


def test_stages_skip_when_done_and_recipe_is_fixed(tmp_path, monkeypatch):
    calls = []

    def fake_stage(ctx):
        calls.append(ctx.run_dir)
        (ctx.stage_dir("gan") / "gan.safetensors").write_bytes(b"x")
        return {"weights": "gan/gan.safetensors"}

    monkeypatch.setattr(pipeline, "stage_functions", lambda: {"gan": fake_stage})
    monkeypatch.setattr(pipeline, "write_data_preview", lambda recipe, path: path.write_bytes(b""))
    recipe = load_recipe(TINY, ["run.stages=[gan]"])
    out = tmp_path / "run"
    assert pipeline.run_pipeline(recipe, out, verbose=False) == {"gan": "done"}
    assert pipeline.run_pipeline(recipe, out, verbose=False) == {"gan": "skipped"}
    assert len(calls) == 1
    done = json.loads((out / "gan" / "DONE.json").read_text())
    assert done["outputs"] == {"weights": "gan/gan.safetensors"}
    events = [json.loads(l)["event"] for l in (out / "log.jsonl").read_text().splitlines()]
    assert events == ["start", "done", "skip"]
    with pytest.raises(ConfigError, match="different recipe .*run.seed"):
        pipeline.run_pipeline(load_recipe(TINY, ["run.stages=[gan]", "run.seed=5"]), out, verbose=False)
    with pytest.raises(ConfigError, match="different recipe .*gan.batch"):
        pipeline.run_pipeline(load_recipe(TINY, ["run.stages=[gan]", "gan.batch=8"]), out, verbose=False)
    # a stage that never started may still change its own settings
    assert pipeline.run_pipeline(load_recipe(TINY, ["run.stages=[gan]", "decompose.batch=8"]), out, verbose=False) == {
        "gan": "skipped"
    }
    # and the gan's metrics settings only measure: changing them is no other recipe
    assert pipeline.run_pipeline(load_recipe(TINY, ["run.stages=[gan]", "gan.metrics.enabled=false"]), out, verbose=False) == {
        "gan": "skipped"
    }
    # nor is the precision (bf16 on one host, fp32 on another)
    assert pipeline.run_pipeline(load_recipe(TINY, ["run.stages=[gan]", "gan.precision=fp32"]), out, verbose=False) == {
        "gan": "skipped"
    }


def test_failed_stage_is_logged_and_not_marked_done(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "stage_functions", lambda: {"gan": broken})
    monkeypatch.setattr(pipeline, "write_data_preview", lambda recipe, path: path.write_bytes(b""))
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        pipeline.run_pipeline(load_recipe(TINY, ["run.stages=[gan]"]), out, verbose=False)
    assert not (out / "gan" / "DONE.json").exists()
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "failed" and "boom" in last["error"]


def test_overrides_may_come_before_the_out_flag():
    from train_gan.main import build_parser

    args = build_parser().parse_intermixed_args(["--recipe", "r.yaml", "gan.kimg=1", "--out", "o", "gan.batch=4"])
    assert args.overrides == ["gan.kimg=1", "gan.batch=4"] and args.out == "o"
