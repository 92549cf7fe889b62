"""The overhead over "no long-range module" and the markdown table of the two training-throughput benchmarks.

``benchmarks.gan_throughput`` and ``benchmarks.inpaint_throughput`` measure the same networks with each long-range
module (AN, SA, ... and ``none``) side by side; :func:`add_overheads` gives every row its extra time per iteration
over the ``none`` row of the same setting, in ms and as a fraction, and :func:`markdown_table` prints both tables
with the same leading columns (config, long-range, device, ..., ms/iter, images/s, vs none ms, vs none %).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["OVERHEAD_COLUMNS", "add_overheads", "markdown_table"]

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


def _signed(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


#: The "vs none" columns: extra ms per iteration and percent over the ``none`` row.
OVERHEAD_COLUMNS: tuple[Column, ...] = (
    ("vs none ms", lambda r: _signed(r.get("overhead_vs_none_ms"), "+.1f")),
    ("vs none %", lambda r: _signed(r.get("overhead_vs_none"), "+.1%")),
)


def markdown_table(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    """``rows`` as a markdown table: one ``(header, cell function)`` per column."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r) for _, cell in columns) + " |" for r in rows]
    return "\n".join(lines)
