"""common.training.study_summary: per-method means over seeds and paired differences of arms and references, from
per-image score tables."""

import numpy as np
import pytest

from common.metrics.paired import MetricSpec, mean_ci, paired_bootstrap
from common.training.study_summary import format_summary, summarize

pytestmark = pytest.mark.timeout(60)

METRICS = {"psnr": MetricSpec("PSNR (dB)", 2, True), "mae": MetricSpec("MAE", 4, False)}
IMAGES = ["img0", "img1", "img2"]


def _table(psnr, mae):
    return {name: {"psnr": p, "mae": m} for name, p, m in zip(IMAGES, psnr, mae, strict=True)}


AN = [_table([30.0, 28.0, 25.0], [0.1, 0.2, 0.3]), _table([31.0, 27.0, 26.0], [0.1, 0.25, 0.2])]
CA = [_table([29.0, 28.5, 24.0], [0.15, 0.2, 0.35]), _table([30.0, 26.0, 25.5], [0.1, 0.3, 0.3])]
TELEA = _table([26.0, 25.0, 23.0], [0.3, 0.3, 0.4])


def test_rows_and_pairs_are_the_paired_statistics_of_the_tables():
    summary = summarize(
        {"AN": AN, "CA": CA}, METRICS, [("AN", "CA"), ("AN", "telea")], ["psnr"], references={"telea": TELEA},
        seeds=[3, 4], resamples=200, bootstrap_seed=5,
    )  # fmt: skip
    assert summary["images"] == 3 and summary["seeds"] == [3, 4]
    an_psnr = summary["rows"]["AN"]["metrics"]["psnr"]
    per_run = [np.mean([30.0, 28.0, 25.0]), np.mean([31.0, 27.0, 26.0])]
    assert an_psnr["per_run"] == pytest.approx(per_run)
    assert an_psnr["mean"] == pytest.approx(mean_ci(per_run).mean) and an_psnr["low"] == mean_ci(per_run).low
    telea = summary["rows"]["telea"]
    assert telea["kind"] == "reference" and telea["runs"] == 1 and telea["metrics"]["mae"]["low"] is None
    first, second = summary["pairs"]
    an = np.array([[30.0, 28.0, 25.0], [31.0, 27.0, 26.0]])
    ca = np.array([[29.0, 28.5, 24.0], [30.0, 26.0, 25.5]])
    expected = paired_bootstrap(an, ca, True, 200, 0.95, 5).as_dict()
    assert {k: first[k] for k in expected} == expected and (first["a"], first["b"]) == ("AN", "CA")
    tiled = np.tile([26.0, 25.0, 23.0], (2, 1))  # the reference, repeated for every seed
    assert second["mean_difference"] == pytest.approx((an - tiled).mean())
    assert second["ci_low"] == paired_bootstrap(an, tiled, True, 200, 0.95, 5).ci_low
    table = format_summary(summary, METRICS)
    assert "| AN - CA | PSNR (dB) (higher better) |" in table and "| telea | 1 |" in table
    assert f"{an_psnr['mean']:.2f} [{an_psnr['low']:.2f}, {an_psnr['high']:.2f}]" in table


def test_direction_of_lower_is_better_metrics():
    summary = summarize({"AN": AN, "CA": CA}, METRICS, [("AN", "CA")], ["mae"], resamples=20)
    (pair,) = summary["pairs"]
    # seed-averaged mae differences: -0.025, -0.025, -0.075: AN is better (lower) on all three images
    assert (pair["better"], pair["worse"], pair["tied"]) == (3, 0, 0) and pair["mean_difference"] < 0


def test_bad_input():
    with pytest.raises(ValueError, match="same \\(non-zero\\) number of seeds"):
        summarize({"AN": AN, "CA": CA[:1]}, METRICS, [])
    with pytest.raises(ValueError, match="neither arms nor references"):
        summarize({"AN": AN}, METRICS, [("AN", "telea")])
    with pytest.raises(ValueError, match="not scored"):
        summarize({"AN": AN}, METRICS, [], ["ssim"])
    with pytest.raises(ValueError, match="CA seed 1 is not scored on the same images"):
        summarize({"AN": AN, "CA": [CA[0], {"img0": CA[1]["img0"]}]}, METRICS, [])
    with pytest.raises(ValueError, match="both as an arm and as a reference"):
        summarize({"AN": AN}, METRICS, [], references={"AN": TELEA})
