"""Smoke test of the GAN throughput benchmark (tiny settings)."""

import json

from benchmarks import gan_throughput


def test_benchmark_runs_and_writes_json(tmp_path, monkeypatch):
    demo = gan_throughput.CONFIGS["demo"]
    assert demo["generator"]["ch"] > 1  # read from the shipped demo file
    tiny = {**demo, "generator": {**demo["generator"], "ch": 1}, "discriminator": {**demo["discriminator"], "ch": 1}}
    monkeypatch.setitem(gan_throughput.CONFIGS, "demo", tiny)
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
