"""Smoke test of the GAN throughput benchmark (tiny settings)."""

import json

import pytest
import yaml

from benchmarks import gan_throughput
from configs import config_path


def test_benchmark_runs_and_writes_json(tmp_path, monkeypatch, capsys):
    demo = gan_throughput.CONFIGS["demo"]
    shipped = yaml.safe_load(config_path("an_gan", "demo").read_text())
    assert demo["generator"]["ch"] == shipped["model"]["generator"]["init_args"]["ch"] > 1  # the shipped demo file
    assert demo["resolution"] == shipped["data"]["init_args"]["resolution"]
    assert demo["batch_size"] == shipped["data"]["init_args"]["batch_size"]
    assert (demo["n_dis"], demo["d_batch"]) == (shipped["model"]["n_dis"], shipped["model"]["d_batch"]) == (2, "joint")
    tiny = {**demo, "generator": {**demo["generator"], "ch": 1}, "discriminator": {**demo["discriminator"], "ch": 1}}
    monkeypatch.setitem(gan_throughput.CONFIGS, "demo", tiny)
    out = tmp_path / "bench.json"
    rows = gan_throughput.main(
        [
            "--configs",
            "demo",
            "--device",
            "cpu",
            "--demo-batch",
            "4",
            "--repeats",
            "3",
            "--threads",
            "1",
            "--warmup",
            "1",
            "--json",
            str(out),
        ]
    )
    assert [r["long_range"] for r in rows] == ["an", "sa", "none"]  # side by side, the same networks otherwise
    for row in rows:
        assert row["iterations"] == 3 and len(row["repeats_seconds"]) == 3 and row["threads"] == 1
        assert row["seconds_per_iteration"] == sorted(row["repeats_seconds"])[1]  # the median iteration
        assert row["n_dis"] == 2  # the demo file's
        assert row["images_per_second"] == pytest.approx(4 * 2 / row["seconds_per_iteration"])
    assert rows[2]["overhead_vs_none"] == 0.0 and rows[2]["overhead_vs_none_ms"] == 0.0
    assert rows[0]["overhead_vs_none"] == rows[0]["seconds_per_iteration"] / rows[2]["seconds_per_iteration"] - 1
    extra_ms = (rows[1]["seconds_per_iteration"] - rows[2]["seconds_per_iteration"]) * 1000
    assert rows[1]["overhead_vs_none_ms"] == pytest.approx(extra_ms)
    for row in rows:  # the modules timed in place: a part of every iteration
        assert len(row["module_repeats_seconds"]) == 3
        assert 0 < row["module_seconds"] == sorted(row["module_repeats_seconds"])[1] < row["seconds_per_iteration"]
    an, sa, none = rows
    assert none["module_vs_none_ms"] == 0.0
    for row in (an, sa):
        assert row["module_vs_none_ms"] == pytest.approx((row["module_seconds"] - none["module_seconds"]) * 1000)
        assert row["module_vs_none"] == pytest.approx(row["module_vs_none_ms"] / 1000 / none["seconds_per_iteration"])
    text = capsys.readouterr().out
    assert "| config | long-range | device | precision | batch | ms / iter (G + 2 D) | images/s | vs none ms |" in text
    cells = f"{an['module_seconds'] * 1000:.1f} | {an['module_vs_none_ms']:+.1f} | {an['module_vs_none']:+.2%}"
    assert f"| {cells} |" in text
    assert f"| {rows[0]['overhead_vs_none_ms']:+.1f} | {rows[0]['overhead_vs_none']:+.1%} |" in text
    for row in rows:  # an InstanceNorm2d replayed on the slots' calls (G's cBN for none): a real, positive time
        assert row["norm_in_place_seconds"] > 0
        assert any(c.startswith("forward [") for c in row["slot_calls"]), row["slot_calls"]
        assert f"| {row['norm_in_place_seconds'] * 1000:.1f} | - |" in text  # then peak GiB (CPU: none)
    assert "Targets (module columns, measured side by side in this run):" in text
    assert f"AN in place {an['module_vs_none_ms']:+.1f} ms per iteration = {an['module_vs_none']:+.2%}" in text
    ratio = an["module_vs_none_ms"] / sa["module_vs_none_ms"] if sa["module_vs_none_ms"] > 0 else None
    assert ratio is None or f"AN / SA {ratio:.2f} (target <= 1/3: " in text
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["config"] == "demo" and "torch" in saved["meta"]


def test_slot_modules_are_the_long_range_layers_and_the_replaced_cbn():
    from an_gan.blocks import ConditionalBatchNorm2d
    from common.layers import AttentiveNorm2d, SelfAttention2d

    demo = gan_throughput.CONFIGS["demo"]
    for long_range, kinds in (("an", AttentiveNorm2d), ("sa", SelfAttention2d), ("none", ConditionalBatchNorm2d)):
        g_args, d_args = gan_throughput._networks("demo", long_range)
        tiny = {"ch": 1, "num_classes": 10, "resolution": demo["resolution"]}
        model = gan_throughput.ANGAN(
            generator=gan_throughput.Generator(**{**g_args, **tiny}), discriminator=gan_throughput.Discriminator(
                **{**d_args, **tiny}))  # fmt: skip
        slots = gan_throughput.slot_modules(model, long_range, g_args)
        assert len(slots) == (1 if long_range == "none" else 2) and all(isinstance(m, kinds) for m in slots)
        if long_range == "none":  # the cBN that AN takes the place of, in the block that holds AN
            assert slots[0] is model.generator.blocks[model.generator.long_range_block].bn2
    assert gan_throughput.slot_modules(model, "none", {"an_placement": "before_cbn"}) == []


def test_long_range_variants_change_only_the_long_range_module():
    from common.layers import AttentiveNorm2d, SelfAttention2d
    from common.layers.factories import layer_class

    g, d = gan_throughput._networks("paper", "sa")
    assert (g["long_range"], d["long_range"], d["long_range_block"]) == (SelfAttention2d, SelfAttention2d, 1)
    g, d = gan_throughput._networks("demo", "an")  # the demo file's AN layer, with its settings
    assert layer_class(g["long_range"]) is AttentiveNorm2d and g["long_range"](8).num_entities == 8
    g, d = gan_throughput._networks("demo", "none")
    demo = gan_throughput.CONFIGS["demo"]
    assert {k: v for k, v in g.items() if k != "long_range"} == {
        k: v for k, v in demo["generator"].items() if k != "long_range"
    }


def test_rounds_alternate_the_modules_and_pool_their_iterations(monkeypatch):
    demo = gan_throughput.CONFIGS["demo"]
    tiny = {**demo, "generator": {**demo["generator"], "ch": 1}, "discriminator": {**demo["discriminator"], "ch": 1}}
    monkeypatch.setitem(gan_throughput.CONFIGS, "demo", tiny)
    order, measure = [], gan_throughput.measure

    def recording(*args, **kwargs):
        row = measure(*args, **kwargs)
        order.append(row["long_range"])
        return row

    monkeypatch.setattr(gan_throughput, "measure", recording)
    args = ["--configs", "demo", "--device", "cpu", "--demo-batch", "2", "--repeats", "1", "--warmup", "0"]
    rows = gan_throughput.main([*args, "--rounds", "2", "--threads", "1", "--long-range", "an", "none"])
    assert order == ["an", "none", "an", "none"]
    for row in rows:
        assert row["rounds"] == 2 and row["iterations"] == 2 and len(row["repeats_seconds"]) == 2
        assert row["seconds_per_iteration"] == pytest.approx(sum(row["repeats_seconds"]) / 2)  # median of two
    with pytest.raises(SystemExit):
        gan_throughput.main([*args, "--rounds", "0"])
