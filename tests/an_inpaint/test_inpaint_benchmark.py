"""The inpainting throughput benchmark runs AN / SA / none / CA side by side and reports consistent numbers."""

import json

import pytest
import torch

from benchmarks import inpaint_throughput
from benchmarks.inpaint_throughput import main


@pytest.mark.timeout(300)
def test_benchmark_runs_side_by_side(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--configs", "demo", "--device", "cpu", "--batch", "1", "--repeats", "2", "--warmup", "0"]
    rows = main([*argv, "--n-critic", "2", "--threads", "1", "--json", str(out)])
    assert [r["long_range"] for r in rows] == ["an", "sa", "none", "contextual"]  # the default columns
    for row in rows:
        assert row["batch"] == 1 and row["n_critic"] == 2 and row["threads"] == 1
        assert len(row["repeats_seconds"]) == 2 and row["seconds_per_iteration"] > 0
        assert row["seconds_per_iteration"] == pytest.approx(sum(row["repeats_seconds"]) / 2)  # median of two
        assert row["images_per_second"] == pytest.approx(2 * row["g_images_per_second"])  # n_critic fresh batches
        assert row["phase1_images_per_second"] == pytest.approx(1 / row["phase1_seconds"])
    an, sa, none, ca = rows
    assert none["overhead_vs_none"] == 0.0 and none["overhead_vs_none_ms"] == 0.0
    for row in (an, sa, ca):
        extra = row["seconds_per_iteration"] - none["seconds_per_iteration"]
        assert row["overhead_vs_none_ms"] == pytest.approx(extra * 1000)
        assert row["overhead_vs_none"] == pytest.approx(extra / none["seconds_per_iteration"])
        assert row["phase1_vs_none"] == pytest.approx(row["phase1_seconds"] / none["phase1_seconds"] - 1)
    for row in rows:  # the modules timed in place: part of the iteration
        assert 0 < row["module_seconds"] < row["seconds_per_iteration"]
        assert row["module_seconds"] == pytest.approx(sum(row["module_repeats_seconds"]) / 2)
        assert 0 < row["phase1_module_seconds"] < row["phase1_seconds"]
        extra = row["module_seconds"] - none["module_seconds"]
        assert row["module_vs_none_ms"] == pytest.approx(extra * 1000)
        assert row["module_vs_none"] == pytest.approx(extra / none["seconds_per_iteration"])
    for row in rows:  # an InstanceNorm2d replayed on the slot's calls (the stand-in conv's for none)
        assert row["norm_in_place_seconds"] > 0
    assert json.loads(out.read_text())["rows"] == rows
    text = capsys.readouterr().out
    assert "| config | long-range | device | res | batch | ms / iter (G + 2 D) | images/s |" in text
    assert f"| demo | sa | cpu | 64 | 1 | {sa['seconds_per_iteration'] * 1000:.1f} |" in text
    assert f"| {an['overhead_vs_none_ms']:+.1f} | {an['overhead_vs_none']:+.1%} |" in text
    assert f"AN in place {an['module_vs_none_ms']:+.1f} ms per iteration" in text


def test_variants_differ_only_in_the_attention_branch():
    """The columns are the same networks otherwise: the same parameters outside the attention branch, the same
    starting weights, the shipped demo's generator settings."""
    config = inpaint_throughput.CONFIGS["demo"]
    assert config["generator"]["cnum"] == 8 and "hole_fill" not in config["generator"]  # demo.yaml: blank
    branch = inpaint_throughput.ATTENTION_BRANCH
    first = inpaint_throughput.build(config, "an", "cpu")
    models = {a: inpaint_throughput.build(config, a, "cpu", like=first) for a in inpaint_throughput.BRANCHES}
    assert list(models) == ["an", "contextual", "contextual+an", "sa", "none"]
    states = {a: {k: v for k, v in m.state_dict().items() if not k.startswith(branch)} for a, m in models.items()}
    for attention, state in states.items():
        generator = models[attention].generator
        kinds = {type(m).__name__ for m in generator.modules()} & {"AttentiveNorm2d", "SelfAttention2d"}
        assert (generator.contextual is not None) == attention.startswith("contextual"), attention
        assert kinds == {"an": {"AttentiveNorm2d"}, "sa": {"SelfAttention2d"}}.get(attention.split("+")[-1], set())
        assert state.keys() == states["an"].keys()
        assert all((state[k] == states["an"][k]).all() for k in state), attention
    assert sum(p.numel() for p in models["none"].generator.attention_post.parameters()) > 0  # a conv where CA was
    # Without ``like`` the layers built after the branch start from other weights: the copy is what makes them equal.
    alone = inpaint_throughput.build(config, "sa", "cpu").state_dict()
    assert not (
        alone["generator.refine_decoder.0.0.weight"] == states["an"]["generator.refine_decoder.0.0.weight"]
    ).all()


def test_slot_modules():
    from common.layers import AttentiveNorm2d, ContextualAttention2d, SelfAttention2d

    config = inpaint_throughput.CONFIGS["demo"]
    expect = {"an": [AttentiveNorm2d], "sa": [SelfAttention2d], "contextual": [ContextualAttention2d],
              "contextual+an": [AttentiveNorm2d, ContextualAttention2d], "none": [torch.nn.Sequential]}  # fmt: skip
    for attention, kinds in expect.items():
        model = inpaint_throughput.build(config, attention, "cpu")
        slots = inpaint_throughput.slot_modules(model, attention)
        assert sorted(type(m).__name__ for m in slots) == sorted(k.__name__ for k in kinds), attention
    assert slots == [model.generator.attention_post[0]]  # none: the convolution standing in for the module


def test_bad_settings(capsys):
    with pytest.raises(SystemExit):
        main(["--configs", "demo", "--device", "cpu", "--n-critic", "0"])
    assert "--n-critic must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--long-range", "self"])
    assert "invalid choice: 'self'" in capsys.readouterr().err
