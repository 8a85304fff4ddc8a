"""`synthesize`: synthetic sets written to disk in three formats, read back with their labels, resumable."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from facedis_aug.augment.synthesize import crop_geometry, synthesize
from facedis_aug.augment.synthetic import SyntheticPoseFaces
from facedis_aug.testing import make_tiny_bundle
from facedis_aug.cli import main as cli_main
from facedis_aug.data.folder import ImageFolderFaces
from facedis_aug.data.recordio import RecordFaces

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle")


def _ds(bundle, ids=3, per=2, seed=0):
    return SyntheticPoseFaces(bundle, ids, per, yaw=(-60, 60), seed=seed, batch_size=4)


def _lines(out):
    return [json.loads(x) for x in (Path(out) / "labels.jsonl").read_text().splitlines()]


def test_crop_conventions():
    assert crop_geometry("arcface", None, 32) == (112, 112) and crop_geometry("casia", None, 32) == (112, 96)
    assert crop_geometry("none", None, 32) == (32, 32) and crop_geometry("casia", 56, 32) == (56, 48)
    with pytest.raises(ValueError, match="crop must be"):
        crop_geometry("vgg", None, 32)


def test_folder_round_trip_with_labels(bundle, tmp_path):
    ds = _ds(bundle)
    r = synthesize(ds, tmp_path / "f", fmt="folder", crop="arcface", size=32, chunk=4, progress=False)
    assert r["images"] == 6 and r["written"] == 6
    back = ImageFolderFaces(tmp_path / "f", resolution=32)
    assert len(back) == 6 and back.classes == ["0", "1", "2"]
    lines = _lines(tmp_path / "f")
    assert [d["identity"] for d in lines] == [0, 0, 1, 1, 2, 2]
    assert [d["asked_yaw"] for d in lines] == pytest.approx(list(ds.yaws()), abs=1e-3)
    assert all(-90 <= d["delivered_yaw"] <= 90 and len(d["bundle_sha256"]) == 64 for d in lines)
    # the written image is the dataset's own render (JPEG q95), at the crop's size
    x, _ = back[0]
    err = (x - ds[0][0]).abs()  # the tiny bundle draws noise-like texture, hard on JPEG: judge the mean
    other = (x - ds[5][0]).abs()
    assert err.mean() < 0.08 and other.mean() > 4 * err.mean(), (err.mean(), other.mean())  # measured 0.048 vs 0.41


def test_rec_is_read_back_and_trains_the_gan_stage(bundle, tmp_path):
    from facedis_aug.pipeline import run_pipeline
    from facedis_aug.recipe import load_recipe

    r = synthesize(_ds(bundle), tmp_path / "r", fmt="rec", crop="casia", size=28, chunk=4, progress=False)
    rec = tmp_path / "r" / "train.rec"
    assert r["written"] == 6 and rec.is_file() and (tmp_path / "r" / "train.idx").is_file()
    assert not list((tmp_path / "r").glob("*.partial"))
    back = RecordFaces(rec, resolution=32)
    assert back.targets == [0, 0, 1, 1, 2, 2] and back.keys == [1, 2, 3, 4, 5, 6] and not back.skipped
    assert back.load_rgb(0).size == (24, 28)  # casia: 112x96 proportions (W x H)
    micro = ["data.source=folder", f"data.path={rec}", "run.stages=[gan]", "run.preview_images=4",
             "gan.z_dim=16", "gan.w_dim=16", "gan.mapping_layers=2", "gan.channel_base=256", "gan.channel_max=16",
             "gan.batch=4", "gan.kimg=0.008", "gan.decorr_samples=32", "gan.snapshot_kimg=0.004",
             "gan.checkpoint_kimg=0.004", "gan.log_kimg=0.004", "gan.metrics.enabled=false"]
    status = run_pipeline(load_recipe(REPO / "recipes" / "tiny.yaml", micro), tmp_path / "run", verbose=False)
    assert status == {"gan": "done"} and (tmp_path / "run" / "gan" / "gan.safetensors").is_file()


def test_webdataset_shards_round_trip(bundle, tmp_path):
    import webdataset as wds

    synthesize(_ds(bundle), tmp_path / "w", fmt="wds", shard_size=4, progress=False)
    shards = sorted(str(p) for p in (tmp_path / "w").glob("shard-*.tar"))
    assert [Path(s).name for s in shards] == ["shard-000000.tar", "shard-000001.tar"]
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("jpg", "cls", "json"))
    assert [c for _, c, _ in samples] == [0, 0, 1, 1, 2, 2]
    assert samples[0][0].size == (32, 32) and samples[3][2]["index"] == 3


@pytest.mark.parametrize("fmt", ["folder", "rec", "wds"])
def test_an_interrupted_run_resumes_to_the_same_output(bundle, tmp_path, fmt, monkeypatch):
    whole = tmp_path / "whole"
    synthesize(_ds(bundle, ids=5), whole, fmt=fmt, chunk=4, shard_size=4, progress=False)
    ds = _ds(bundle, ids=5)
    calls = {"n": 0}
    render = ds.render

    def crash_on_third(idx):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return render(idx)

    monkeypatch.setattr(ds, "render", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        synthesize(ds, tmp_path / "cut", fmt=fmt, chunk=4, shard_size=4, progress=False)
    assert len(_lines(tmp_path / "cut")) == 8  # two whole chunks logged
    r = synthesize(_ds(bundle, ids=5), tmp_path / "cut", fmt=fmt, chunk=4, shard_size=4, progress=False)
    assert r["written"] == 2 and _lines(tmp_path / "cut") == _lines(whole)
    files = lambda d: sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(tmp_path / "cut") == files(whole)
    if fmt in ("rec", "folder"):
        for rel in files(whole):
            if rel.suffix != ".tar":  # tar headers carry a time stamp; their members are compared above via the lines
                assert (tmp_path / "cut" / rel).read_bytes() == (whole / rel).read_bytes(), rel
    with pytest.raises(ValueError, match="another bundle or seed"):
        synthesize(_ds(bundle, ids=5, seed=1), tmp_path / "cut", fmt=fmt, chunk=4, shard_size=4, progress=False)


def test_the_command_writes_a_set_and_a_complement(bundle, tmp_path, capsys):
    assert cli_main(["synthesize", "--bundle", str(bundle), "--out", str(tmp_path / "c"), "--identities", "2",
                     "--per-identity", "2", "--format", "rec", "--yaw", "-30", "30"]) == 0
    assert "4 images (4 written now, 32x32, rec)" in capsys.readouterr().out
    assert RecordFaces(tmp_path / "c" / "train.rec", 32).targets == [0, 0, 1, 1]
    # the synthetic complement of a real set: labels continue after its classes
    assert cli_main(["synthesize", "--bundle", str(bundle), "--out", str(tmp_path / "s"), "--from-real",
                     str(tmp_path / "c" / "train.rec"), "--per-identity", "2"]) == 0
    lines = _lines(tmp_path / "s")
    assert lines and min(d["identity"] for d in lines) >= 2
    assert cli_main(["synthesize", "--bundle", str(bundle), "--out", str(tmp_path / "x")]) == 2
    assert "give --identities" in capsys.readouterr().err
