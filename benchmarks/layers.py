"""Layer cost benchmark: Attentive Normalization vs. SA-GAN self-attention vs. InstanceNorm2d.

Reproduces the measurement of the AN paper's Table 5 (Wang et al., "Attentive Normalization for Conditional
Image Generation", CVPR 2020, Section 5.4: batch 1, C = 32, n = 16) on this package's layers, at square maps of
64^2 ... 1024^2: ``nn.InstanceNorm2d(affine=True)`` (the module, as users compare), ``AttentiveNorm2d`` (n = 16,
self-sampling on, ``implementation="auto"``; optionally each implementation forced: ``an_ref``, ``an_fused``,
``an_triton``) and ``SelfAttention2d``.

Times, per size, all measured in one process with the repeats of every case interleaved (IN, AN, SA, IN, AN, SA,
...), each the median of its repeats, so that load from other processes affects every column alike:

* ``fwd``: forward in eval mode under ``torch.no_grad`` (for AN: self-sampling off, as at test time);
* ``train fwd`` (AN only): forward in train mode under ``torch.no_grad`` (self-sampling branch on);
* ``fwd+bwd``: forward and backward in train mode (input and parameters require grad, a fixed output gradient).

CUDA times come from CUDA events; CPU times from ``time.perf_counter``.

Peak memory of one forward (eval) and of one forward + backward (train), above what the input and the layer
already hold. CUDA: ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``. CPU
(``--memory isolated``, the default): every layer and size in a fresh Python subprocess (nothing cached by an
earlier case is reused); the peak resident set (``VmHWM``) is reset through ``/proc/self/clear_refs`` just before
the pass and the peak above the resident set before the first pass is reported (the ``getrusage`` lifetime peak, an
upper bound, where ``clear_refs`` cannot be written). ``--memory in-process`` measures in the timing process (fast,
approximate: memory freed by earlier cases may be reused); ``--memory none`` skips it.

CPU allocator: PyTorch has no caching allocator on CPU; with glibc's default settings every tensor above 32 MiB is
a fresh ``mmap`` that is page-faulted in on every call. ``--malloc-cache`` runs everything with glibc told to keep
freed memory (what the CUDA caching allocator does on the GPU); the JSON records which setting was used.

Self-attention's (B, HW, HW/4) fp32 attention matrix grows with (H W)^2: a case whose matrices exceed the memory
budget is reported as "out of memory (needs N GiB)" from arithmetic instead of being run.

``python -m benchmarks.layers`` (``--quick``: small sizes) prints markdown tables with the ratios to InstanceNorm2d
and SA, the paper's Table 5 (RTX 2080, PyTorch 1.1: only the CUDA table is comparable), the project's targets,
and writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks._args import add_shared_arguments, apply_shared
from benchmarks._layer_cases import LAYERS, MODES, build_layer, case_function
from benchmarks._layer_memory import (
    GIB,
    MALLOC_CACHE_ENV,
    available_memory_bytes,
    measure_memory,
    out_of_memory_text,
    sa_required_bytes,
)
from benchmarks._layer_report import check_targets, markdown_report

__all__ = ["LAYERS", "build_layer", "main", "time_size"]

DEFAULT_LAYERS: tuple[str, ...] = ("in", "an", "sa")
DEFAULT_SIZES: tuple[int, ...] = (64, 128, 256, 512, 1024)
QUICK_SIZES: tuple[int, ...] = (32, 64)
DEFAULT_JSON = "runs/benchmarks/layers_{device}.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(fn, device: torch.device) -> float:
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return begin.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def time_size(
    size: int, device: str, layers: Sequence[str], args: argparse.Namespace, skip: set[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Median ms of every (layer, mode) at one size, the repeats of all cases interleaved in one loop.

    Cases in ``skip`` are not run. Stops repeating after ``args.size_budget_s`` seconds once every case has
    ``args.min_repeats`` repeats. Returns ``{(layer, mode): {"ms": median, "repeats": k}}``.
    """
    dev = torch.device(device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.channels, size, size, device=dev)
    x_grad = x.clone().requires_grad_(True)
    grad_out = torch.randn_like(x)
    cases = {}
    for name in layers:
        layer = build_layer(name, args.channels, args.entities).to(dev)
        for mode in MODES[name]:
            if (name, mode) not in skip:
                cases[name, mode] = case_function(layer, mode, x, x_grad, grad_out)
    for _ in range(args.warmup):
        for fn in cases.values():
            fn()
    _sync(dev)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    started = time.perf_counter()
    for i in range(args.repeats):
        for key, fn in cases.items():
            times[key].append(_time_once(fn, dev))
        if i + 1 >= args.min_repeats and time.perf_counter() - started > args.size_budget_s:
            break
    return {key: {"ms": statistics.median(v), "repeats": len(v)} for key, v in times.items()}


# ----------------------------------------------------------------------------------------------------------------
# A whole device run


def benchmark_device(device: str, args: argparse.Namespace, sizes: Sequence[int]) -> dict[str, Any]:
    """Measure every layer at every size on ``device``; returns the JSON-ready record."""
    if args.memory_budget_gib is not None:
        budget, budget_source = int(args.memory_budget_gib * GIB), "--memory-budget-gib"
    else:
        budget = int(available_memory_bytes(device) * args.memory_fraction)
        budget_source = f"{args.memory_fraction} x " + ("free device memory" if device == "cuda" else "MemAvailable")
    memory = "in-process" if device == "cuda" and args.memory != "none" else args.memory
    rows: list[dict[str, Any]] = []
    for size in sizes:
        skip: set[tuple[str, str]] = set()
        by_layer = {name: {"layer": name, "size": size} for name in args.layers}
        if "sa" in by_layer:
            row = by_layer["sa"]
            for mode, backward in (("fwd", False), ("fwdbwd", True)):
                need = sa_required_bytes(args.batch, size, backward=backward)
                row.setdefault("sa_needs_gib", {})[mode] = need / GIB
                if need > budget:
                    skip.add(("sa", mode))
                    row[f"{mode}_status"] = out_of_memory_text(need)
        try:
            timed = time_size(size, device, args.layers, args, skip)
        except torch.OutOfMemoryError as err:
            timed = {}
            torch.cuda.empty_cache()
            for row in by_layer.values():
                row.setdefault("fwd_status", f"out of memory while running ({str(err).splitlines()[0]})")
        for (name, mode), result in timed.items():
            by_layer[name][f"{mode}_ms"] = result["ms"]
            by_layer[name][f"{mode}_repeats"] = result["repeats"]
        for name, row in by_layer.items():
            if memory != "none" and ("fwd_ms" in row or "fwdbwd_ms" in row):
                case = {"layer": name, "size": size, "device": device, "backward": "fwdbwd_ms" in row}
                case.update(threads=args.threads, batch=args.batch, channels=args.channels, entities=args.entities)
                measured = measure_memory(case, isolated=memory == "isolated", malloc_cache=args.malloc_cache)
                if "error" in measured:
                    row["memory_status"] = measured["error"]
                row.update({k: v for k, v in measured.items() if k != "error"})
            for mode in MODES[name]:
                row.setdefault(f"{mode}_status", "ok" if f"{mode}_ms" in row else "not run")
            rows.append(row)
            print(f"[{device}] {name} {size}^2: {_short(row)}", flush=True)
    record = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "config": {
            "sizes": list(sizes),
            "layers": list(args.layers),
            "batch": args.batch,
            "channels": args.channels,
            "entities": args.entities,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "min_repeats": args.min_repeats,
            "size_budget_s": args.size_budget_s,
        },
        "memory_method": {
            "isolated": "peak RSS (VmHWM after clear_refs) above the RSS before the first pass, a fresh subprocess "
            "per layer and size",
            "in-process": "torch.cuda.max_memory_allocated above the allocation before the pass"
            if device == "cuda"
            else "peak RSS (VmHWM after clear_refs) above the RSS before the pass, in the timing process",
            "none": "not measured",
        }[memory],
        "cpu_allocator": None
        if device != "cpu"
        else ("glibc malloc, caching settings " + json.dumps(MALLOC_CACHE_ENV))
        if args.malloc_cache
        else "glibc malloc, default settings",
        "memory_budget_gib": budget / GIB,
        "memory_budget_source": budget_source,
        "results": rows,
    }
    record["targets"] = check_targets(rows, device)
    return record


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def _short(row: dict[str, Any]) -> str:
    parts = []
    for mode in MODES[row["layer"]]:
        value = row.get(f"{mode}_ms")
        parts.append(f"{mode} {value:.3f} ms" if value is not None else f"{mode} {row.get(f'{mode}_status')}")
    for mode in ("fwd", "fwdbwd"):
        if f"{mode}_peak_mib" in row:
            parts.append(f"{mode} peak {row[f'{mode}_peak_mib']:.1f} MiB")
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.layers`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.layers",
        description="Time and memory of AttentiveNorm2d, SelfAttention2d and InstanceNorm2d (AN paper, Table 5).",
        epilog="--json: '{device}' in the path is replaced by cpu / cuda (one file per device).",
    )
    add_shared_arguments(parser, json_default=DEFAULT_JSON, repeats=15, warmup=2)
    sizes = " ".join(map(str, DEFAULT_SIZES))
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help=f"square map sizes (default {sizes})")
    parser.add_argument(
        "--layers",
        nargs="+",
        choices=LAYERS,
        default=list(DEFAULT_LAYERS),
        help="layers to measure (an: AttentiveNorm2d as configured by default, implementation='auto'; an_ref, "
        "an_fused, an_triton: implementation 'reference', 'fused' or 'triton' (CUDA) forced)",
    )
    parser.add_argument("--quick", action="store_true", help=f"small sizes {QUICK_SIZES} and 3 repeats (make demo)")
    parser.add_argument("--min-repeats", type=int, default=3, help="timed runs kept even when a size is slow")
    parser.add_argument(
        "--size-budget-s", type=float, default=120.0, help="stop repeating a size's cases after this long"
    )
    parser.add_argument(
        "--memory",
        choices=("isolated", "in-process", "none"),
        default="isolated",
        help="CPU peak memory: a fresh subprocess per case (default), in the timing process, or not at all",
    )
    parser.add_argument(
        "--malloc-cache",
        action="store_true",
        help="CPU: run with glibc malloc tuned to keep freed memory (no fresh page faults per call)",
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--entities", type=int, default=16, help="AN's number of semantic entities n")
    parser.add_argument(
        "--memory-fraction",
        type=float,
        default=0.5,
        help="share of the available memory self-attention may use (the CPU here is shared, so half by default)",
    )
    parser.add_argument("--memory-budget-gib", type=float, default=None, help="fixed memory budget (overrides)")
    parser.add_argument("--child-case", default=None, help=argparse.SUPPRESS)
    return parser


def _json_path(template: str, device: str, several: bool) -> Path:
    if "{device}" in template:
        return Path(template.format(device=device))
    path = Path(template)
    return path.with_name(f"{path.stem}_{device}{path.suffix}") if several else path


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run the benchmark; returns {device: record} (also written as JSON, one file per device)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child_case is not None:
        from benchmarks._layer_memory import run_memory_case

        print(json.dumps(run_memory_case(json.loads(args.child_case))), flush=True)
        return {}
    for name in ("min_repeats", "batch", "channels", "entities"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.memory_fraction <= 1:
        raise SystemExit("--memory-fraction must be in (0, 1]")
    devices = apply_shared(parser, args)  # checks --repeats, --warmup, --threads, --device; sets the threads
    args.min_repeats = min(args.min_repeats, args.repeats)
    if args.quick:
        sizes = tuple(args.sizes or QUICK_SIZES)
        args.repeats, args.warmup = min(args.repeats, 3), min(args.warmup, 1)
        print(f"Quick layer benchmark (sizes {', '.join(map(str, sizes))}); full sizes: python -m benchmarks.layers")
    else:
        sizes = tuple(args.sizes or DEFAULT_SIZES)
    bad = [s for s in sizes if s < 8]
    if bad:
        raise SystemExit(f"--sizes must be >= 8 (AN samples 16 positions from the 2x2-pooled map), got {bad}")
    if args.malloc_cache and any(os.environ.get(k) != v for k, v in MALLOC_CACHE_ENV.items()):
        # glibc reads its settings at start-up: run the whole benchmark again in a process that has them.
        env = {**os.environ, **MALLOC_CACHE_ENV}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_root(), env.get("PYTHONPATH")]))
        subprocess.run([sys.executable, "-m", "benchmarks.layers", *argv], env=env, check=True)
        return {d: json.loads(_json_path(args.json, d, len(devices) > 1).read_text()) for d in devices}
    records: dict[str, dict[str, Any]] = {}
    for device in devices:
        record = benchmark_device(device, args, sizes)
        path = _json_path(args.json, device, several=len(devices) > 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        print()
        print(markdown_report(record))
        print(f"\nwrote {path}")
        records[device] = record
    return records


def _root() -> str:
    return str(Path(__file__).resolve().parents[1])


if __name__ == "__main__":
    main()
