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
    assert [r["long_range"] for r in rows] == ["an", "sa", "none"]  # side by side, the same networks otherwise
    assert all(r["iterations"] == 2 and r["images_per_second"] > 0 for r in rows)
    assert rows[2]["overhead_vs_none"] == 0.0
    assert rows[0]["overhead_vs_none"] == rows[0]["seconds_per_iteration"] / rows[2]["seconds_per_iteration"] - 1
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["config"] == "demo" and "torch" in saved["meta"]


def test_long_range_variants_change_only_the_long_range_module():
    g, d = gan_throughput._networks("paper", "sa")
    assert (g["long_range"], d["long_range"], d["long_range_block"]) == ("sa", "sa", 1)
    g, d = gan_throughput._networks("demo", "none")
    demo = gan_throughput.CONFIGS["demo"]
    assert {k: v for k, v in g.items() if k != "long_range"} == {
        k: v for k, v in demo["generator"].items() if k != "long_range"
    }
