"""Smoke test of the GAN throughput benchmark (tiny settings)."""

import json

from benchmarks import gan_throughput


def test_benchmark_runs_and_writes_json(tmp_path, monkeypatch):
    monkeypatch.setitem(gan_throughput.CONFIGS, "demo", {**gan_throughput.CONFIGS["demo"], "g_ch": 1, "d_ch": 1})
    out = tmp_path / "bench.json"
    rows = gan_throughput.main(
        [
            "--configs",
            "demo",
            "--devices",
            "cpu",
            "--demo-batch",
            "4",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--json",
            str(out),
        ]
    )
    assert len(rows) == 1 and rows[0]["iterations"] == 2
    assert rows[0]["images_per_second"] > 0
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["config"] == "demo" and "torch" in saved["meta"]
