"""bench_gan_run: windows of a run's logged s/step, resumed runs, bad files."""
import json

import pytest

from benchmarks import bench_gan_run


def _write_stats(run, lines):
    (run / "gan").mkdir(parents=True)
    (run / "gan" / "stats.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")


def test_windows_mean_each_kimg_bin_and_keep_the_last_line_of_a_resumed_kimg():
    lines = [{"kimg": k, "s_per_step": 1.0} for k in (1, 2, 3, 4)]
    lines += [{"kimg": 3, "s_per_step": 3.0}, {"kimg": 4, "s_per_step": 3.0}]  # resumed from 2: 3 and 4 logged again
    w = bench_gan_run.windows(lines, 2)
    assert [r["kimg"] for r in w] == ["0.0-2.0", "2.0-4.0"]
    assert w[0]["s_per_step"] == pytest.approx(1.0)
    assert w[1]["s_per_step"] == pytest.approx(3.0)  # the resumed lines replace the first ones
    assert w[1]["lines"] == 2


def test_main_writes_table_and_picture_with_the_slowdown(tmp_path):
    run = tmp_path / "run"
    _write_stats(run, [{"kimg": k / 2, "s_per_step": 0.5 + 0.01 * k, "cpu_s_per_step": 0.5, "load1": 1.0}
                       for k in range(1, 41)] + [{"event": "metrics", "fid": 3.0}])  # non-training lines are skipped
    out = tmp_path / "out"
    res = bench_gan_run.main(["--runs", str(run), "--bins", "4", "--name", "t", "--out-dir", str(out)])
    rows = [r for r in res["rows"] if "vs_first" in r]
    assert len(rows) == 4
    # windows of 10 lines each: means 0.555, 0.655, 0.755, 0.855
    assert rows[-1]["vs_first"] == pytest.approx(0.855 / 0.555)
    assert (out / "t.md").is_file() and (out / "t.png").stat().st_size > 0
    assert json.loads((out / "t.json").read_text())["series"]["run"][0]["kimg"] == 0.5


def test_missing_and_cut_files_are_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        bench_gan_run.read_stats(tmp_path)
    (tmp_path / "gan").mkdir()
    (tmp_path / "gan" / "stats.jsonl").write_text('{"kimg": 1, "s_per_step": 1}\n{"kimg": 2, "s_p')
    with pytest.raises(SystemExit, match=r"stats.jsonl:2: not JSON"):
        bench_gan_run.read_stats(tmp_path)
