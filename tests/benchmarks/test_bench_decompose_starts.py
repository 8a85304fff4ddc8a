import json
import math

from benchmarks.bench_decompose_starts import main, window_means


def test_window_means_average_the_logged_steps_of_each_window():
    stats = [{"step": 100, "total": 1.0}, {"step": 190, "total": 3.0}, {"step": 200, "total": 5.0}, {"step": 450}]
    out = window_means(stats, windows=((100, 200), (200, 300), (400, 500)))
    assert out["loss 100-200"] == 2.0 and out["loss 200-300"] == 5.0 and math.isnan(out["loss 400-500"])


def test_reads_cached_runs_with_their_restart_scores(tmp_path):
    run = tmp_path / "cache" / "arm-x-0123456789"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"arm": "arm-x", "data": {"seed": 2}, "config": {"iterations": 9},
                                                 "metrics": {"yaw_slope": 0.5, "yaw_r": 0.9}}))
    (run / "stats.jsonl").write_text("\n".join(json.dumps({"step": s, "total": 0.2}) for s in range(100, 500, 10)))
    (run / "restarts.json").write_text(json.dumps({"steps": 3, "scores": [0.3, 0.1], "chosen": 1}))
    main(["--arms", "arm-x", "--cache-dir", str(tmp_path / "cache"), "--name", "s", "--out-dir", str(tmp_path)])
    (row,) = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert row["seed"] == 2 and row["loss 300-400"] == 0.2 and row["start scores"] == "0.3000 / 0.1000" and row["chosen"] == 2
