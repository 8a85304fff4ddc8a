"""The whole pipeline, end to end, on a micro recipe: gan -> decompose -> directions -> encode -> export.

Sizes are tiny so this runs in about a minute on 2 CPU cores; it checks the stages hand over files
that the next stage (and the user-facing Bundle) can read, not the quality of anything learned.
"""
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from facedis_aug import Bundle
from facedis_aug.ops.io import read_json
from facedis_aug.ops.dataconf import ConfigError
from facedis_aug.pipeline import STAGES, run_pipeline
from facedis_aug.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]

MICRO = [
    "run.preview_images=4",
    "data.synthetic.num_images=256",
    "gan.z_dim=16", "gan.w_dim=16", "gan.mapping_layers=2", "gan.channel_base=256", "gan.channel_max=16",
    "gan.batch=4", "gan.kimg=0.008", "gan.decorr_samples=32", "gan.snapshot_kimg=0.004", "gan.checkpoint_kimg=0.004",
    "gan.log_kimg=0.004", "gan.metrics.enabled=false",  # the tiny recipe's FID at the end costs ~30 s
    "decompose.image_size=32", "decompose.channels=8", "decompose.bottleneck=16", "decompose.head_channels=8",
    "decompose.conf_channels=8", "decompose.conf_bottleneck=16", "decompose.batch=4", "decompose.iterations=3",
    "decompose.aug_buffer=32", "decompose.snapshot_every=2", "decompose.checkpoint_every=2", "decompose.perceptual_weight=0",
    "directions.num_pairs=40", "directions.jacobian_pairs=40", "directions.num_samples=64", "directions.P=6",
    "directions.iterations=5", "directions.num_clusters=2", "directions.batch_size=20",
    "encode.backbone=test_efficientnet", "encode.batch=4", "encode.iterations=3", "encode.eval_samples=8",
    "encode.refine_steps=1", "encode.snapshot_every=2", "encode.checkpoint_every=2",
    "export.exporter=torchscript",
]


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("e2e") / "run"
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", MICRO)
    status = run_pipeline(recipe, out, verbose=False)
    return out, recipe, status


def test_all_stages_finish_and_hand_over_files(micro_run):
    out, recipe, status = micro_run
    assert status == {"gan": "done", "decompose": "done", "directions": "done", "encode": "done", "export": "done"}
    done = {s: read_json(out / s / "DONE.json") if (out / s / "DONE.json").exists() else None for s in STAGES}
    assert all(done[s] is not None for s in status)
    for rel in ["gan/gan.safetensors", "decompose/decomposer.safetensors", "directions/directions.safetensors",
                "directions/directions.json", "encode/encoder.safetensors", "encode/eval.json", "export/encoder.onnx",
                "export/bundle/manifest.json", "data_preview.png", "recipe.yaml"]:
        assert (out / rel).is_file(), rel
    # a second run skips every finished stage
    assert set(run_pipeline(recipe, out, verbose=False).values()) == {"skipped"}


def test_bundle_from_pipeline_generates_and_edits(micro_run):
    out, recipe, _ = micro_run
    bundle = Bundle.load(out / "export" / "bundle")
    assert "yaw" in bundle.directions and "pitch" in bundle.directions
    w = bundle.sample_w(3, seed=0)
    assert w.shape == (3, recipe.gan.w_dim)
    images = bundle.generate(w=w)
    assert images.shape == (3, 3, recipe.gan.resolution, recipe.gan.resolution)
    assert torch.isfinite(images).all()
    v = bundle.directions["yaw"]
    w2 = bundle.edit(w, "yaw", 2.0)
    # Eq. 4: the projection on v_yaw becomes s * sigma
    assert torch.allclose(w2 @ v, torch.full((3,), 2.0 * bundle.sigma("yaw")), atol=1e-4)


def test_bundle_from_pipeline_turns_a_real_image(micro_run):
    from facedis_aug.augment.transforms import PoseExtrapolate
    from facedis_aug.data.synthetic import SyntheticFaces

    out, recipe, _ = micro_run
    bundle = Bundle.load(out / "export" / "bundle")
    assert {"encoder.safetensors", "encoder.onnx"} <= set(bundle.manifest["files"])
    photo = SyntheticFaces(1, 48, seed=5)[0][0]  # a world face at another size than the generator's
    w = bundle.encode(photo[None] * 2 - 1)
    assert w.shape == (1, recipe.gan.w_dim) and torch.isfinite(w).all()
    # three steps of training give no usable encoder or calibration: face check and reach limit off here
    for backend in ("torch", "onnx"):
        turned = PoseExtrapolate(bundle.path, yaw=(30, 30), backend=backend, face_check=False, max_s=None)(photo)
        assert turned.shape == (3, 48, 48) and float(turned.min()) >= 0 and float(turned.max()) <= 1


def test_run_folder_from_before_the_encode_stage_resumes(micro_run, tmp_path):
    """An old run folder (no encode section, no encode stage, no export.encoder key) is not refused,
    its finished stages are skipped, and the encode stage can be added to it."""
    out, recipe, _ = micro_run
    old = tmp_path / "old"
    shutil.copytree(out, old)
    shutil.rmtree(old / "encode")
    tree = yaml.safe_load((old / "recipe.yaml").read_text())
    del tree["encode"], tree["export"]["encoder"]
    tree["run"]["stages"] = ["gan", "decompose", "directions", "export"]
    (old / "recipe.yaml").write_text(yaml.safe_dump(tree))
    for done in old.glob("*/DONE.json"):  # DONE.json of that time recorded no input hashes
        rec = json.loads(done.read_text())
        rec.pop("inputs", None)
        done.write_text(json.dumps(rec))
    again = load_recipe(REPO / "recipes" / "tiny.yaml", MICRO)
    status = run_pipeline(again, old, verbose=False)
    assert status["export"] == "skipped" and status["encode"] == "done"


@pytest.mark.parametrize("pairs", ["false", "true"])
def test_decompose_stage_can_train_on_the_recipe_data(micro_run, tmp_path, pairs):
    """decompose.source=data: the decomposer reads the recipe's images (no w, so no yaw augmentation),
    also as same-identity pairs."""
    import json

    out, _, _ = micro_run
    run = tmp_path / "data_src"
    shutil.copytree(out, run)
    shutil.rmtree(run / "decompose")
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", MICRO + ["decompose.source=data", "run.stages=[decompose]",
                                                                  f"decompose.identity_pairs={pairs}"])
    assert recipe.decompose.identity_pairs == (pairs == "true")
    assert run_pipeline(recipe, run, verbose=False) == {"decompose": "done"}
    stats = [json.loads(line) for line in (run / "decompose" / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [0, 2] and all(s["n_aug"] == 0 and "v_yaw_updates" not in s for s in stats)
    assert (run / "decompose" / "decomposer.safetensors").is_file()


def test_training_longer_continues_and_the_stages_after_it_run_again(micro_run, tmp_path):
    from facedis_aug.ops.dataconf import ConfigError

    out, _, _ = micro_run
    run = tmp_path / "longer"
    shutil.copytree(out, run)
    with pytest.raises(ConfigError, match="gan.kimg"):  # shorter is a different recipe
        run_pipeline(load_recipe(REPO / "recipes" / "tiny.yaml", MICRO + ["gan.kimg=0.004"]), run, verbose=False)
    old_gan = (run / "gan" / "gan.safetensors").read_bytes()
    status = run_pipeline(load_recipe(REPO / "recipes" / "tiny.yaml", MICRO + ["gan.kimg=0.012"]), run, verbose=False)
    # decompose trains on the recipe's own images (tiny.yaml: decompose.source data), not the generator's: it stays
    assert status == {"gan": "done", "decompose": "skipped", **{s: "done" for s in ("directions", "encode", "export")}}
    steps = [json.loads(x)["step"] for x in (run / "gan" / "stats.jsonl").read_text().splitlines() if '"step"' in x]
    assert max(steps) == 3 and (run / "gan" / "gan.safetensors").read_bytes() != old_gan  # 2 steps, then a third
    assert (run / "directions.previous" / "DONE.json").is_file()  # the stale stage was set aside, not deleted
    assert not (run / "decompose.previous").exists()
    done = json.loads((run / "export" / "DONE.json").read_text())
    assert set(done["inputs"]) == {"gan/gan.safetensors", "decompose/decomposer.safetensors", "directions/directions.safetensors",
                                   "directions/directions.json", "encode/encoder.safetensors"}
    assert set(run_pipeline(load_recipe(REPO / "recipes" / "tiny.yaml", MICRO + ["gan.kimg=0.012"]), run,
                            verbose=False).values()) == {"skipped"}


def test_gan_stage_writes_metrics_at_snapshots_when_switched_on(tmp_path):
    torch.manual_seed(0)
    metrics = ["gan.metrics.enabled=true", "gan.metrics.num_images=16", "gan.metrics.kid_subsets=2",
               "gan.metrics.kid_subset_size=8", "gan.metrics.ppl=true", "gan.metrics.ppl_samples=4", "gan.metrics.batch_size=8"]
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", MICRO + metrics + ["run.stages=[gan]", "gan.metrics.at=snapshots"])
    assert run_pipeline(recipe, tmp_path / "run", verbose=False) == {"gan": "done"}
    lines = [json.loads(x) for x in (tmp_path / "run" / "gan" / "stats.jsonl").read_text().splitlines()]
    with_fid = [x for x in lines if "fid" in x]
    # one line per snapshot (every 0.004 kimg of 0.008), each labelled with the networks it used
    assert [x["kimg"] for x in with_fid] == pytest.approx([0.004, 0.008])
    for x in with_fid:
        assert x["fid"] >= 0 and x["num_fake"] == 16 and x["ppl"] >= 0
        assert x["feature_net"].startswith("fallback-") and x["perceptual_net"].startswith("fallback-")
    # "at: end" (the tiny recipe's): one evaluation, of the final generator
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", MICRO + metrics + ["run.stages=[gan]", "gan.metrics.at=end"])
    assert run_pipeline(recipe, tmp_path / "end", verbose=False) == {"gan": "done"}
    lines = [json.loads(x) for x in (tmp_path / "end" / "gan" / "stats.jsonl").read_text().splitlines()]
    assert [x["kimg"] for x in lines if "fid" in x] == pytest.approx([0.008])
    tiny = load_recipe(REPO / "recipes" / "tiny.yaml").gan.metrics
    assert tiny.enabled is True and tiny.at == "end" and tiny.ppl is False
    with pytest.raises(ConfigError):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["gan.metrics.at=sometimes"])


def test_decompose_on_the_recipe_data_trains_beside_gan(tmp_path):
    """run.side_by_side: with 2 threads, decompose (source data: no generator needed) runs in a second process
    while gan trains, and gives the decomposer the one-after-the-other run gives."""
    from facedis_aug.ops.io import load_safetensors

    stages = MICRO + ["decompose.source=data", "run.stages=[gan,decompose]"]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        side = load_recipe(REPO / "recipes" / "tiny.yaml", stages)
        assert run_pipeline(side, tmp_path / "side", verbose=False) == {"gan": "done", "decompose": "done"}
        assert torch.get_num_threads() == 2  # the gan's thread was given back
        seq = load_recipe(REPO / "recipes" / "tiny.yaml", stages + ["run.side_by_side=false"])
        assert run_pipeline(seq, tmp_path / "seq", verbose=False) == {"gan": "done", "decompose": "done"}
    finally:
        torch.set_num_threads(before)
    assert "decompose" in (tmp_path / "side" / "decompose" / "side.log").read_text()
    assert not (tmp_path / "seq" / "decompose" / "side.log").exists()
    a, _ = load_safetensors(tmp_path / "side" / "decompose" / "decomposer.safetensors")
    b, _ = load_safetensors(tmp_path / "seq" / "decompose" / "decomposer.safetensors")
    for k in a:  # one thread beside gan, two after it: another summation order (up to 1.6e-4 apart on an AVX2 host)
        torch.testing.assert_close(a[k], b[k], atol=1e-3, rtol=1e-3)
    events = [json.loads(line)["event"] for line in (tmp_path / "side" / "log.jsonl").read_text().splitlines()]
    assert events.count("done") == 2  # one per stage, the side process's own line included


def test_stage_order_moves_encode_ahead_of_a_running_side_decompose():
    from facedis_aug.pipeline import stage_order

    full = ["gan", "decompose", "directions", "encode", "export"]
    assert stage_order(full, 1, True) == ["gan", "encode", "decompose", "directions", "export"]
    assert stage_order(full, 1, False) == full  # decompose already done beside gan: nothing to wait for
    assert stage_order(full, 0, True) == full  # only when decompose is next
    assert stage_order(["gan", "decompose", "directions"], 1, True) == ["gan", "decompose", "directions"]
    moved = stage_order(full, 1, True)
    assert stage_order(moved, 2, True) == moved  # encode done: decompose is waited for as before


def test_encode_trains_while_the_side_decompose_finishes(tmp_path):
    """gan ends before its side decompose (here 100 steps against 2): the main process trains the encoder
    meanwhile, and every stage ends done, with the outputs the stages write."""
    stages = MICRO + ["decompose.source=data", "decompose.iterations=100", "decompose.restarts=1", "decompose.snapshot_every=1000",
                      "decompose.checkpoint_every=1000", "run.stages=[gan,decompose,encode]"]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        status = run_pipeline(load_recipe(REPO / "recipes" / "tiny.yaml", stages), tmp_path / "run", verbose=False)
    finally:
        torch.set_num_threads(before)
    assert status == {"gan": "done", "decompose": "done", "encode": "done"}
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    done = {x["stage"]: x["time"] for x in lines if x.get("event") == "done"}
    start = {x["stage"]: x["time"] for x in lines if x.get("event") == "start"}
    assert done["gan"] <= start["encode"] < done["decompose"]
    assert (tmp_path / "run" / "encode" / "encoder.safetensors").is_file()
    assert (tmp_path / "run" / "decompose" / "decomposer.safetensors").is_file()


def test_a_failed_side_decompose_stops_the_run_with_its_log(tmp_path):
    """The side process dies (here: a corrupt decompose checkpoint it tries to resume from); gan still
    finishes and keeps its result, and the run stops with one error naming decompose/side.log."""
    stages = MICRO + ["decompose.source=data", "run.stages=[gan,decompose]"]
    run = tmp_path / "run"
    (run / "decompose").mkdir(parents=True)
    (run / "decompose" / "checkpoint.safetensors").write_bytes(b"not a checkpoint")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match=r"decompose \(run beside gan\) failed, exit code [1-9].*side\.log ends: "):
            run_pipeline(load_recipe(REPO / "recipes" / "tiny.yaml", stages), run, verbose=False)
    finally:
        torch.set_num_threads(before)
    assert (run / "gan" / "DONE.json").is_file() and not (run / "decompose" / "DONE.json").exists()
