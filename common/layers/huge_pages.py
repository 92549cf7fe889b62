"""Full-size CPU buffers backed by transparent huge pages, for the fused Attentive Normalization's passes.

Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020 (Section 3.4, Table 5: AN is
meant to cost about as much as a normalisation layer). On the CPU the fused layer writes three fresh full-size
tensors per training step (the layout, the output, the input gradient). A large fresh allocation is a new anonymous
mapping, and the first write to each 4 KiB page of it is a page fault: measured on a 2-core cloud VM (Linux, THP
mode ``madvise``) a fresh 32 MiB ``x + 1`` took 9.9-18 ms against 1.2 ms into a reused buffer, 8196 faults per call;
with ``madvise(MADV_HUGEPAGE)`` on the fresh buffer before its first write, 4.8 ms and 528 faults. This module does
that for buffers of at least ``MIN_BYTES``: the 2 MiB-aligned interior of the tensor's memory is advised (its ends
keep 4 KiB pages). Nothing else changes: same values, same allocator; where the kernel says no (THP ``never``, not
Linux, ``AN_HUGE_PAGES=0``) the buffer is a plain ``torch.empty``.

PyTorch's own switch for every CPU allocation (``THP_MEM_ALLOC_ENABLE=1``) must be set before ``torch`` is imported;
this one works per buffer, at any time.
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch
from torch import Tensor

__all__ = ["ENABLED", "MIN_BYTES", "advise_huge_pages", "empty_like_huge"]

#: Switch for tests and benchmarks; ``AN_HUGE_PAGES=0`` turns the advice off.
ENABLED = os.environ.get("AN_HUGE_PAGES", "1") != "0"
#: Buffers below this size are left alone (a 2 MiB huge page needs at least one aligned 2 MiB run inside).
MIN_BYTES = 4 << 20
_HUGE = 1 << 21
_MADV_HUGEPAGE = 14
_STATE: dict[str, object] = {"madvise": None, "tried": False}


def _madvise():
    if not _STATE["tried"]:
        _STATE["tried"] = True
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(None, use_errno=True).madvise
                fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
                _STATE["madvise"] = fn
            except (OSError, AttributeError):
                pass
    return _STATE["madvise"]


def advise_huge_pages(t: Tensor) -> bool:
    """Advise the kernel to back ``t``'s memory with transparent huge pages (its 2 MiB-aligned interior). Call it
    before the first write. Returns whether advice was given (CPU tensor of at least ``MIN_BYTES``, Linux, enabled,
    and ``madvise`` accepted it)."""
    if not ENABLED or t.device.type != "cpu":
        return False
    nbytes = t.untyped_storage().nbytes()
    fn = _madvise()
    if fn is None or nbytes < MIN_BYTES:
        return False
    start = t.untyped_storage().data_ptr()
    first, last = -(-start // _HUGE) * _HUGE, (start + nbytes) // _HUGE * _HUGE
    return last > first and fn(first, last - first, _MADV_HUGEPAGE) == 0


def empty_like_huge(x: Tensor, memory_format: torch.memory_format = torch.contiguous_format, **kwargs) -> Tensor:
    """``torch.empty_like(x, ...)``, advised for huge pages where :func:`advise_huge_pages` applies."""
    out = torch.empty_like(x, memory_format=memory_format, **kwargs)
    advise_huge_pages(out)
    return out
