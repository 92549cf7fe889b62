"""The numbers of a study (or of any comparison of methods scored per image): per-method means with confidence
intervals and paired differences between methods, as a dict for JSON and as markdown tables.

Input: for each *arm*, one per-image score table ``{image: {metric: value}}`` per seed (the same seeds, in the same
order, for every arm), and optionally *references*: methods run once (classical baselines, deterministic), which
count as one run and are repeated for every seed when paired with an arm. Every table must cover the same images.

* Per method and metric: the mean over images of each run, then :func:`common.metrics.paired.mean_ci` of those
  per-run means (Student-t interval over seeds; none for one run).
* Per pair ``(a, b)`` and metric: :func:`common.metrics.paired.paired_bootstrap` of ``a - b`` on the ``(seeds, images)``
  scores (two-level percentile bootstrap), with the images where ``a`` is better / worse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from common.metrics.paired import MetricSpec, mean_ci, paired_bootstrap, per_image_matrix

__all__ = ["format_summary", "summarize"]

PerImage = Mapping[str, Mapping[str, float]]

ROW_METHOD = (
    "per run: mean over images; per method: mean over runs (seeds) with a Student-t interval, seeds - 1 degrees of "
    "freedom (no interval for one run)"
)
PAIR_METHOD = (
    "a - b per image and seed; mean over seeds and images; percentile bootstrap interval: each resample draws the "
    "seeds with replacement, then the images with replacement, and averages a - b over the drawn seeds x images "
    "(images only for one seed); better / worse: images whose seed-averaged difference favours a / b in the metric's "
    "direction"
)


def _metric_keys(tables: Sequence[PerImage], metrics: Mapping[str, MetricSpec]) -> list[str]:
    present = None
    for table in tables:
        for scores in table.values():
            present = set(scores) if present is None else present & set(scores)
    return [key for key in metrics if key in (present or set())]


def summarize(
    arms: Mapping[str, Sequence[PerImage]],
    metrics: Mapping[str, MetricSpec],
    pairs: Sequence[tuple[str, str]],
    pair_metrics: Sequence[str] | None = None,
    references: Mapping[str, PerImage] | None = None,
    seeds: Sequence[int] | None = None,
    resamples: int = 10_000,
    confidence: float = 0.95,
    bootstrap_seed: int = 0,
) -> dict:
    """Per-method means and paired differences (module docstring).

    Args:
        arms: ``{arm: [per-image table of seed 0, seed 1, ...]}``, the same number of seeds for every arm.
        metrics: ``{metric: MetricSpec}``: which metrics, in which order, and their direction; metrics missing from
            the tables are left out.
        pairs: ``(a, b)`` names of arms or references to compare (``a - b``).
        pair_metrics: The metrics of the pairs (default: every metric).
        references: ``{name: per-image table}`` of methods run once.
        seeds: The seeds' values, for the JSON (default ``0 .. S-1``).
        resamples, confidence, bootstrap_seed: Of the bootstrap and of the intervals.

    Returns:
        ``{"images": N, "seeds": [...], "rows": {name: {"kind", "runs", "metrics": {metric: {mean, low, high, std,
        n, confidence, per_run}}}}, "pairs": [{"a", "b", "metric", ...PairedComparison fields}], "methods": {...}}``.

    Raises:
        ValueError: No arm, arms with different seed counts, a name used twice, a pair naming an unknown method, a
            pair metric that is not scored, or tables over different images.
    """
    references = dict(references or {})
    if not arms:
        raise ValueError("summarize needs at least one arm")
    counts = {name: len(runs) for name, runs in arms.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise ValueError(f"every arm needs the same (non-zero) number of seeds, got {counts}")
    clash = sorted(set(arms) & set(references))
    if clash:
        raise ValueError(f"{clash} named both as an arm and as a reference")
    n_seeds = next(iter(counts.values()))
    seeds = list(seeds) if seeds is not None else list(range(n_seeds))
    if len(seeds) != n_seeds:
        raise ValueError(f"{len(seeds)} seed values for {n_seeds} runs per arm")
    runs = {name: list(tables) for name, tables in arms.items()}
    runs.update({name: [table] for name, table in references.items()})
    labels = {name: [f"{name} seed {s}" for s in seeds] if name in arms else [name] for name in runs}
    keys = _metric_keys([t for tables in runs.values() for t in tables], metrics)
    pair_metrics = list(keys if pair_metrics is None else pair_metrics)
    unknown = [m for m in pair_metrics if m not in keys]
    if unknown:
        raise ValueError(f"pair metric(s) {unknown} are not scored (scored: {keys})")
    matrices: dict[str, dict[str, np.ndarray]] = {name: {} for name in runs}
    images = None
    for key in keys:
        every = [t for name in runs for t in runs[name]]
        names = [label for name in runs for label in labels[name]]
        images, stacked = per_image_matrix(every, key, names)  # also checks that all tables share the images
        start = 0
        for name in runs:
            matrices[name][key] = stacked[start : start + len(runs[name])]
            start += len(runs[name])
    rows = {}
    for name in runs:
        row = {}
        for key in keys:
            per_run = matrices[name][key].mean(axis=1)
            row[key] = {**mean_ci(per_run, confidence).as_dict(), "per_run": per_run.tolist()}
        rows[name] = {"kind": "arm" if name in arms else "reference", "runs": len(runs[name]), "metrics": row}
    compared = []
    for a, b in pairs:
        missing = [n for n in (a, b) if n not in runs]
        if missing:
            raise ValueError(f"pair ({a}, {b}) names {missing}, which are neither arms nor references: {list(runs)}")
        for key in pair_metrics:
            shape = (max(len(runs[a]), len(runs[b])), len(images))  # a reference repeats for every seed
            left, right = (np.broadcast_to(matrices[n][key], shape) for n in (a, b))
            result = paired_bootstrap(left, right, metrics[key].higher_is_better, resamples, confidence, bootstrap_seed)
            compared.append({"a": a, "b": b, "metric": key, **result.as_dict()})
    return {
        "images": len(images or []),
        "seeds": seeds,
        "rows": rows,
        "pairs": compared,
        "methods": {"rows": ROW_METHOD, "pairs": PAIR_METHOD},
    }


def _number(value: float | None, digits: int, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def format_summary(summary: dict, metrics: Mapping[str, MetricSpec]) -> str:
    """Markdown of :func:`summarize`'s result: one table of the methods (``mean [low, high]``), one of the pairs, and
    a line saying how each number is computed."""
    keys = [k for k in metrics if any(k in row["metrics"] for row in summary["rows"].values())]
    level = next(iter(next(iter(summary["rows"].values()))["metrics"].values()), {}).get("confidence", 0.95)
    header = ["method", "runs", *(f"{metrics[k].label}" for k in keys)]
    lines = [
        f"{summary['images']} test images; mean [{100 * level:g}% interval] per method",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for name, row in summary["rows"].items():
        cells = []
        for key in keys:
            value, digits = row["metrics"][key], metrics[key].digits
            interval = "" if value["low"] is None else f" [{value['low']:.{digits}f}, {value['high']:.{digits}f}]"
            cells.append(f"{value['mean']:.{digits}f}{interval}")
        lines.append("| " + " | ".join([name, str(row["runs"]), *cells]) + " |")
    if summary["pairs"]:
        header = ["a - b", "metric", "difference", f"{100 * level:g}% interval", "a better", "a worse", "tied",
                  "per seed"]  # fmt: skip
        lines += ["", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for pair in summary["pairs"]:
            spec = metrics[pair["metric"]]
            digits = spec.digits
            per_seed = ", ".join(_number(v, digits, sign=True) for v in pair["per_seed"])
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"{pair['a']} - {pair['b']}",
                        spec.label + (" (higher better)" if spec.higher_is_better else " (lower better)"),
                        _number(pair["mean_difference"], digits, sign=True),
                        f"[{_number(pair['ci_low'], digits, True)}, {_number(pair['ci_high'], digits, True)}]",
                        str(pair["better"]),
                        str(pair["worse"]),
                        str(pair["tied"]),
                        per_seed,
                    ]
                )
                + " |"
            )
    lines += ["", f"Methods: {summary['methods']['rows']}.", f"Pairs: {summary['methods']['pairs']}."]
    return "\n".join(lines)
