"""The overhead over "no long-range module" and the markdown table of the two training-throughput benchmarks.

``benchmarks.gan_throughput`` and ``benchmarks.inpaint_throughput`` measure the same networks with each long-range
module (AN, SA, ... and ``none``) side by side; :func:`add_overheads` gives every row its extra time per iteration
over the ``none`` row of the same setting, in ms and as a fraction, and :func:`markdown_table` prints both tables
with the same leading columns (config, long-range, device, ..., ms/iter, images/s, vs none ms, vs none %).

The iteration times of two fits differ by more than a long-range module costs on a CPU, so both benchmarks also time
the modules themselves in place (:class:`benchmarks._module_time.ModuleClock`): :func:`add_module_overheads` and
:data:`MODULE_COLUMNS` give each row its module's ms per iteration, minus what the ``none`` network spends in the
layer that the module takes the place of, in ms and as a fraction of the ``none`` row's iteration; "IN in place
ms" is an ``nn.InstanceNorm2d`` run on the same calls' shapes (:func:`benchmarks._module_time.instance_norm_seconds`),
and :func:`target_lines` checks the speed issue's targets on the module columns (AN's cost at most 10% of an
iteration and at most a third of SA's), next to what a plain normalisation layer in AN's places costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "MODULE_COLUMNS",
    "OVERHEAD_COLUMNS",
    "add_module_overheads",
    "add_overheads",
    "markdown_table",
    "target_lines",
]

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]


def add_overheads(rows: list[Row], seconds_key: str, same: Sequence[str], prefix: str = "overhead_vs_none") -> None:
    """Set ``{prefix}_ms`` (extra milliseconds per iteration) and ``{prefix}`` (that as a fraction of the ``none``
    row's time) on every row, against the row with ``long_range == "none"`` whose ``same`` keys are equal (measured
    in the same run); ``None`` where there is no such row."""
    for row in rows:
        key = tuple(row[k] for k in same)
        base = next((r for r in rows if r["long_range"] == "none" and tuple(r[k] for k in same) == key), None)
        if base is None:
            row[f"{prefix}_ms"] = row[prefix] = None
            continue
        extra = row[seconds_key] - base[seconds_key]
        row[f"{prefix}_ms"] = extra * 1000.0
        row[prefix] = row[seconds_key] / base[seconds_key] - 1.0


def add_module_overheads(rows: list[Row], seconds_key: str, module_key: str, same: Sequence[str]) -> None:
    """Set ``module_vs_none_ms`` (the row's ``module_key`` seconds minus the ``none`` row's, in ms: what the module
    costs per iteration beyond the layer it takes the place of) and ``module_vs_none`` (that over the ``none``
    row's ``seconds_key``) on every row; ``None`` without a ``none`` row of the same setting."""
    for row in rows:
        key = tuple(row[k] for k in same)
        base = next((r for r in rows if r["long_range"] == "none" and tuple(r[k] for k in same) == key), None)
        if base is None or row.get(module_key) is None or base.get(module_key) is None:
            row["module_vs_none_ms"] = row["module_vs_none"] = None
            continue
        extra = row[module_key] - base[module_key]
        row["module_vs_none_ms"] = extra * 1000.0
        row["module_vs_none"] = extra / base[seconds_key]


def _signed(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


#: The "vs none" columns: extra ms per iteration and percent over the ``none`` row.
OVERHEAD_COLUMNS: tuple[Column, ...] = (
    ("vs none ms", lambda r: _signed(r.get("overhead_vs_none_ms"), "+.1f")),
    ("vs none %", lambda r: _signed(r.get("overhead_vs_none"), "+.1%")),
)


#: The in-place module columns: the module's ms per iteration, and its extra ms and % over ``none``'s layer.
MODULE_COLUMNS: tuple[Column, ...] = (
    ("module ms", lambda r: "-" if r.get("module_seconds") is None else f"{r['module_seconds'] * 1000:.1f}"),
    ("module vs none ms", lambda r: _signed(r.get("module_vs_none_ms"), "+.1f")),
    ("module vs none %", lambda r: _signed(r.get("module_vs_none"), "+.2%")),
    ("IN in place ms", lambda r: _signed(_ms(r.get("norm_in_place_seconds")), ".1f")),
)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def target_lines(rows: Sequence[Row], same: Sequence[str]) -> list[str]:
    """For every setting with ``an``, ``sa`` and ``none`` rows: AN's in-place cost over ``none`` as a share of the
    iteration (target at most 10%) and against SA's (target at most a third), and an InstanceNorm2d in AN's places
    against SA's cost (where that alone exceeds a third, no normalisation layer there can meet the target)."""
    lines = []
    for an in (r for r in rows if r["long_range"] == "an" and r.get("module_vs_none_ms") is not None):
        key = tuple(an[k] for k in same)
        sa = next((r for r in rows if r["long_range"] == "sa" and tuple(r[k] for k in same) == key), None)
        where = ", ".join(f"{k} {an[k]}" for k in same)
        share = an["module_vs_none"]
        line = f"- {where}: AN in place {an['module_vs_none_ms']:+.1f} ms per iteration = {share:+.2%} of none's "
        line += f"iteration (target <= 10%: {'PASS' if share <= 0.10 + 1e-9 else 'FAIL'})"
        if sa is not None and sa.get("module_vs_none_ms") is not None and sa["module_vs_none_ms"] > 0:
            ratio = an["module_vs_none_ms"] / sa["module_vs_none_ms"]
            line += f"; SA {sa['module_vs_none_ms']:+.1f} ms, AN / SA {ratio:.2f} (target <= 1/3: "
            line += f"{'PASS' if ratio <= 1 / 3 + 1e-9 else 'FAIL'})"
            norm = _ms(an.get("norm_in_place_seconds"))
            if norm is not None:
                line += f"; InstanceNorm2d in AN's places {norm:.1f} ms = {norm / sa['module_vs_none_ms']:.2f} of SA's"
        lines.append(line)
    return lines


def markdown_table(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    """``rows`` as a markdown table: one ``(header, cell function)`` per column."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r) for _, cell in columns) + " |" for r in rows]
    return "\n".join(lines)
