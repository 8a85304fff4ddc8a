import json

from benchmarks.bench_gan_pose import final_fid


def test_final_fid_reads_the_last_metrics_line_of_the_run(tmp_path):
    assert final_fid(tmp_path) == (None, None)
    (tmp_path / "gan").mkdir()
    lines = [{"kimg": 4.0, "fid": 3.0, "feature_net": "fallback-random-conv-seed0"}, {"kimg": 4.5, "loss_G": 0.7},
             {"kimg": 8.0, "fid": 1.25, "feature_net": "inception-v3-local"}, {"kimg": 8.5, "loss_G": 0.6}]
    (tmp_path / "gan" / "stats.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert final_fid(tmp_path) == (1.25, "inception-v3-local")


def test_two_sample_test_tells_a_blob_apart_and_not_a_resample():
    import torch

    from benchmarks.bench_gan_pose import two_sample_test

    g = torch.Generator().manual_seed(0)
    # smooth random "faces": low-frequency noise upsampled to 16 px
    def faces(n):
        return torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, size=16, mode="bilinear")

    real, same = faces(512), faces(512)
    blob = faces(512)
    blob[:, :, 6:10, 6:10] = 1.0  # the same bright blob in the middle of every image
    alike = two_sample_test(real, same, steps=150, batch=32)
    apart = two_sample_test(real, blob, steps=150, batch=32)
    assert 0.4 <= alike["accuracy"] <= 0.6 and alike["cross_entropy"] > 0.6
    assert apart["accuracy"] >= 0.9 and apart["cross_entropy"] < 0.3
