"""common.metrics.paired: the paired bootstrap against a hand computation and closed forms, the direction flag, the
per-arm t interval, bad input."""

import math

import numpy as np
import pytest

from common.metrics.paired import mean_ci, paired_bootstrap, per_image_matrix

pytestmark = pytest.mark.timeout(60)


def _hand_quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics at position q * (B - 1) (numpy's default, written out)."""
    position = q * (len(sorted_values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (position - below) * (sorted_values[above] - sorted_values[below])


def _hand_bootstrap(a, b, resamples, seed, confidence=0.95):
    """The two-level bootstrap written as plain loops: per resample, S seed indices then N image indices."""
    rng = np.random.default_rng(seed)
    n_seeds, n_images = len(a), len(a[0])
    means = []
    for _ in range(resamples):
        seeds = [int(i) for i in rng.integers(0, n_seeds, size=n_seeds)] if n_seeds > 1 else [0]
        images = [int(j) for j in rng.integers(0, n_images, size=n_images)]
        total = 0.0
        for s in seeds:
            for n in images:
                total += a[s][n] - b[s][n]
        means.append(total / (len(seeds) * len(images)))
    means.sort()
    return _hand_quantile(means, (1 - confidence) / 2), _hand_quantile(means, (1 + confidence) / 2)


A = [[30.0, 25.5, 28.0, 22.0, 31.0], [29.0, 26.5, 27.0, 23.5, 30.0], [31.5, 24.0, 29.5, 21.0, 32.0]]
B = [[29.0, 26.0, 27.0, 22.5, 29.0], [28.5, 25.0, 27.5, 22.0, 30.5], [30.0, 25.5, 28.0, 21.0, 29.5]]


def test_two_level_bootstrap_matches_a_hand_loop():
    result = paired_bootstrap(A, B, resamples=300, seed=7)
    low, high = _hand_bootstrap(A, B, 300, 7)
    assert result.ci_low == pytest.approx(low, abs=1e-12)
    assert result.ci_high == pytest.approx(high, abs=1e-12)
    diffs = [A[s][n] - B[s][n] for s in range(3) for n in range(5)]
    assert result.mean_difference == pytest.approx(sum(diffs) / 15, abs=1e-12)
    for s in range(3):
        assert result.per_seed[s] == pytest.approx(sum(A[s][n] - B[s][n] for n in range(5)) / 5, abs=1e-12)
    assert (result.n_seeds, result.n_images, result.resamples, result.seed) == (3, 5, 300, 7)
    assert result.ci_low < result.mean_difference < result.ci_high


def test_one_seed_resamples_images_only():
    a, b = [A[0]], [B[0]]
    result = paired_bootstrap(a, b, resamples=250, seed=3, confidence=0.9)
    low, high = _hand_bootstrap(a, b, 250, 3, confidence=0.9)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=1e-12)
    flat = paired_bootstrap(A[0], B[0], resamples=250, seed=3, confidence=0.9)  # (N,) is one seed
    assert (flat.ci_low, flat.ci_high, flat.n_seeds) == (result.ci_low, result.ci_high, 1)


def test_closed_forms():
    constant = paired_bootstrap(np.full((2, 4), 3.5), np.full((2, 4), 1.25), resamples=50)
    assert constant.mean_difference == constant.ci_low == constant.ci_high == 2.25
    assert constant.per_seed == (2.25, 2.25)
    # Two images with differences 0 and 1: a resampled mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so
    # the 2.5% and 97.5% quantiles of many resamples are exactly 0 and 1.
    two = paired_bootstrap([0.0, 1.0], [0.0, 0.0], resamples=4000, seed=1)
    assert (two.mean_difference, two.ci_low, two.ci_high) == (0.5, 0.0, 1.0)


def test_reproducible_and_seeded():
    first, again = paired_bootstrap(A, B, resamples=200, seed=11), paired_bootstrap(A, B, resamples=200, seed=11)
    other = paired_bootstrap(A, B, resamples=200, seed=12)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_better_worse_follow_the_metric_direction_on_seed_averages():
    # per image, a - b over two seeds: [+3, -1] (mean +1), [+2, +2], [-1, -1], [+1, -1] (mean 0)
    a = [[3.0, 2.0, 0.0, 1.0], [0.0, 2.0, 0.0, 0.0]]
    b = [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0]]
    up = paired_bootstrap(a, b, higher_is_better=True, resamples=10)
    down = paired_bootstrap(a, b, higher_is_better=False, resamples=10)
    assert (up.better, up.worse, up.tied) == (2, 1, 1)
    assert (down.better, down.worse, down.tied) == (1, 2, 1)
    assert up.mean_difference == down.mean_difference == pytest.approx(0.5)
    assert up.as_dict()["higher_is_better"] is True and down.as_dict()["per_seed"] == list(down.per_seed)


def test_bad_input():
    with pytest.raises(ValueError, match=r"a has shape \(3, 5\) but b has \(2, 5\)"):
        paired_bootstrap(A, B[:2])
    nan = [row[:] for row in B]
    nan[1][3] = float("nan")
    with pytest.raises(ValueError, match=r"b has 1 non-finite value.*index \(1, 3\)"):
        paired_bootstrap(A, nan)
    with pytest.raises(ValueError, match="non-finite"):
        paired_bootstrap([1.0, math.inf], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"\(seeds, images\)"):
        paired_bootstrap(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="resamples must be a positive integer"):
        paired_bootstrap(A, B, resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(A, B, confidence=1.0)


def test_mean_ci_is_the_t_interval():
    result = mean_ci([1.0, 2.0, 3.0, 4.0])
    t_975_3 = 3.182446305284263  # Student t, 3 degrees of freedom, 97.5% quantile (tables)
    std = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)
    assert result.mean == 2.5 and result.std == pytest.approx(std)
    assert (result.low, result.high) == pytest.approx((2.5 - t_975_3 * std / 2, 2.5 + t_975_3 * std / 2))
    single = mean_ci([7.0])
    assert (single.mean, single.low, single.high, single.std, single.n) == (7.0, None, None, None, 1)
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci([])
    with pytest.raises(ValueError, match="non-finite"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        mean_ci([[1.0, 2.0]])


def test_per_image_matrix_stacks_and_checks_the_images():
    tables = [{"b": {"psnr": 2.0}, "a": {"psnr": 1.0}}, {"a": {"psnr": 3.0}, "b": {"psnr": 4.0}}]
    names, matrix = per_image_matrix(tables, "psnr", ["AN seed 0", "AN seed 1"])
    assert names == ["a", "b"] and matrix.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ValueError, match=r"AN seed 1 is not scored on the same images.*missing \['b'\]"):
        per_image_matrix([tables[0], {"a": {"psnr": 3.0}}], "psnr", ["AN seed 0", "AN seed 1"])
    with pytest.raises(ValueError, match="no 'ssim' score"):
        per_image_matrix(tables, "ssim")
