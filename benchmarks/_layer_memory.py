"""Peak-memory measurement for ``benchmarks.layers``: one layer, one size, forward and forward + backward.

CPU: the peak resident set (``VmHWM`` in ``/proc/self/status``, reset through ``/proc/self/clear_refs``) above the
resident set before the first measured pass; by default in a fresh subprocess per case, so that no memory freed by
an earlier case is reused. CUDA: ``torch.cuda.max_memory_allocated`` above the allocation before each pass.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks._layer_cases import build_layer, case_function

GIB = 1024**3
MIB = 1024**2

# glibc malloc settings for --malloc-cache: never mmap/munmap large blocks, never trim the heap. Freed tensors are
# then reused like a caching allocator (what PyTorch's CUDA allocator does) instead of page-faulting fresh memory.
MALLOC_CACHE_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(4 * GIB),
    "MALLOC_TRIM_THRESHOLD_": str(64 * GIB),
    "MALLOC_TOP_PAD_": str(GIB),
}


def sa_required_bytes(batch: int, size: int, backward: bool) -> int:
    """Bytes of the fp32 (B, HW, HW/4) attention matrices self-attention holds at its peak.

    Forward: the logits and their softmax (2 matrices). Forward + backward: 6 matrices (the saved softmax, the
    logits, the gradients of the softmax output and of the logits, and temporaries of the softmax backward; the
    measured CPU peak at 128^2 is 4.1 matrices with glibc's default settings and 6.0 with --malloc-cache).
    """
    positions = size * size
    pooled = (size // 2) * (size // 2)
    return (6 if backward else 2) * 4 * batch * positions * pooled


def available_memory_bytes(device: str) -> int:
    """Memory a case may use: the kernel's MemAvailable on CPU, the free device memory on CUDA."""
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    match = re.search(r"^MemAvailable:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text(), flags=re.MULTILINE)
    if match is None:
        raise RuntimeError("cannot read MemAvailable from /proc/meminfo; pass --memory-budget-gib")
    return int(match.group(1)) * 1024


def out_of_memory_text(required: int) -> str:
    """The table entry for a case that needs ``required`` bytes more than the device has."""
    return f"out of memory (needs {required / GIB:.1f} GiB)"


def _proc_status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), flags=re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(match.group(1))


class _CpuPeak:
    """Peak resident memory during the ``with`` block, above ``start`` (default: the resident set at entry)."""

    def __init__(self, start: int | None = None) -> None:
        self.start = start

    def __enter__(self) -> _CpuPeak:
        try:  # Linux clear_refs value 5 resets the peak resident set (VmHWM) to the current one
            Path("/proc/self/clear_refs").write_text("5")
            self.exact = True
        except OSError:
            self.exact = False
        if self.start is None:
            self.start = _proc_status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.exact:
            peak = _proc_status_kib("VmHWM") * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak = max(peak - self.start, 0)


def run_memory_case(case: dict[str, Any]) -> dict[str, float]:
    """Peak memory of one forward (eval, no grad) and, if ``case["backward"]``, one forward + backward (train).

    ``case``: layer, size, device, backward, threads, batch, channels, entities. Returns ``fwd_peak_mib`` and
    ``fwdbwd_peak_mib`` (MiB above what the input, the layer and the warm-up already hold).
    """
    if case.get("threads"):
        torch.set_num_threads(case["threads"])
    dev = torch.device(case["device"])
    batch, channels = case["batch"], case["channels"]
    torch.manual_seed(0)
    layer = build_layer(case["layer"], channels, case["entities"]).to(dev)
    # Wake up the libraries (thread pools, autograd engine, kernel caches) on a small input, with the same calls.
    small = torch.randn(batch, channels, 8, 8, device=dev)
    for mode in ("fwd", "fwdbwd"):
        case_function(layer, mode, small, small.clone().requires_grad_(True), torch.randn_like(small))()
    layer.zero_grad(set_to_none=True)
    x = torch.randn(batch, channels, case["size"], case["size"], device=dev)
    x_grad = x.clone().requires_grad_(True)
    grad_out = torch.randn_like(x)
    result: dict[str, float] = {}
    cpu_start = _proc_status_kib("VmRSS") * 1024 if dev.type == "cpu" else 0
    for mode in ("fwd", "fwdbwd") if case["backward"] else ("fwd",):
        fn = case_function(layer, mode, x, x_grad, grad_out)
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
        result[f"{mode}_peak_mib"] = peak / MIB
    return result


def measure_memory(case: dict[str, Any], isolated: bool, malloc_cache: bool = False) -> dict[str, Any]:
    """:func:`run_memory_case` in a fresh interpreter (``isolated``) or here; ``{"error": ...}`` on failure."""
    if not isolated:
        return run_memory_case(case)
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    if malloc_cache:
        env.update(MALLOC_CACHE_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
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
