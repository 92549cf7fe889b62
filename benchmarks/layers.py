"""Layer cost benchmark: Attentive Normalization vs. SA-GAN self-attention vs. InstanceNorm2d.

Reproduces the measurement of the AN paper's Table 5 (Wang et al., "Attentive Normalization for Conditional
Image Generation", CVPR 2020, Section 5.4: batch 1, C = 32, n = 16) on this package's layers:
``AttentiveNorm2d`` (train mode, self-sampling on), ``SelfAttention2d`` (Zhang et al. 2019) and
``nn.InstanceNorm2d(affine=True)``, at square feature maps of 64^2 ... 1024^2.

Measured per layer and size:

* forward time (under ``torch.no_grad``) and forward + backward time (input and parameters require grad, a fixed
  random output gradient), each the median of ``--repeats`` runs after ``--warmup`` runs. On CUDA the time comes
  from CUDA events with a synchronize; on CPU from ``time.perf_counter``.
* peak memory of one forward and of one forward + backward pass, above what the input and the layer already hold.
  CUDA: ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``. CPU: every case runs in
  a fresh Python subprocess (so no memory cached by an earlier case is reused); the process's peak resident set
  (``VmHWM`` in ``/proc/self/status``) is reset through ``/proc/self/clear_refs`` just before the pass, and the
  peak minus the resident set before the first measured pass (input, layer and warm-up already in place) is
  reported. Where ``clear_refs`` cannot be written, the
  ``getrusage`` lifetime peak is used instead (an upper bound).

CPU allocator: PyTorch has no caching allocator on CPU. With glibc's default settings every tensor above 32 MiB
(at 1024^2 and C = 32 the input alone is 128 MiB) is a fresh ``mmap`` that is page-faulted in and zeroed by the
kernel on every call and unmapped when freed, which adds a size-dependent cost that smaller maps do not pay.
``--malloc-cache`` runs the CPU cases with glibc told to keep freed memory (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``), which is what the CUDA caching allocator does on the GPU; the
JSON records which allocator setting was used.

Self-attention's (B, HW, HW/4) fp32 attention matrix grows with (H W)^2. Before running a self-attention case the
script computes what it needs (forward: the matrix and its softmax copy; forward + backward: six matrices of
that size) and, if that exceeds the memory budget (``--memory-fraction`` of the available RAM from
``/proc/meminfo`` on CPU, of the free device memory on CUDA, or ``--memory-budget-gib``), reports
"out of memory (needs N GiB)" instead of trying it.

Run ``python -m benchmarks.layers`` (``--quick`` for the small sizes used by ``make demo``). It prints markdown
tables with the ratios AN/IN and SA/AN, the paper's Table 5 numbers for reference (an RTX 2080 GPU with
PyTorch 1.1, so only the CUDA table is comparable), the checks of the project's targets, and writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

LAYERS: tuple[str, ...] = ("in", "an", "sa")
LAYER_TITLES = {"in": "InstanceNorm2d", "an": "AttentiveNorm2d (n=16, train)", "sa": "SelfAttention2d"}
DEFAULT_SIZES: tuple[int, ...] = (64, 128, 256, 512, 1024)
QUICK_SIZES: tuple[int, ...] = (32, 64)
DEFAULT_JSON = "runs/benchmarks/layers_{device}.json"
GIB = 1024**3
MIB = 1024**2

# Paper Table 5 (batch 1, C = 32, n = 16; PyTorch 1.1 on one RTX 2080; forward time in ms). None: out of memory.
PAPER_TABLE5_MS: dict[str, dict[int, float | None]] = {
    "an": {128: 0.73, 256: 2.24, 512: 9.46, 1024: 37.68},
    "sa": {128: 5.21, 256: 79.42, 512: None, 1024: None},
}

# Project targets, checked on forward times measured side by side in one run.
TARGET_AN_OVER_IN_MAX = 6.0  # AN forward within 6x of InstanceNorm2d at 512^2
TARGET_SA_OVER_AN_MIN = 50.0  # SA at least 50x slower than AN at 128^2
TARGET_AN_GROWTH_MAX = 5.0  # AN at 1024^2 no more than 5x its 512^2 time (linear in H*W would be 4x)


def build_layer(name: str, channels: int, entities: int) -> nn.Module:
    """The benchmarked module for ``name`` in {"in", "an", "sa"}, in train mode."""
    from common.layers.attentive_norm import AttentiveNorm2d
    from common.layers.self_attention import SelfAttention2d

    builders = {
        "in": lambda: nn.InstanceNorm2d(channels, affine=True),
        "an": lambda: AttentiveNorm2d(channels, num_entities=entities),
        "sa": lambda: SelfAttention2d(channels),
    }
    return builders[name]().train()


def sa_required_bytes(batch: int, size: int, backward: bool) -> int:
    """Bytes of the fp32 (B, HW, HW/4) attention matrices self-attention holds at its peak.

    Forward: the logits and their softmax (2 matrices). Forward + backward: 6 matrices (the saved softmax, the
    logits, the gradients of the softmax output and of the logits, and temporaries of the softmax backward; the
    measured CPU peak at 128^2 is 4.1 matrices with glibc's default settings and 6.0 with --malloc-cache).
    """
    positions = size * size
    pooled = (size // 2) * (size // 2)
    copies = 6 if backward else 2
    return copies * 4 * batch * positions * pooled


def available_memory_bytes(device: str) -> int:
    """Memory a case may use: the kernel's MemAvailable on CPU, the free device memory on CUDA."""
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    text = Path("/proc/meminfo").read_text()
    match = re.search(r"^MemAvailable:\s+(\d+)\s+kB", text, flags=re.MULTILINE)
    if match is None:
        raise RuntimeError("cannot read MemAvailable from /proc/meminfo; pass --memory-budget-gib")
    return int(match.group(1)) * 1024


def out_of_memory_text(required: int) -> str:
    return f"out of memory (needs {required / GIB:.1f} GiB)"


# ----------------------------------------------------------------------------------------------------------------
# CPU memory helpers (used inside the per-case subprocess)


def _proc_status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), flags=re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(match.group(1))


def _reset_peak_rss() -> bool:
    """Reset the process's peak resident set (Linux ``clear_refs`` value 5); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _CpuPeak:
    """Peak resident memory during the ``with`` block, above ``start`` (default: the resident set at entry).

    Pass the resident set measured before an earlier pass as ``start`` when that pass's freed memory may still be
    held by the allocator (it is then reused, not counted twice, and the peak stays relative to the same level).
    """

    def __init__(self, start: int | None = None) -> None:
        self.start = start

    def __enter__(self) -> _CpuPeak:
        self.exact = _reset_peak_rss()
        if self.start is None:
            self.start = _proc_status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.exact:
            peak = _proc_status_kib("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak = max(peak - self.start, 0)


# ----------------------------------------------------------------------------------------------------------------
# One case: one layer at one size on one device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_ms(fn, device: torch.device, warmup: int, repeats: int, budget_s: float, min_repeats: int) -> float:
    """Median wall time of ``fn`` in ms; fewer repeats (at least ``min_repeats``) when one run is slow."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    started = time.perf_counter()
    for i in range(repeats):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000.0)
        if i + 1 >= min_repeats and time.perf_counter() - started > budget_s:
            break
    return statistics.median(times)


def run_case(
    layer_name: str,
    size: int,
    device: str,
    *,
    batch: int,
    channels: int,
    entities: int,
    warmup: int,
    repeats: int,
    min_repeats: int,
    case_budget_s: float,
    backward: bool = True,
) -> dict[str, Any]:
    """Time and peak memory of one layer at one size, in this process.

    Returns a dict with ``fwd_ms``, ``fwd_peak_mib`` and, when ``backward``, ``fwdbwd_ms``, ``fwdbwd_peak_mib``.
    """
    dev = torch.device(device)
    torch.manual_seed(0)
    layer = build_layer(layer_name, channels, entities).to(dev)
    # Wake up the libraries (thread pools, autograd engine, kernel caches) on a small input, so that their
    # one-time allocations are not counted below.
    with torch.no_grad():
        layer(torch.randn(batch, channels, 8, 8, device=dev))
    small = torch.randn(batch, channels, 8, 8, device=dev, requires_grad=True)
    layer(small).backward(torch.randn_like(small))  # the same backward call as below (not .sum().backward())
    layer.zero_grad(set_to_none=True)
    x = torch.randn(batch, channels, size, size, device=dev)
    x_grad = x.clone().requires_grad_(True)
    grad_out = torch.randn_like(x)
    _sync(dev)

    def forward() -> None:
        with torch.no_grad():
            layer(x)

    def forward_backward() -> None:
        layer.zero_grad(set_to_none=True)
        x_grad.grad = None
        layer(x_grad).backward(grad_out)

    result: dict[str, Any] = {}
    steps = [("fwd", forward)] + ([("fwdbwd", forward_backward)] if backward else [])
    cpu_start = _proc_status_kib("VmRSS") * 1024 if dev.type == "cpu" else 0
    for key, fn in steps:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            base = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            fn()
            torch.cuda.synchronize(dev)
            peak = torch.cuda.max_memory_allocated(dev) - base
        else:
            with _CpuPeak(start=cpu_start) as meter:
                fn()
            peak = meter.peak
        result[f"{key}_peak_mib"] = peak / MIB
    for key, fn in steps:
        result[f"{key}_ms"] = _time_ms(fn, dev, warmup, repeats, case_budget_s, min_repeats)
    return result


# glibc malloc settings for --malloc-cache: never mmap/munmap large blocks, never trim the heap. Freed tensors are
# then reused like a caching allocator (what PyTorch's CUDA allocator does) instead of page-faulting fresh memory.
MALLOC_CACHE_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(4 * GIB),
    "MALLOC_TRIM_THRESHOLD_": str(64 * GIB),
    "MALLOC_TOP_PAD_": str(GIB),
}


def _run_case_subprocess(case: dict[str, Any], malloc_cache: bool = False) -> dict[str, Any]:
    """Run one CPU case in a fresh interpreter (clean heap for the peak-memory measurement)."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    if malloc_cache:
        env.update(MALLOC_CACHE_ENV)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.layers", "--child-case", json.dumps(case)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"case process failed (exit {proc.returncode}): {' | '.join(tail)}"}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------------------------------------------
# A whole device run


def benchmark_device(device: str, args: argparse.Namespace, sizes: Sequence[int]) -> dict[str, Any]:
    """Measure every layer at every size on ``device``; returns the JSON-ready record."""
    if args.memory_budget_gib is not None:
        budget = int(args.memory_budget_gib * GIB)
        budget_source = "--memory-budget-gib"
    else:
        budget = int(available_memory_bytes(device) * args.memory_fraction)
        budget_source = f"{args.memory_fraction} x " + ("free device memory" if device == "cuda" else "MemAvailable")
    memory_method = (
        "torch.cuda.max_memory_allocated above the allocation before the pass"
        if device == "cuda"
        else "peak RSS (VmHWM after clear_refs) above the RSS before the first pass, a fresh subprocess per case"
    )
    common = {
        "threads": args.threads,
        "batch": args.batch,
        "channels": args.channels,
        "entities": args.entities,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "min_repeats": min(args.min_repeats, args.repeats),
        "case_budget_s": args.case_budget_s,
    }
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for layer_name in args.layers:
            row: dict[str, Any] = {"layer": layer_name, "size": size}
            backward = True
            if layer_name == "sa":
                need_fwd = sa_required_bytes(args.batch, size, backward=False)
                need_bwd = sa_required_bytes(args.batch, size, backward=True)
                row["sa_needs_gib"] = {"fwd": need_fwd / GIB, "fwdbwd": need_bwd / GIB}
                if need_fwd > budget:
                    row["fwd_status"] = out_of_memory_text(need_fwd)
                    row["fwdbwd_status"] = out_of_memory_text(need_bwd)
                    rows.append(row)
                    print(f"[{device}] {layer_name} {size}^2: {row['fwd_status']}", flush=True)
                    continue
                if need_bwd > budget:
                    backward = False
                    row["fwdbwd_status"] = out_of_memory_text(need_bwd)
            case = {"layer": layer_name, "size": size, "device": device, "backward": backward, **common}
            if device == "cpu":
                measured = _run_case_subprocess(case, malloc_cache=args.malloc_cache)
            else:
                try:
                    measured = _case_from_dict(case)
                except torch.OutOfMemoryError as err:
                    torch.cuda.empty_cache()
                    measured = {"error": f"out of memory while running ({str(err).splitlines()[0]})"}
            if "error" in measured:
                row["fwd_status"] = measured["error"]
                row.setdefault("fwdbwd_status", measured["error"])
            else:
                row.update(measured)
                row["fwd_status"] = "ok"
                row.setdefault("fwdbwd_status", "ok")
            rows.append(row)
            print(f"[{device}] {layer_name} {size}^2: {_short(row)}", flush=True)
    record = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
        "config": {**common, "sizes": list(sizes)},
        "memory_method": memory_method,
        "cpu_allocator": None
        if device != "cpu"
        else ("glibc malloc, caching settings " + json.dumps(MALLOC_CACHE_ENV))
        if args.malloc_cache
        else "glibc malloc, default settings",
        "memory_budget_gib": budget / GIB,
        "memory_budget_source": budget_source,
        "results": rows,
        "paper_table5_ms": {k: {str(s): v for s, v in d.items()} for k, d in PAPER_TABLE5_MS.items()},
    }
    record["targets"] = check_targets(rows)
    return record


def _case_from_dict(case: dict[str, Any]) -> dict[str, Any]:
    if case.get("threads"):
        torch.set_num_threads(case["threads"])
    return run_case(
        case["layer"],
        case["size"],
        case["device"],
        batch=case["batch"],
        channels=case["channels"],
        entities=case["entities"],
        warmup=case["warmup"],
        repeats=case["repeats"],
        min_repeats=case["min_repeats"],
        case_budget_s=case["case_budget_s"],
        backward=case["backward"],
    )


def _cpu_name() -> str:
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), flags=re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else "cpu"


def _short(row: dict[str, Any]) -> str:
    parts = []
    for key in ("fwd", "fwdbwd"):
        if f"{key}_ms" in row:
            parts.append(f"{key} {row[f'{key}_ms']:.3f} ms / {row[f'{key}_peak_mib']:.1f} MiB")
        else:
            parts.append(f"{key} {row.get(f'{key}_status')}")
    return ", ".join(parts)


def _lookup(rows: Sequence[dict[str, Any]], layer: str, size: int, key: str = "fwd_ms") -> float | None:
    for row in rows:
        if row["layer"] == layer and row["size"] == size:
            return row.get(key)
    return None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def check_targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The three project targets on forward times; status PASS, FAIL or "n/a" when a number is missing."""

    def verdict(name: str, value: float | None, ok, detail: str) -> dict[str, Any]:
        if value is None:
            return {"target": name, "value": None, "status": "n/a", "detail": detail + " (not measured)"}
        return {"target": name, "value": value, "status": "PASS" if ok(value) else "FAIL", "detail": detail}

    an512, in512 = _lookup(rows, "an", 512), _lookup(rows, "in", 512)
    an128, sa128 = _lookup(rows, "an", 128), _lookup(rows, "sa", 128)
    an1024 = _lookup(rows, "an", 1024)
    r1 = an512 / in512 if an512 and in512 else None
    r2 = sa128 / an128 if sa128 and an128 else None
    r3 = an1024 / an512 if an1024 and an512 else None
    return [
        verdict(
            f"AN fwd within {TARGET_AN_OVER_IN_MAX:g}x of IN at 512^2",
            r1,
            lambda v: v <= TARGET_AN_OVER_IN_MAX,
            f"AN {_ms(an512)} / IN {_ms(in512)}",
        ),
        verdict(
            f"SA fwd >= {TARGET_SA_OVER_AN_MIN:g}x AN at 128^2",
            r2,
            lambda v: v >= TARGET_SA_OVER_AN_MIN,
            f"SA {_ms(sa128)} / AN {_ms(an128)}",
        ),
        verdict(
            f"AN fwd at 1024^2 <= {TARGET_AN_GROWTH_MAX:g}x its 512^2 time",
            r3,
            lambda v: v <= TARGET_AN_GROWTH_MAX,
            f"AN 1024^2 {_ms(an1024)} / AN 512^2 {_ms(an512)}",
        ),
    ]


# ----------------------------------------------------------------------------------------------------------------
# Report


def _fmt_ms(row: dict[str, Any] | None, key: str) -> str:
    if row is None:
        return "-"
    if f"{key}_ms" in row:
        return f"{row[f'{key}_ms']:.3f}"
    return str(row.get(f"{key}_status", "-"))


def _fmt_mib(row: dict[str, Any] | None, key: str) -> str:
    if row is None:
        return "-"
    if f"{key}_peak_mib" in row:
        return f"{row[f'{key}_peak_mib']:.1f}"
    status = str(row.get(f"{key}_status", "-"))
    return "OOM" if status.startswith("out of memory") else status


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def _paper(layer: str, size: int) -> str:
    table = PAPER_TABLE5_MS[layer]
    if size not in table:
        return "-"
    value = table[size]
    return "OOM" if value is None else f"{value:.2f}"


def markdown_report(record: dict[str, Any]) -> str:
    """The markdown tables and target checks for one device record."""
    rows = record["results"]
    sizes = record["config"]["sizes"]
    by = {(r["layer"], r["size"]): r for r in rows}
    lines = [
        f"### {record['device']} ({record['device_name']}, torch {record['torch']}, {record['threads']} threads)",
        "",
        f"Batch {record['config']['batch']}, C = {record['config']['channels']}, n = {record['config']['entities']}; "
        f"median of up to {record['config']['repeats']} runs after {record['config']['warmup']} warm-up runs. "
        "Times in ms." + (f" CPU allocator: {record['cpu_allocator']}." if record.get("cpu_allocator") else ""),
        "",
        "| size | IN fwd | AN fwd | SA fwd | IN fwd+bwd | AN fwd+bwd | SA fwd+bwd | AN/IN fwd | AN/IN fwd+bwd "
        "| SA/AN fwd | SA/AN fwd+bwd | paper AN | paper SA |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sizes:
        rin, ran, rsa = by.get(("in", s)), by.get(("an", s)), by.get(("sa", s))

        def ms(r: dict[str, Any] | None, key: str) -> float | None:
            return r.get(f"{key}_ms") if r else None

        cells = [f"{s}^2"] + [_fmt_ms(r, k) for k in ("fwd", "fwdbwd") for r in (rin, ran, rsa)]
        cells += [_ratio(ms(ran, k), ms(rin, k)) for k in ("fwd", "fwdbwd")]
        cells += [_ratio(ms(rsa, k), ms(ran, k)) for k in ("fwd", "fwdbwd")]
        cells += [_paper("an", s), _paper("sa", s)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Peak memory in MiB ({record['memory_method']}); self-attention cases over the "
        f"{record['memory_budget_gib']:.1f} GiB budget ({record['memory_budget_source']}) are not run:",
        "",
        "| size | IN fwd | AN fwd | SA fwd | IN fwd+bwd | AN fwd+bwd | SA fwd+bwd "
        "| SA attention needs (fwd / fwd+bwd) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sizes:
        rin, ran, rsa = by.get(("in", s)), by.get(("an", s)), by.get(("sa", s))
        needs = rsa.get("sa_needs_gib") if rsa else None
        need_text = f"{needs['fwd']:.2f} / {needs['fwdbwd']:.2f} GiB" if needs else "-"
        lines.append(
            f"| {s}^2 | {_fmt_mib(rin, 'fwd')} | {_fmt_mib(ran, 'fwd')} | {_fmt_mib(rsa, 'fwd')} "
            f"| {_fmt_mib(rin, 'fwdbwd')} | {_fmt_mib(ran, 'fwdbwd')} | {_fmt_mib(rsa, 'fwdbwd')} | {need_text} |"
        )
    lines += ["", "Non-OK cases:"]
    notes = [
        f"- {r['layer']} {r['size']}^2: fwd {r.get('fwd_status')}, fwd+bwd {r.get('fwdbwd_status')}"
        for r in rows
        if r.get("fwd_status") != "ok" or r.get("fwdbwd_status") != "ok"
    ]
    lines += notes or ["- none"]
    lines += ["", "Paper Table 5 (RTX 2080, PyTorch 1.1, ms) is printed for reference; compare it with CUDA only.", ""]
    lines += ["Targets (forward times, measured side by side in this run):", ""]
    for t in record["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.2f}x"
        lines.append(f"- {t['status']}: {t['target']}: {value} ({t['detail']})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.layers",
        description="Time and memory of AttentiveNorm2d, SelfAttention2d and InstanceNorm2d (AN paper, Table 5).",
    )
    default_sizes = " ".join(map(str, DEFAULT_SIZES))
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=None, help=f"square map sizes (default {default_sizes})"
    )
    parser.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS), help="layers to measure")
    parser.add_argument("--quick", action="store_true", help=f"small sizes {QUICK_SIZES} and 3 repeats (make demo)")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all", help="all: CPU, and CUDA if present")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per case (median reported)")
    parser.add_argument("--min-repeats", type=int, default=3, help="timed runs kept even when a case is slow")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    parser.add_argument("--case-budget-s", type=float, default=30.0, help="stop repeating a case after this long")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice); 1 gives steadier numbers on a busy machine",
    )
    parser.add_argument(
        "--malloc-cache",
        action="store_true",
        help="CPU: run the cases with glibc malloc tuned to keep freed memory (no fresh page faults per call)",
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
    parser.add_argument(
        "--memory-budget-gib", type=float, default=None, help="fixed memory budget; overrides the above"
    )
    parser.add_argument(
        "--json",
        default=DEFAULT_JSON,
        help="output path; '{device}' is replaced by cpu / cuda (default: %(default)s)",
    )
    parser.add_argument("--child-case", default=None, help=argparse.SUPPRESS)
    return parser


def _json_path(template: str, device: str, several: bool) -> Path:
    if "{device}" in template:
        return Path(template.format(device=device))
    path = Path(template)
    return path.with_name(f"{path.stem}_{device}{path.suffix}") if several else path


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run the benchmark; returns {device: record} (also written as JSON, one file per device)."""
    args = build_parser().parse_args(argv)
    if args.child_case is not None:
        print(json.dumps(_case_from_dict(json.loads(args.child_case))), flush=True)
        return {}
    for name in ("repeats", "min_repeats", "batch", "channels", "entities"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    if args.warmup < 0:
        raise SystemExit("--warmup must be >= 0")
    if not 0 < args.memory_fraction <= 1:
        raise SystemExit("--memory-fraction must be in (0, 1]")
    if args.quick:
        sizes = tuple(args.sizes or QUICK_SIZES)
        args.repeats = min(args.repeats, 3)
        args.warmup = min(args.warmup, 1)
        print(f"Quick layer benchmark (sizes {', '.join(map(str, sizes))}); full sizes: python -m benchmarks.layers")
    else:
        sizes = tuple(args.sizes or DEFAULT_SIZES)
    bad = [s for s in sizes if s < 2]
    if bad:
        raise SystemExit(f"--sizes must be >= 2 (self-attention pools 2x2), got {bad}")
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    records: dict[str, dict[str, Any]] = {}
    for device in devices:
        record = benchmark_device(device, args, sizes)
        path = _json_path(args.json, device, several=len(devices) > 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        record["json_path"] = str(path)
        print()
        print(markdown_report(record))
        print(f"\nwrote {path}")
        records[device] = record
    return records


if __name__ == "__main__":
    main()
