"""The whole pipeline, end to end, on a micro recipe: gan -> decompose -> directions -> export.

Sizes are tiny so this runs in about a minute on 2 CPU cores; it checks the stages hand over files
that the next stage (and the user-facing Bundle) can read, not the quality of anything learned.
"""
from pathlib import Path

import pytest
import torch

from facedis_aug import Bundle
from facedis_aug.pipeline import run_pipeline, stage_status
from facedis_aug.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]

MICRO = [
    "run.preview_images=4",
    "data.synthetic.num_images=256",
    "gan.z_dim=16", "gan.w_dim=16", "gan.mapping_layers=2", "gan.channel_base=256", "gan.channel_max=16",
    "gan.batch=4", "gan.kimg=0.008", "gan.decorr_samples=32", "gan.snapshot_kimg=0.004", "gan.checkpoint_kimg=0.004",
    "gan.log_kimg=0.004",
    "decompose.image_size=32", "decompose.channels=8", "decompose.bottleneck=16", "decompose.head_channels=8",
    "decompose.conf_channels=8", "decompose.conf_bottleneck=16", "decompose.batch=4", "decompose.iterations=3",
    "decompose.aug_buffer=32", "decompose.snapshot_every=2", "decompose.checkpoint_every=2", "decompose.perceptual_weight=0",
    "directions.num_pairs=40", "directions.jacobian_pairs=40", "directions.num_samples=64", "directions.P=6",
    "directions.iterations=5", "directions.num_clusters=2", "directions.batch_size=20",
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
    assert status == {"gan": "done", "decompose": "done", "directions": "done", "export": "done"}
    done = stage_status(out)
    assert all(done[s] is not None for s in status)
    for rel in ["gan/gan.safetensors", "decompose/decomposer.safetensors", "directions/directions.safetensors",
                "directions/directions.json", "export/bundle/manifest.json", "data_preview.png", "recipe.yaml"]:
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
