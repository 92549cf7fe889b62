"""Smoke test of the evaluation speed benchmark (tiny generator, CPU stand-in extractor) and its Inception stand-in."""

import functools
import json

import pytest
import torch

from benchmarks import eval_speed
from common.layers import AttentiveNorm2d
from common.metrics.generation import InceptionFeatureExtractor

AN4 = functools.partial(AttentiveNorm2d, num_entities=4)
TINY = {"num_classes": 5, "resolution": 16, "z_dim": 8, "ch": 1, "long_range_block": 1, "long_range": AN4}


@pytest.mark.timeout(300)
def test_benchmark_runs_both_modes_and_writes_json(tmp_path, monkeypatch):
    assert eval_speed.CONFIGS["paper"] == {}  # the Generator defaults: the paper's 128 px model
    monkeypatch.setitem(eval_speed.CONFIGS, "paper", TINY)
    out = tmp_path / "eval_speed.json"
    argv = ["--device", "cpu", "--samples", "12", "--batch-size", "4", "--repeats", "2"]
    rows = eval_speed.main([*argv, "--extractor", "random-projection", "--json", str(out)])
    assert [r["mode"] for r in rows] == ["sequential", "overlapped"]  # side by side in one run
    seq, ovl = rows
    assert ovl["same_scores"] is True and ovl["scores"] == seq["scores"]
    assert set(seq["scores"]) == {"fid", "is_mean", "is_std"}  # FID + IS only
    for row in rows:
        assert row["samples"] == 12 and row["batch_size"] == 4 and len(row["repeats_seconds_per_1k"]) == 2
        assert row["seconds_per_1k"] == min(row["repeats_seconds_per_1k"]) and row["seconds"] > row["final_seconds"] > 0
        assert row["seconds_per_1k"] == pytest.approx((row["seconds"] - row["final_seconds"]) / 12 * 1000)
        assert row["seconds_50k"] == pytest.approx(50 * row["seconds_per_1k"] + row["final_seconds"])
        assert row["cpu_seconds"] > 0 and not row["measured_50k"]
    assert ovl["speedup"] == pytest.approx(seq["seconds_per_1k"] / ovl["seconds_per_1k"])
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["mode"] == "sequential" and "torch" in saved["meta"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--samples", "1"], "--samples must be at least 2"),
        (["--repeats", "0"], "--repeats >= 1"),
    ],
)
def test_bad_settings(argv, message, capsys):
    with pytest.raises(SystemExit):
        eval_speed.main([*argv, "--device", "cpu"])
    assert message in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_random_inception_is_the_package_extractor_with_o1_activations(tmp_path):
    extractor = eval_speed.random_inception(tmp_path, calibration_images=2)
    assert isinstance(extractor, InceptionFeatureExtractor) and not extractor.net.training
    gen = torch.Generator().manual_seed(3)
    features, logits = extractor(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=gen))
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    # calibrated batch norms: O(1) activations, far from the denormal range that would slow a CPU down
    assert 1e-2 < features.abs().mean() < 1e3 and torch.isfinite(logits).all() and logits.abs().mean() > 1e-3
