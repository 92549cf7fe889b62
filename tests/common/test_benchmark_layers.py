"""Tests for the layer benchmark ``benchmarks.layers`` (AN paper Table 5 on our layers), on tiny sizes."""

import json

import pytest

from benchmarks import layers as bench

GIB = 1024**3


class TestLayerBenchmark:
    def test_sa_required_bytes(self):
        # (B * HW * HW/4) fp32 floats: 2 copies forward (logits + softmax), 6 with backward
        assert bench.sa_required_bytes(1, 16, backward=False) == 2 * 4 * 256 * 64
        assert bench.sa_required_bytes(2, 16, backward=True) == 6 * 4 * 2 * 256 * 64
        assert bench.sa_required_bytes(1, 1024, backward=False) / GIB == pytest.approx(2048.0)
        assert bench.out_of_memory_text(3 * GIB) == "out of memory (needs 3.0 GiB)"

    def test_run_case_in_process(self):
        result = bench.run_case(
            "an",
            16,
            "cpu",
            batch=1,
            channels=8,
            entities=4,
            warmup=0,
            repeats=2,
            min_repeats=1,
            case_budget_s=5.0,
        )
        assert result["fwd_ms"] > 0
        assert result["fwdbwd_ms"] > 0
        assert result["fwd_peak_mib"] >= 0
        assert result["fwdbwd_peak_mib"] >= 0
        forward_only = bench.run_case(
            "sa",
            8,
            "cpu",
            batch=1,
            channels=8,
            entities=4,
            warmup=0,
            repeats=1,
            min_repeats=1,
            case_budget_s=5.0,
            backward=False,
        )
        assert set(forward_only) == {"fwd_ms", "fwd_peak_mib"}

    def test_case_subprocess(self):
        # SA at 32^2 holds a 1024 x 256 fp32 attention matrix (1 MiB) and its softmax: the fresh-process RSS peak
        # must see at least those 2 MiB forward, and more with backward; IN at the same size needs far less.
        case = {
            "layer": "sa",
            "size": 32,
            "device": "cpu",
            "backward": True,
            "threads": 1,
            "batch": 1,
            "channels": 8,
            "entities": 4,
            "warmup": 0,
            "repeats": 1,
            "min_repeats": 1,
            "case_budget_s": 5.0,
        }
        attention = bench._run_case_subprocess(case)
        assert attention["fwd_ms"] > 0
        assert attention["fwd_peak_mib"] >= 1.9
        assert attention["fwdbwd_peak_mib"] > attention["fwd_peak_mib"]
        norm = bench._run_case_subprocess({**case, "layer": "in"})
        assert norm["fwd_peak_mib"] < 1.0
        broken = bench._run_case_subprocess({**case, "layer": "no-such-layer"})
        assert broken["error"].startswith("case process failed")

    def test_main_json_and_oom_arithmetic(self, tmp_path, capsys):
        # A budget between SA's forward (128 KiB) and forward+backward (384 KiB) needs at 16^2: forward runs,
        # backward is reported out of memory; at 32^2 (2 MiB forward) SA is not attempted at all.
        budget_gib = 196608 / GIB
        path = tmp_path / "bench_{device}.json"
        records = bench.main(
            [
                "--sizes",
                "16",
                "32",
                "--device",
                "cpu",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--channels",
                "8",
                "--memory-budget-gib",
                str(budget_gib),
                "--json",
                str(path),
                "--threads",
                "1",
                "--malloc-cache",
            ]
        )
        out = capsys.readouterr().out
        written = tmp_path / "bench_cpu.json"
        assert written.is_file()
        record = json.loads(written.read_text())
        assert set(records) == {"cpu"}
        assert record["device"] == "cpu"
        assert record["config"]["sizes"] == [16, 32]
        assert record["config"]["channels"] == 8
        assert record["memory_budget_gib"] == pytest.approx(budget_gib)
        assert "MALLOC_MMAP_THRESHOLD_" in record["cpu_allocator"]
        rows = {(r["layer"], r["size"]): r for r in record["results"]}
        assert set(rows) == {(layer, size) for layer in ("in", "an", "sa") for size in (16, 32)}
        for key in [("in", 16), ("in", 32), ("an", 16), ("an", 32)]:
            row = rows[key]
            assert row["fwd_status"] == "ok", row
            assert row["fwdbwd_status"] == "ok", row
            assert row["fwd_ms"] > 0
            assert row["fwdbwd_ms"] > 0
            assert row["fwd_peak_mib"] >= 0
        partial = rows[("sa", 16)]
        assert partial["fwd_status"] == "ok"
        assert partial["fwd_ms"] > 0
        assert partial["fwdbwd_status"] == "out of memory (needs 0.0 GiB)"
        assert "fwdbwd_ms" not in partial
        skipped = rows[("sa", 32)]
        assert skipped["fwd_status"].startswith("out of memory (needs")
        assert skipped["sa_needs_gib"]["fwd"] == pytest.approx(2 * 4 * 1024 * 256 / GIB)
        assert "fwd_ms" not in skipped
        # the paper's numbers and the target checks are part of the record and of the printed report
        assert record["paper_table5_ms"]["an"]["512"] == 9.46
        assert record["paper_table5_ms"]["sa"]["1024"] is None
        assert [t["status"] for t in record["targets"]] == ["n/a", "n/a", "n/a"]
        assert "| 16^2 |" in out
        assert "AN/IN fwd" in out
        assert "SA/AN fwd" in out
        assert "OOM" in out
        assert f"wrote {written}" in out

    def test_targets_and_report(self):
        def row(layer, size, fwd):
            return {
                "layer": layer,
                "size": size,
                "fwd_ms": fwd,
                "fwdbwd_ms": 2 * fwd,
                "fwd_peak_mib": 1.0,
                "fwdbwd_peak_mib": 2.0,
                "fwd_status": "ok",
                "fwdbwd_status": "ok",
            }

        rows = [row("in", 128, 0.1), row("an", 128, 1.0), row("sa", 128, 60.0)]
        rows += [row("in", 512, 2.0), row("an", 512, 10.0), row("an", 1024, 60.0), row("in", 1024, 8.0)]
        rows.append(
            {
                "layer": "sa",
                "size": 512,
                "fwd_status": "out of memory (needs 128.0 GiB)",
                "fwdbwd_status": "out of memory (needs 256.0 GiB)",
                "sa_needs_gib": {"fwd": 128.0, "fwdbwd": 256.0},
            }
        )
        targets = bench.check_targets(rows)
        assert [t["status"] for t in targets] == ["PASS", "PASS", "FAIL"]
        assert targets[0]["value"] == pytest.approx(5.0)
        assert targets[1]["value"] == pytest.approx(60.0)
        assert targets[2]["value"] == pytest.approx(6.0)
        record = {
            "device": "cpu",
            "device_name": "test",
            "torch": "x",
            "threads": 1,
            "config": {
                "sizes": [128, 512, 1024],
                "batch": 1,
                "channels": 32,
                "entities": 16,
                "repeats": 1,
                "warmup": 0,
            },
            "memory_method": "m",
            "memory_budget_gib": 1.0,
            "memory_budget_source": "s",
            "results": rows,
            "targets": targets,
        }
        text = bench.markdown_report(record)
        assert "| 128^2 | 0.100 | 1.000 | 60.000 |" in text
        assert "| 10.00 |" in text  # AN/IN at 128^2
        assert "| 60.00 |" in text  # SA/AN at 128^2
        assert "| 0.73 | 5.21 |" in text  # paper Table 5 at 128^2
        assert "out of memory (needs 128.0 GiB)" in text
        assert "FAIL: AN fwd at 1024^2" in text

    def test_exception(self, tmp_path):
        with pytest.raises(SystemExit, match="sizes"):
            bench.main(["--sizes", "1", "--device", "cpu", "--json", str(tmp_path / "x.json")])
        with pytest.raises(SystemExit, match="repeats"):
            bench.main(["--repeats", "0", "--device", "cpu", "--json", str(tmp_path / "x.json")])
