"""Smoke test of the pose-balance benchmark (benchmarks/bench_pose_balance.py --quick).

Runs the whole benchmark at toy size (random-weight bundle, 24 identities, 6 training steps, 2
folds) and checks what it promises: the result files, four arms with accuracies in [0, 1], pair
sets with equal positives and negatives whose profile side really has |yaw| >= 60, histograms
that tell the arms apart, reloadable oracle weights, and a rerun that skips every finished arm.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch


from benchmarks import bench_pose_balance as B
from benchmarks.recognizer import embed, load_recognizer


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("pb")
    argv = ["--quick", "--cache-dir", str(root / "cache"), "--out-dir", str(root / "out")]
    return root, argv, B.main(argv)


def test_quick_mode_writes_the_table_with_four_arms(quick):
    root, _, _ = quick
    out = root / "out"
    for suffix in (".json", ".md", "_yaw.png", "_synthetic.png"):
        assert (out / f"pose_balance_quick{suffix}").is_file()
    doc = json.loads((out / "pose_balance_quick.json").read_text())
    assert [r["arm"] for r in doc["rows"]] == [B.ARMS[a] for a in B.ARMS]
    assert doc["command"] and doc["machine"]["cpu"] and doc["date"]
    md = (out / "pose_balance_quick.md").read_text()
    assert "QUICK smoke test" in md and "- command:" in md and "- machine:" in md and "**Verdict.**" in md
    for arm in B.ARMS:
        acc = doc["arms"][arm]["0"]["accuracy"]
        for proto in ("FF", "FP"):
            a = acc[proto]
            assert 0.0 <= a["mean"] <= 1.0 and a["std"] >= 0.0 and len(a["per_fold"]) == 2
            assert all(0.0 <= x <= 1.0 for x in a["per_fold"])
        assert doc["arms"][arm]["0"]["train"]["steps"] == 6
    syn = doc["bundle"]["synthetic"]
    assert syn["n"] == doc["arms"]["rebalanced"]["0"]["n_synthetic"] and syn["share_abs_s_gt_10"] == 0.0  # tiny bundle: 30 deg/sigma


def test_pair_sets_are_balanced_and_profiles_are_profiles(quick):
    _, _, first = quick
    test, pairs = first["test"], first["pair_sets"]
    yaw, ident, prof = test["yaw"].abs().numpy(), test["labels"].numpy(), test["is_profile"].numpy()
    assert (yaw[prof] >= 60).all() and (yaw[prof] <= 90).all() and (yaw[~prof] <= 15).all()
    for proto in ("FF", "FP"):
        d = pairs[proto]
        for f in np.unique(d["fold"]):
            m = d["fold"] == f
            assert d["same"][m].sum() == (~d["same"][m]).sum() > 0
        assert (d["same"] == (ident[d["a"]] == ident[d["b"]])).all()
        assert (yaw[d["a"]] <= 15).all()
    assert (yaw[pairs["FP"]["b"]] >= 60).all() and (yaw[pairs["FF"]["b"]] <= 15).all()
    assert first["pairs"]["FP"]["min_abs_yaw_second"] >= 60


def test_histograms_and_data_of_the_arms(quick):
    _, _, first = quick
    res = {a: first["results"][a][0] for a in B.ARMS}
    h_real, h_oracle = res["real"]["histograms"]["true"], res["oracle"]["histograms"]["true"]
    assert h_real["n"] == h_oracle["n"] == res["real"]["num_images"] == 24 * 4  # same images, only yaw differs
    assert h_oracle["entropy_norm"] > h_real["entropy_norm"] and h_oracle["tv_to_uniform"] < h_real["tv_to_uniform"]
    reb = res["rebalanced"]
    assert reb["n_synthetic"] > 0 and reb["num_images"] == 96 + reb["n_synthetic"] and reb["n_synthetic"] <= 96
    assert reb["num_classes"] > 24  # synthetic identities come after the real classes
    # the synthetic part is drawn where the bundle's own estimate of the real yaws has a deficit
    after = reb["rebalanced"]["bundle_histogram_after"]
    assert sum(after["counts"]) == reb["num_images"]
    assert reb["histograms"]["synthetic_claimed"]["n"] == reb["n_synthetic"]


def test_real_set_comes_from_the_world_and_the_oracle_changes_only_yaw(quick):
    from facedis_aug import SyntheticFaces
    from facedis_aug.data.synthetic import SyntheticWorld
    from facedis_aug.ops.io import load_safetensors

    root, _, _ = quick
    real, _ = load_safetensors(root / "cache" / "data_real.safetensors")
    oracle, _ = load_safetensors(root / "cache" / "data_oracle.safetensors")
    idx = real["indices"]
    # identities are those of the world's own stream (what SyntheticFaces yields at these indices)
    pool = SyntheticFaces(int(idx.max()) + 1, 32, seed=0, num_identities=24, pose="casia")
    plain, labels = pool.batch(idx[:12])
    assert torch.equal(labels["identity"], real["labels"][:12])
    assert torch.equal(labels["yaw"], real["yaw"][:12])
    # per-image nuisance: the same faces with other clothes and backdrops (and reproducible)
    again = B.PD.render_set(SyntheticWorld(32, 0, 24), idx[:12], real["labels"][:12], "casia")
    assert torch.equal(again["images"], real["images"][:12])
    assert (plain * 255 - real["images"][:12].float()).abs().mean() > 10
    same = B.PD.render_set(SyntheticWorld(32, 0, 24), idx[:12], real["labels"][:12], "casia", per_image=False)
    assert (same["images"].float() - plain * 255).abs().max() <= 0.51  # nuisance "identity": the pool itself
    assert torch.equal(oracle["indices"], idx) and torch.equal(oracle["labels"], real["labels"])
    assert (oracle["yaw"] != real["yaw"]).float().mean() > 0.9
    assert real["labels"].bincount().tolist() == [4] * 24


def test_a_trained_bundle_learns_from_the_real_images_only(quick, tmp_path, monkeypatch):
    """Full-mode path without training: the train_gan command gets the real arm's PNG folder."""
    from facedis_aug.testing import make_tiny_bundle
    from facedis_aug.data.folder import ImageFolderFaces

    root, _, _ = quick
    _, s = B.parse(["--quick"])
    s.quick = False  # take the full-mode branch of resolve_bundle on the quick cache's data
    cache = B.Cache.__new__(B.Cache)
    cache.root, cache.settings_json = root / "cache", {}
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        make_tiny_bundle(Path(cmd[cmd.index("--out") + 1]) / "export" / "bundle")

    monkeypatch.setattr(B.subprocess, "run", fake_run)
    bundle, info = B.resolve_bundle(str(tmp_path / "run"), cache, s)
    (cmd,) = calls
    assert cmd[1:3] == ["-m", "train_gan"] and cmd[cmd.index("--recipe") + 1].endswith("recipes/tiny.yaml")
    folder = Path(cmd[cmd.index("--data") + 1])
    faces = ImageFolderFaces(folder, resolution=32)
    assert len(faces) == 96 and faces.classes == ["."]  # unlabelled: one flat folder
    real, _ = B.real_data(cache, s)
    first = sorted(folder.glob("img_*.png"))[0].name
    assert first == f"img_{int(real['indices'].min()):08d}.png"
    assert (bundle / "manifest.json").is_file() and info["path"] == str(tmp_path / "run")
    ok = {"data": {"source": "folder", "path": str(folder)}}
    assert B.world_check(ok, cache, s) == ""
    assert B.world_check({"data": {"source": "synthetic"}}, cache, s).startswith("WARNING")


def test_oracle_weights_reload_for_identity_scores(quick):
    root, _, first = quick
    path = root / "cache" / "recognizer_oracle_seed0.safetensors"
    model = load_recognizer(path)
    e = embed(model, first["test"]["images"][:5].float() / 255)
    assert e.shape == (5, 32) and torch.allclose(e.norm(dim=1), torch.ones(5), atol=1e-5)
    assert model.meta["arm"] == "oracle"


def test_rerun_skips_finished_arms_and_refuses_other_settings(quick):
    root, argv, first = quick
    again = B.main(argv)
    assert sorted(again["skipped"]) == sorted(f"{a}/0" for a in B.ARMS)
    for a in B.ARMS:
        assert again["results"][a][0]["accuracy"] == first["results"][a][0]["accuracy"]
    assert not list((root / "cache").glob("ckpt_*"))  # finished arms leave no checkpoint behind
    # another seed for one arm: only that runs, and the table shows every finished seed of every arm
    more = B.main(argv + ["--arms", "real", "--seeds", "1"])
    assert more["skipped"] == [] and list(more["results"]) == ["real"]
    rows = {r["arm"]: r for r in json.loads((root / "out" / "pose_balance_quick.json").read_text())["rows"]}
    assert len(rows) == 4 and rows[B.ARMS["real"]]["seeds"] == "0, 1" and rows[B.ARMS["oracle"]]["seeds"] == "0"
    assert rows[B.ARMS["real"]]["FP seed std"] != "-"
    # a new bundle for arm (c): refused on the same cache, accepted once (c) is forgotten; (a), (b), (d) stay cached
    from facedis_aug.testing import make_tiny_bundle

    other = make_tiny_bundle(root / "other_bundle", seed=3)
    with pytest.raises(SystemExit, match="made with bundle"):
        B.main(argv + ["--bundle", str(other), "--seeds", "1", "--arms", "rebalanced"])
    redo = B.main(argv + ["--bundle", str(other), "--forget-rebalanced"])
    assert sorted(redo["skipped"]) == ["classical/0", "oracle/0", "real/0"]
    assert redo["results"]["rebalanced"][0]["accuracy"] != first["results"]["rebalanced"][0]["accuracy"]
    with pytest.raises(SystemExit, match="other settings"):
        B.main(argv + ["--steps", "7"])
