"""Tests for the layer benchmark ``benchmarks.layers`` (AN paper Table 5 on our layers), on tiny sizes."""

import argparse
import json

import pytest

from benchmarks import _layer_memory as memory
from benchmarks import _layer_report as report
from benchmarks import layers as bench

GIB = 1024**3


def _args(**overrides):
    args = bench.build_parser().parse_args([])
    vars(args).update({"channels": 8, "repeats": 3, "min_repeats": 1, "warmup": 0, **overrides})
    return args


class TestLayerBenchmark:
    def test_sa_required_bytes(self):
        # (B * HW * HW/4) fp32 floats: 2 copies forward (logits + softmax), 6 with backward
        assert memory.sa_required_bytes(1, 16, backward=False) == 2 * 4 * 256 * 64
        assert memory.sa_required_bytes(2, 16, backward=True) == 6 * 4 * 2 * 256 * 64
        assert memory.sa_required_bytes(1, 1024, backward=False) / GIB == pytest.approx(2048.0)
        assert memory.out_of_memory_text(3 * GIB) == "out of memory (needs 3.0 GiB)"

    def test_time_size_interleaves_every_case(self):
        cpu_layers = [name for name in bench.LAYERS if name != "an_triton"]  # Triton: CUDA only
        timed = bench.time_size(16, "cpu", cpu_layers, _args(), skip={("sa", "fwdbwd")})
        expected = {(name, mode) for name in cpu_layers for mode in bench.MODES[name]} - {("sa", "fwdbwd")}
        assert set(timed) == expected
        assert {r["repeats"] for r in timed.values()} == {3}  # the same number of interleaved repeats for all
        assert all(r["ms"] > 0 for r in timed.values())
        # a size budget of zero stops after min_repeats, for every case alike
        short = bench.time_size(16, "cpu", ["in", "an"], _args(size_budget_s=0.0, min_repeats=2), skip=set())
        assert {r["repeats"] for r in short.values()} == {2}

    def test_case_functions(self, monkeypatch):
        import torch

        layer = bench.build_layer("an", 8, 4)
        x = torch.randn(1, 8, 8, 8)
        x_grad = x.clone().requires_grad_(True)
        calls = []
        layer.sample_positions = lambda *a, **k: calls.append("train") or torch.arange(4).expand(1, 4)
        bench.case_function(layer, "fwd", x, x_grad, torch.ones_like(x))()
        assert not layer.training and calls == [] and x_grad.grad is None  # eval mode: no self-sampling
        bench.case_function(layer, "train_fwd", x, x_grad, torch.ones_like(x))()
        assert layer.training and calls == ["train"] and x_grad.grad is None
        bench.case_function(layer, "fwdbwd", x, x_grad, torch.ones_like(x))()
        assert calls == ["train", "train"] and x_grad.grad is not None and layer.rho.grad is not None
        assert bench.build_layer("an_ref", 8, 4).implementation == "reference"
        implementations = {
            name: bench.build_layer(name, 8, 4).implementation for name in ("an", "an_fused", "an_triton")
        }
        assert implementations == {"an": "auto", "an_fused": "fused", "an_triton": "triton"}
        with pytest.raises(ValueError, match="unknown layer"):
            bench.build_layer("bn", 8, 4)

    def test_memory_case_subprocess(self, monkeypatch):
        # SA at 32^2 holds a 1024 x 256 fp32 attention matrix (1 MiB) and its softmax: the fresh-process RSS peak
        # must see most of those 2 MiB forward (measured 1.75-2.03 MiB on one machine: pages freed by the warm-up are
        # partly reused), and more with backward; IN at the same size needs far less.
        case = {"layer": "sa", "size": 32, "device": "cpu", "backward": True, "threads": 1}
        case.update(batch=1, channels=8, entities=4)
        attention = memory.measure_memory(case, isolated=True)
        assert attention["fwd_peak_mib"] >= 1.5
        assert attention["fwdbwd_peak_mib"] > attention["fwd_peak_mib"]
        norm = memory.measure_memory({**case, "layer": "in"}, isolated=True)
        assert norm["fwd_peak_mib"] < 1.0
        monkeypatch.setattr(memory.sys, "executable", "false")  # a child that fails at once
        broken = memory.measure_memory(case, isolated=True)
        assert broken["error"].startswith("case process failed (exit 1)")
        in_process = memory.measure_memory({**case, "layer": "in", "backward": False}, isolated=False)
        assert set(in_process) == {"fwd_peak_mib"}

    def test_main_json_and_oom_arithmetic(self, tmp_path, capsys):
        # A budget between SA's forward (128 KiB) and forward+backward (384 KiB) needs at 16^2: forward runs,
        # backward is reported out of memory; at 32^2 (2 MiB forward) SA is not attempted at all.
        budget_gib = 196608 / GIB
        path = tmp_path / "bench_{device}.json"
        argv = ["--sizes", "16", "32", "--device", "cpu", "--repeats", "2", "--warmup", "0", "--channels", "8"]
        argv += ["--memory-budget-gib", str(budget_gib), "--json", str(path), "--threads", "1"]
        argv += ["--memory", "in-process", "--layers", "in", "an", "an_fused", "an_ref", "sa"]
        records = bench.main(argv)
        out = capsys.readouterr().out
        written = tmp_path / "bench_cpu.json"
        record = json.loads(written.read_text())
        assert set(records) == {"cpu"}
        assert record["device"] == "cpu" and record["config"]["sizes"] == [16, 32]
        assert record["config"]["channels"] == 8
        assert record["memory_budget_gib"] == pytest.approx(budget_gib)
        assert record["cpu_allocator"] == "glibc malloc, default settings"
        assert len(record["load_average"]) == 3
        rows = {(r["layer"], r["size"]): r for r in record["results"]}
        assert set(rows) == {(layer, size) for layer in ("in", "an", "an_fused", "an_ref", "sa") for size in (16, 32)}
        for layer in ("in", "an", "an_fused", "an_ref"):
            for size in (16, 32):
                row = rows[layer, size]
                for mode in bench.MODES[layer]:
                    assert row[f"{mode}_status"] == "ok", row
                    assert row[f"{mode}_ms"] > 0 and row[f"{mode}_repeats"] == 2
                assert row["fwd_peak_mib"] >= 0 and row["fwdbwd_peak_mib"] >= 0
        partial = rows["sa", 16]
        assert partial["fwd_status"] == "ok" and partial["fwd_ms"] > 0
        assert partial["fwdbwd_status"] == "out of memory (needs 0.0 GiB)"
        assert "fwdbwd_ms" not in partial
        skipped = rows["sa", 32]
        assert skipped["fwd_status"].startswith("out of memory (needs")
        assert skipped["sa_needs_gib"]["fwd"] == pytest.approx(2 * 4 * 1024 * 256 / GIB)
        assert "fwd_ms" not in skipped and "fwd_peak_mib" not in skipped
        assert [t["status"] for t in record["targets"]] == ["n/a"] * 3
        assert "| 16^2 |" in out and "AN fwd / IN fwd" in out and "AN train fwd / IN fwd" in out
        assert "SA fwd / AN fwd" in out and "AN_REF fwd+bwd / AN fwd+bwd" in out and "OOM" in out
        assert "AN_FUSED fwd / AN fwd" in out
        assert f"wrote {written}" in out

    def test_malloc_cache_reruns_with_the_setting(self, tmp_path):
        path = tmp_path / "cached.json"
        argv = ["--sizes", "8", "--device", "cpu", "--repeats", "1", "--warmup", "0", "--channels", "4"]
        argv += ["--layers", "in", "--memory", "none", "--json", str(path), "--malloc-cache", "--threads", "1"]
        records = bench.main(argv)
        assert "MALLOC_MMAP_THRESHOLD_" in records["cpu"]["cpu_allocator"]
        assert json.loads(path.read_text())["results"][0]["fwd_ms"] > 0

    def test_targets_and_report(self):
        def row(layer, size, fwd, train=None, bwd=None, peak=None):
            r = {"layer": layer, "size": size, "fwd_ms": fwd, "fwdbwd_ms": bwd or 2 * fwd, "fwd_status": "ok"}
            r.update(fwdbwd_status="ok", fwd_peak_mib=1.0, fwdbwd_peak_mib=peak or 2.0)
            if train is not None:
                r.update(train_fwd_ms=train, train_fwd_status="ok")
            return r

        rows = [row("in", 128, 0.1), row("an", 128, 1.0, 1.1), row("sa", 128, 60.0)]
        rows += [row("in", 512, 2.0, bwd=5.0), row("an", 512, 5.0, 7.0, bwd=18.0)]
        rows += [row("an", 1024, 30.0, 31.0, peak=300.0), row("in", 1024, 8.0, peak=256.0)]
        rows.append(
            {
                "layer": "sa",
                "size": 512,
                "fwd_status": "out of memory (needs 128.0 GiB)",
                "fwdbwd_status": "out of memory (needs 256.0 GiB)",
                "sa_needs_gib": {"fwd": 128.0, "fwdbwd": 256.0},
            }
        )
        targets = report.check_targets(rows, "cpu")
        # the CPU time targets of the compiled passes are retired: memory, SA / AN and AN's growth remain
        assert [t["status"] for t in targets] == ["PASS", "PASS", "FAIL"]
        assert [round(t["value"], 4) for t in targets] == [round(300 / 256, 4), 60.0, 6.0]
        cuda = report.check_targets([row("an", 1024, 0.8), row("in", 1024, 0.5)], "cuda")
        assert [t["status"] for t in cuda[:2]] == ["PASS", "PASS"]
        assert report.check_targets([row("an", 1024, 1.2), row("in", 1024, 0.5)], "cuda")[1]["status"] == "FAIL"
        record = {
            "device": "cpu",
            "device_name": "test",
            "torch": "x",
            "threads": 2,
            "load_average": [3.0, 2.0, 1.0],
            "config": {"sizes": [128, 512, 1024], "layers": ["in", "an", "sa"], "batch": 1, "channels": 32},
            "memory_method": "m",
            "memory_budget_gib": 1.0,
            "memory_budget_source": "s",
            "results": rows,
            "targets": targets,
        }
        record["config"].update(entities=16, repeats=1, warmup=0)
        text = report.markdown_report(record)
        assert "| 128^2 | 0.100 | 0.200 | 1.000 | 1.100 | 2.000 | 60.000 | 120.000 |" in text
        assert "| 10.00 | 11.00 | 10.00 | 60.00 | 60.00 | 0.73 | 5.21 |" in text  # ratios and paper Table 5
        assert "| 512^2 | 2.000 | 5.000 | 5.000 | 7.000 | 18.000 | OOM | OOM |" in text
        assert "| 1024^2 |" in text and "| 1.17 |" in text  # memory ratio AN / IN at 1024^2
        assert "out of memory (needs 128.0 GiB)" in text
        assert "FAIL: AN fwd at 1024^2 <= 5x its 512^2 time" in text and "within 3x" not in text
        assert "Load average at the end: 3.00 / 2.00 / 1.00" in text

    def test_exception(self, tmp_path, capsys):
        with pytest.raises(SystemExit, match="sizes"):
            bench.main(["--sizes", "4", "--device", "cpu", "--json", str(tmp_path / "x.json")])
        with pytest.raises(SystemExit):
            bench.main(["--repeats", "0", "--device", "cpu", "--json", str(tmp_path / "x.json")])
        assert "--repeats must be at least 1" in capsys.readouterr().err
        assert isinstance(bench.build_parser(), argparse.ArgumentParser)
