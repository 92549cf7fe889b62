"""The throughput benchmark runs and reports consistent numbers."""

import json

from benchmarks.inpaint_throughput import main


def test_benchmark_runs(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rows = main(
        ["--configs", "demo", "--devices", "cpu", "--batch", "1", "--iters", "1", "--warmup", "0"]
        + ["--n_critic", "2", "--json", str(out)]
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["batch"] == 1
    assert row["cycle_s"] > 0
    assert abs(row["data_images_per_s"] - 2 * row["g_images_per_s"]) < 1e-9
    assert json.loads(out.read_text()) == rows
    assert "| demo | an | cpu |" in capsys.readouterr().out
