"""Comparing methods scored per image on the same test images: paired bootstrap differences and per-arm means.

An *arm* is one way of training (a config), run with ``S`` seeds and scored on the same ``N`` test images, so its
scores of one metric form an ``(S, N)`` array. Two arms compared on the same seeds and images give the paired
differences ``d = a - b`` (``(S, N)``); :func:`paired_bootstrap` reports

* the mean difference: the mean of ``d`` over seeds and images;
* a percentile bootstrap confidence interval of it with two-level resampling: each of the ``resamples`` resamples
  draws ``S`` seed indices with replacement and then ``N`` image indices with replacement (in that order, from
  ``numpy.random.default_rng(seed)``; with ``S == 1`` no seed indices are drawn, so only images are resampled), and
  takes the mean of ``d`` over the drawn seeds x drawn images (every drawn seed is paired with every drawn image:
  seeds and images are crossed factors); the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
  quantiles of the resampled means (``numpy.quantile``, linear interpolation);
* per image, the seed-averaged difference, and how many images ``a`` does better / worse / the same on
  (``higher_is_better`` says which direction is better: PSNR and SSIM up, MAE and LPIPS down);
* the per-seed mean differences (mean over images for each seed).

:func:`mean_ci` is the per-arm summary: the mean of the ``S`` per-seed scores with a Student-t interval
(``S - 1`` degrees of freedom; no interval with one seed). :func:`per_image_matrix` turns per-image score tables
(``{image: {metric: value}}``, what ``python -m an_inpaint evaluate`` writes) into the ``(S, N)`` array of one metric,
checking that every table holds the same images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from scipy import stats

__all__ = ["MeanCI", "MetricSpec", "PairedComparison", "mean_ci", "paired_bootstrap", "per_image_matrix"]


class MetricSpec(NamedTuple):
    """How a metric is shown and compared: its ``label`` in tables, the ``digits`` after the point, and whether a
    higher value is better."""

    label: str
    digits: int
    higher_is_better: bool


@dataclass(frozen=True)
class PairedComparison:
    """The result of :func:`paired_bootstrap` (``a - b``; module docstring).

    Attributes:
        mean_difference: Mean of ``a - b`` over seeds and images.
        ci_low, ci_high: The percentile bootstrap interval of ``mean_difference``.
        confidence: Its level (e.g. 0.95).
        better, worse, tied: Images where the seed-averaged difference says ``a`` is better / worse / equal (in the
            metric's direction).
        per_seed: Mean of ``a - b`` over images, per seed.
        n_seeds, n_images: ``S`` and ``N``.
        resamples, seed: The bootstrap's resample count and generator seed.
        higher_is_better: The metric's direction used for ``better`` / ``worse``.
    """

    mean_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    better: int
    worse: int
    tied: int
    per_seed: tuple[float, ...]
    n_seeds: int
    n_images: int
    resamples: int
    seed: int
    higher_is_better: bool

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict (``per_seed`` as a list)."""
        out = asdict(self)
        out["per_seed"] = list(self.per_seed)
        return out


@dataclass(frozen=True)
class MeanCI:
    """The mean of ``n`` values with a Student-t interval (``low``, ``high`` and ``std`` are ``None`` for one value)."""

    mean: float
    low: float | None
    high: float | None
    std: float | None
    n: int
    confidence: float

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")


def _check_finite(values: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf), the first at index {where}: every image "
            "needs a finite score to be compared"
        )


def _as_seeds_by_images(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            f"{name} must be (seeds, images) or (images,) with at least one of each, got shape {np.shape(values)}"
        )
    _check_finite(array, name)
    return array


def paired_bootstrap(
    a,
    b,
    higher_is_better: bool = True,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired comparison of two arms' per-image scores ``a - b`` (module docstring).

    Args:
        a: ``(S, N)`` scores of arm ``a`` (seed ``s``, image ``n``), or ``(N,)`` for one seed.
        b: The same for arm ``b``: the same seeds and images in the same order.
        higher_is_better: The metric's direction (``better`` counts images where ``a`` wins in that direction).
        resamples: Bootstrap resamples (``B``).
        confidence: Level of the interval.
        seed: Seed of the ``numpy.random.Generator`` that draws the resamples (the same seed, the same interval).

    Returns:
        A :class:`PairedComparison`.

    Raises:
        ValueError: Shapes that differ or are not (seeds, images), a non-finite score, ``resamples < 1`` or a
            confidence outside (0, 1).
    """
    a, b = _as_seeds_by_images(a, "a"), _as_seeds_by_images(b, "b")
    if a.shape != b.shape:
        raise ValueError(
            f"a has shape {a.shape} but b has {b.shape} (seeds, images): a paired comparison needs both arms scored "
            "on the same seeds and the same images"
        )
    if not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    _check_confidence(confidence)
    diff = a - b
    n_seeds, n_images = diff.shape
    rng = np.random.default_rng(seed)
    means = np.empty(int(resamples))
    for r in range(int(resamples)):
        rows = diff[rng.integers(0, n_seeds, size=n_seeds)] if n_seeds > 1 else diff
        means[r] = rows.mean(axis=0)[rng.integers(0, n_images, size=n_images)].mean()
    low, high = np.quantile(means, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    per_image = diff.mean(axis=0)
    signed = per_image if higher_is_better else -per_image
    return PairedComparison(
        mean_difference=float(diff.mean()),
        ci_low=float(low),
        ci_high=float(high),
        confidence=float(confidence),
        better=int((signed > 0).sum()),
        worse=int((signed < 0).sum()),
        tied=int((signed == 0).sum()),
        per_seed=tuple(float(v) for v in diff.mean(axis=1)),
        n_seeds=int(n_seeds),
        n_images=int(n_images),
        resamples=int(resamples),
        seed=int(seed),
        higher_is_better=bool(higher_is_better),
    )


def mean_ci(values, confidence: float = 0.95) -> MeanCI:
    """Mean of ``values`` (e.g. one arm's per-seed mean scores) with the Student-t interval
    ``mean +- t_{(1 + confidence) / 2, n - 1} * std / sqrt(n)`` (``std`` with ``n - 1`` in the denominator).

    With one value there is no interval: ``low``, ``high`` and ``std`` are ``None``.

    Raises:
        ValueError: No values, a non-finite value, values that are not 1-D, or a confidence outside (0, 1).
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < 1:
        raise ValueError(f"mean_ci needs a 1-D sequence of at least one value, got shape {array.shape}")
    _check_finite(array, "values")
    _check_confidence(confidence)
    n, mean = int(array.size), float(array.mean())
    if n == 1:
        return MeanCI(mean=mean, low=None, high=None, std=None, n=1, confidence=float(confidence))
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
    return MeanCI(mean=mean, low=mean - half, high=mean + half, std=std, n=n, confidence=float(confidence))


def per_image_matrix(
    tables: Sequence[Mapping[str, Mapping[str, float]]], metric: str, names: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Stack per-image score tables ``{image: {metric: value}}`` (one per seed) into ``(len(tables), N)``.

    Args:
        tables: One table per seed, all over the same images.
        metric: The metric to take.
        names: What each table is (for error messages), e.g. ``["AN seed 0", ...]``.

    Returns:
        The sorted image names and the ``(S, N)`` array, columns in that order.

    Raises:
        ValueError: No tables, tables over different images (the differences are listed), or a missing metric.
    """
    if not tables:
        raise ValueError(f"per_image_matrix needs at least one table of per-image scores ({metric})")
    names = list(names) if names is not None else [f"table {i}" for i in range(len(tables))]
    if len(names) != len(tables):
        raise ValueError(f"{len(names)} names for {len(tables)} tables of per-image scores")
    images = sorted(tables[0])
    if not images:
        raise ValueError(f"{names[0]} holds no per-image scores")
    for name, table in zip(names[1:], tables[1:], strict=True):
        missing, extra = sorted(set(images) - set(table)), sorted(set(table) - set(images))
        if missing or extra:
            raise ValueError(
                f"{name} is not scored on the same images as {names[0]} (a paired comparison needs the same test "
                f"images): missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, extra {extra[:5]}"
                f"{' ...' if len(extra) > 5 else ''}"
            )
    rows = []
    for name, table in zip(names, tables, strict=True):
        lacking = [image for image in images if metric not in table[image]]
        if lacking:
            raise ValueError(f"{name} has no {metric!r} score for {len(lacking)} image(s), e.g. {lacking[0]}")
        rows.append([float(table[image][metric]) for image in images])
    return images, np.asarray(rows, dtype=np.float64)
