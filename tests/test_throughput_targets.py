"""benchmarks._throughput.target_lines: the speed issue's targets read off the in-place module columns."""

import pytest

from benchmarks._throughput import MODULE_COLUMNS, add_module_overheads, markdown_table, target_lines

SAME = ("config", "device")


def _rows(an_ms, sa_ms, none_ms=5.0, iteration_ms=1000.0, norm_ms=12.0):
    rows = [
        {"config": "paper", "device": "cpu", "long_range": lr, "seconds_per_iteration": iteration_ms / 1000,
         "module_seconds": ms / 1000, "norm_in_place_seconds": norm_ms / 1000}
        for lr, ms in (("an", an_ms), ("sa", sa_ms), ("none", none_ms))
    ]  # fmt: skip
    add_module_overheads(rows, "seconds_per_iteration", "module_seconds", SAME)
    return rows


@pytest.mark.timeout(30)
def test_pass_and_fail_on_both_targets():
    (met,) = target_lines(_rows(an_ms=25.0, sa_ms=95.0), SAME)  # AN +20 ms = 2% of 1 s; SA +90: ratio 0.22
    assert met.startswith("- config paper, device cpu: AN in place +20.0 ms per iteration = +2.00% of none's")
    assert "(target <= 10%: PASS)" in met and "SA +90.0 ms, AN / SA 0.22 (target <= 1/3: PASS)" in met
    assert "InstanceNorm2d in AN's places 12.0 ms = 0.13 of SA's" in met
    (missed,) = target_lines(_rows(an_ms=205.0, sa_ms=155.0), SAME)  # +200 ms = 20%; SA +150: ratio 1.33
    assert (
        "+20.00% of none's iteration (target <= 10%: FAIL)" in missed and "AN / SA 1.33 (target <= 1/3: FAIL)" in missed
    )
    boundary = target_lines(_rows(an_ms=35.0, sa_ms=95.0), SAME)[0]  # exactly a third
    assert "AN / SA 0.33 (target <= 1/3: PASS)" in boundary


@pytest.mark.timeout(30)
def test_missing_rows_and_columns():
    rows = _rows(an_ms=25.0, sa_ms=95.0)
    without_sa = [r for r in rows if r["long_range"] != "sa"]
    (line,) = target_lines(without_sa, SAME)
    assert "(target <= 10%: PASS)" in line and "SA" not in line
    without_none = [dict(r) for r in rows if r["long_range"] != "none"]
    add_module_overheads(without_none, "seconds_per_iteration", "module_seconds", SAME)
    assert target_lines(without_none, SAME) == []  # nothing to compare with
    rows[0]["norm_in_place_seconds"] = None
    assert "InstanceNorm2d" not in target_lines(rows, SAME)[0]
    table = markdown_table(rows, MODULE_COLUMNS)
    assert "| IN in place ms |" in table.splitlines()[0] and "| - |" in table.splitlines()[2]
    assert "| 12.0 |" in table.splitlines()[3]
