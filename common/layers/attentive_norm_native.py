"""The four full-size passes of the fused Attentive Normalization as compiled C loops (CPU, float32, ``v = x``).

Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020 (Section 3). Same functions and
arguments as :mod:`common.layers.attentive_norm_chunked` (the algorithm is described in
:mod:`common.layers.attentive_norm_fused`); here each pass is one C function per ``(sample, pixel range)``
(``attentive_norm_native.c``, shipped with the package) that works through blocks of 128 pixels in local arrays,
so nothing full-size is written except the layout, the output and the input gradient, and no Python runs per
block. The torch version spends its time in many small matrix products and in Python between them (measured at
512^2, C 32, n 16: ~40% of its forward).

The C file is compiled on first use with the system's C compiler (``$CC``, else ``cc``: ``-O3 -march=native
-ffast-math``) into a cache folder (``$AN_NATIVE_CACHE``, else ``~/.cache/attentive_norm``), named by a hash of the
source and flags, written atomically (several processes may compile at once). Where the compiler is missing or
fails, where ``AN_NATIVE=0`` is set, or for inputs it does not cover (not CPU float32, a value projection, tensors
that are not contiguous), every pass falls back to :mod:`common.layers.attentive_norm_chunked`. Passes run on
``torch.get_num_threads()`` threads (at most ``MAX_WORKERS``): the C calls release the GIL.

Numerics: float32 arithmetic; sums over pixels are kept per vector lane (the machine's vector width: 16 floats
with AVX-512, 8 with AVX, 4 otherwise; a 16-float type on AVX2 spilled registers and ran the passes ~8x slower)
over one call's pixel range and then added to double accumulators. Tests compare every pass (every width) and the
layer's values and gradients with the chunked backend and the float64 reference.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

from common.layers import attentive_norm_chunked as chunked

__all__ = [
    "ENABLED",
    "available",
    "build_error",
    "build_info",
    "coefficients",
    "input_gradient",
    "layout_and_moments",
    "output",
    "output_gradient_moments",
    "supported",
]

#: Switch for tests and benchmarks (``False``: every pass runs the chunked torch backend). ``AN_NATIVE=0`` sets it.
ENABLED = os.environ.get("AN_NATIVE", "1") != "0"
MAX_WORKERS = 8
_SOURCE = Path(__file__).with_suffix(".c")
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fPIC", "-shared"]
_STATE: dict[str, object] = {"lib": None, "tried": False, "error": None}
_LOCK = threading.Lock()
_P, _I, _L = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
_SIGNATURES = {
    "an_layout_moments": [_P] * 5 + [_I, _I, _L, _L, _L, _L, _L],
    "an_output": [_P] * 5 + [_I, _I, _L, _L, _L, _L, _L],
    "an_output_gradient_moments": [_P] * 5 + [_I, _I, _L, _L, _L, _L, _L],
    "an_input_gradient": [_P] * 9 + [_I, _I, _L, _L, _L, _L, _L],
    "an_build_info": [_P],
}


def _build() -> ctypes.CDLL:
    compiler = os.environ.get("CC", "cc")
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join([compiler, *_FLAGS, platform.machine()]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("AN_NATIVE_CACHE") or Path.home() / ".cache" / "attentive_norm")
    target = cache / f"attentive_norm_{key}.so"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        try:
            cmd = [compiler, *_FLAGS, str(_SOURCE), "-o", tmp, "-lm"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-2000:]}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(target))
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = None
    return lib


def _library() -> ctypes.CDLL | None:
    if not _STATE["tried"]:
        with _LOCK:
            if not _STATE["tried"]:
                try:
                    _STATE["lib"] = _build()
                except (OSError, RuntimeError, subprocess.SubprocessError) as error:
                    _STATE["error"] = f"{type(error).__name__}: {error}"
                _STATE["tried"] = True
    return _STATE["lib"]  # type: ignore[return-value]


def available() -> bool:
    """Whether the compiled passes are enabled and could be built (builds them on the first call)."""
    return ENABLED and _library() is not None


def build_error() -> str | None:
    """Why the C file could not be compiled or loaded (``None`` if it was, or was not tried yet)."""
    return _STATE["error"]  # type: ignore[return-value]


def build_info() -> dict[str, object] | None:
    """How the loaded library was built: floats per vector, pixels per block, register tile, compiler flags
    (``None`` if the compiled passes are disabled or could not be built)."""
    if not available():
        return None
    info = (ctypes.c_int * 4)()
    _library().an_build_info(info)
    return {"vector_width": info[0], "block": info[1], "tile": f"{info[2]}x{info[3]}", "flags": " ".join(_FLAGS)}


def supported(*tensors: Tensor | None, wv: Tensor | None = None) -> bool:
    """Whether the compiled passes cover these full-size tensors: CPU float32, contiguous, no value projection."""
    if wv is not None or not available():
        return False
    return all(
        t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors if t is not None
    )


def _small(t: Tensor, b: int) -> Tensor:
    """A ``(B|1, ...)`` coefficient tensor as contiguous float32 ``(B, ...)``."""
    return t.to(torch.float32).expand(b, *t.shape[1:]).contiguous()


def _run(b: int, hw: int, call) -> None:
    """``call(worker, i0, i1, p0, p1)`` (samples ``[i0, i1)``, pixels ``[p0, p1)`` of each) over the whole batch, on up
    to ``MAX_WORKERS`` threads: large maps are split into pixel ranges, small ones grouped into runs of samples
    (one C call each: a call from Python costs more than the work for a few hundred pixels)."""
    workers = max(1, min(torch.get_num_threads(), MAX_WORKERS))
    pieces = max(1, min(4 * workers, hw // 4096)) if workers > 1 else 1
    if pieces > 1:
        step = -(-hw // pieces)
        step = -(-step // 64) * 64
        items = [(i, i + 1, p0, min(p0 + step, hw)) for i in range(b) for p0 in range(0, hw, step)]
    else:
        groups = min(b, 4 * workers) if workers > 1 else 1
        size = -(-b // groups)
        items = [(i, min(i + size, b), 0, hw) for i in range(0, b, size)]
    workers = min(workers, len(items))
    if workers == 1:
        for item in items:
            call(0, *item)
        return

    def task(w: int) -> None:
        for item in items[w::workers]:
            call(w, *item)

    futures = [chunked._executor(workers).submit(task, w) for w in range(workers)]
    for future in futures:
        future.result()


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


def _accumulators(*shape: int) -> tuple[Tensor, list[int]]:
    """Zeroed float64 ``(workers, B, ...)`` partial sums, one slab per worker thread, and each slab's address."""
    acc = torch.zeros(min(MAX_WORKERS, torch.get_num_threads()), *shape, dtype=torch.float64)
    return acc, [_ptr(a) for a in acc]


def layout_and_moments(
    xf: Tensor, cx: Tensor, wlb: Tensor, wv: Tensor | None, s: Tensor, need_moments: bool
) -> Tensor | None:
    """Forward pass 1 (:func:`common.layers.attentive_norm_chunked.layout_and_moments`)."""
    if not supported(xf, s, wv=wv):
        return chunked.layout_and_moments(xf, cx, wlb, wv, s, need_moments)
    lib, (b, c, hw), n = _library(), xf.shape, s.shape[1]
    cxs, wls = _small(cx, b), _small(wlb, b)
    acc, slabs = _accumulators(b, 1 + 2 * c, n)
    ptrs = [_ptr(t) for t in (xf, cxs, wls, s)]

    def call(w: int, i0: int, i1: int, p0: int, p1: int) -> None:
        mom = slabs[w] if need_moments else None
        lib.an_layout_moments(*ptrs, mom, c, n, hw, i0, i1, p0, p1)

    _run(b, hw, call)
    return acc.sum(0).to(torch.float32) if need_moments else None


coefficients = chunked.coefficients


def output(xf: Tensor, s: Tensor, cx: Tensor, wv: Tensor | None, coeffs: Tensor, of: Tensor) -> None:
    """Forward pass 2 (:func:`common.layers.attentive_norm_chunked.output`)."""
    if not supported(xf, s, of, wv=wv):
        return chunked.output(xf, s, cx, wv, coeffs, of)
    lib, (b, c, hw), n = _library(), xf.shape, s.shape[1]
    cxs, cos = _small(cx, b), _small(coeffs, b)
    ptrs = [_ptr(t) for t in (xf, cxs, s, cos, of)]

    def call(w: int, i0: int, i1: int, p0: int, p1: int) -> None:
        lib.an_output(*ptrs, c, n, hw, i0, i1, p0, p1)

    _run(b, hw, call)
    return None


def output_gradient_moments(gf: Tensor, xf: Tensor, s: Tensor, cx: Tensor, wv: Tensor | None) -> Tensor:
    """Backward pass 1 (:func:`common.layers.attentive_norm_chunked.output_gradient_moments`)."""
    if not supported(gf, xf, s, wv=wv):
        return chunked.output_gradient_moments(gf, xf, s, cx, wv)
    lib, (b, c, hw), n = _library(), xf.shape, s.shape[1]
    cxs = _small(cx, b)
    acc, slabs = _accumulators(b, 2 * c, n)
    ptrs = [_ptr(t) for t in (gf, xf, cxs, s)]

    def call(w: int, i0: int, i1: int, p0: int, p1: int) -> None:
        lib.an_output_gradient_moments(*ptrs, slabs[w], c, n, hw, i0, i1, p0, p1)

    _run(b, hw, call)
    return acc.sum(0).to(torch.float32)


def input_gradient(
    gf: Tensor,
    xf: Tensor,
    s: Tensor,
    cx: Tensor,
    wv: Tensor | None,
    pu: Tensor,
    h3: Tensor,
    wl_t: Tensor,
    dxf: Tensor,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Backward pass 2 (:func:`common.layers.attentive_norm_chunked.input_gradient`)."""
    if not supported(gf, xf, s, dxf, wv=wv):
        return chunked.input_gradient(gf, xf, s, cx, wv, pu, h3, wl_t, dxf)
    lib, (b, c, hw), n = _library(), xf.shape, s.shape[1]
    cxs, wlt, pus, h3s = _small(cx, b), _small(wl_t, b), _small(pu, b), _small(h3, b)
    acc, slabs = _accumulators(b, n, 1 + c)
    ptrs = [_ptr(t) for t in (gf, xf, cxs, s, pus, h3s, wlt, dxf)]

    def call(w: int, i0: int, i1: int, p0: int, p1: int) -> None:
        lib.an_input_gradient(*ptrs, slabs[w], c, n, hw, i0, i1, p0, p1)

    _run(b, hw, call)
    return acc.sum(0).to(torch.float32), None, None
