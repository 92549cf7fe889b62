"""The four full-size passes of the fused Attentive Normalization, over cache-sized chunks (CPU, any device).

Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020 (Section 3). See
:mod:`common.layers.attentive_norm_fused` for the algorithm; this backend runs each pass as a loop over chunks of
about ``CHUNK_ELEMENTS`` input elements, so that a chunk's intermediates stay in the CPU caches, the chunks shared
among worker threads (one per torch CPU thread, up to ``MAX_WORKERS``) that run single-threaded operations. A chunk is
``(sample index, pixel slice)``: an int index (one sample, 2-D matrices) or a slice (several whole samples, batched
3-D matrices). Buffers hold ``[1; x_c]`` (the layout logits are ``[b | w] @ [1; x_c]``, one product) and
``[1; v_c; v_c^2]`` (the moments ``[mass; sum S v_c; sum S v_c^2] = [1; v_c; v_c^2] @ S^T``, one product).

Tensors: ``xf``, ``gf`` (input, output gradient) and ``of``, ``dxf`` (output, input gradient) are ``(B, C, H*W)``
views; ``s`` the layout ``(B, n, H*W)``; ``cx`` the centre ``(B|1, C, 1)``; ``wlb`` ``(B|1, n, 1 + C)``; ``wv`` the
value projection ``(C, C)`` or ``None``; small coefficient tensors ``(B|1, ...)`` are broadcast over the batch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "CHUNK_ELEMENTS",
    "coefficients",
    "input_gradient",
    "layout_and_moments",
    "output",
    "output_gradient_moments",
]

# Input elements (C x pixels) per chunk: 2^17 float32 = 512 KiB, so that a chunk's working set (ten times that in the
# backward) stays in a core's caches while the per-chunk Python overhead stays a few percent (measured at 512^2,
# C = 32, one thread: 2^16 and 2^17 best, 2^15 and 2^19 20-30% slower). Tests lower it.
CHUNK_ELEMENTS = 1 << 17


def _chunk_elements(device: torch.device) -> int:
    if device.type != "cpu":  # GPUs (without the Triton kernels, or float64): few, large chunks (launch overhead)
        return max(CHUNK_ELEMENTS, 1 << 22)
    return CHUNK_ELEMENTS


def _chunks(b: int, hw: int, c: int, elements: int = CHUNK_ELEMENTS) -> list[tuple[int | slice, slice]]:
    """Chunks covering ``(B, H*W)``, each about ``elements / C`` pixels (several samples when H*W is small)."""
    pixels = min(hw, max(elements // c, 1))
    per = max(1, min(b, elements // (c * hw))) if pixels == hw else 1
    samples = [b0 if per == 1 else slice(b0, min(b0 + per, b)) for b0 in range(0, b, per)]
    return [(i, slice(p0, min(p0 + pixels, hw))) for i in samples for p0 in range(0, hw, pixels)]


def _rows(t: Tensor, i: int | slice) -> Tensor:
    """The chunk's rows of a ``(B|1, ...)`` tensor."""
    if isinstance(i, int):
        return t[i] if t.shape[0] > 1 else t[0]
    return t[i] if t.shape[0] > 1 else t.expand(i.stop - i.start, *t.shape[1:])


def _like(w: Tensor, x: Tensor) -> Tensor:
    """A shared 2-D matrix, batched to match the chunk tensor ``x``."""
    return w if x.dim() == 2 else w.expand(x.shape[0], *w.shape)


# Threads run whole chunks, one worker per CPU thread that torch may use, each with single-threaded operations: a
# chunk's pipeline then stays in one core's caches, and no operation waits at a barrier for a thread that the OS
# has descheduled (with intra-op threads on a busy machine every one of the ~15 operations per chunk does; measured
# 21x InstanceNorm2d's time instead of 2.9x at 512^2 with two threads and a load of 4.6). The main thread waits;
# ``torch.set_num_threads`` (process-wide) is restored after every pass. Worker results are summed in a fixed order.
MAX_WORKERS = 8
_POOL: dict[str, Any] = {"executor": None, "workers": 0, "pid": None}
_POOL_LOCK = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    with _POOL_LOCK:
        if _POOL["executor"] is None or _POOL["workers"] < workers or _POOL["pid"] != os.getpid():
            _POOL.update(executor=ThreadPoolExecutor(workers, thread_name_prefix="attentive-norm"), workers=workers)
            _POOL["pid"] = os.getpid()
        return _POOL["executor"]


class _Plan:
    """The chunks of a pass, its workers, and scratch tensors of the largest chunk's size (one per worker)."""

    def __init__(self, xf: Tensor, dtype: torch.dtype) -> None:
        b, c, hw = xf.shape
        self.chunks = _chunks(b, hw, c, _chunk_elements(xf.device))
        self.threads = torch.get_num_threads() if xf.device.type == "cpu" else 1
        # At most MAX_WORKERS: each chunk needs the GIL for its ~40 operation calls; more threads go to operations.
        self.workers = max(1, min(self.threads, len(self.chunks), MAX_WORKERS))
        self.b = max(1 if isinstance(i, int) else i.stop - i.start for i, _ in self.chunks)
        self.p = max(ps.stop - ps.start for _, ps in self.chunks)
        self.dtype, self.device = dtype, xf.device

    def new(self, rows: int, ones_row: bool = False) -> Tensor:
        """``(workers, chunk samples, rows, chunk pixels)`` scratch; row 0 set to 1 if ``ones_row``."""
        buf = torch.empty(self.workers, self.b, rows, self.p, dtype=self.dtype, device=self.device)
        if ones_row:
            buf[:, :, 0].fill_(1.0)
        return buf

    def zeros(self, *shape: int) -> Tensor:
        """A per-worker accumulator ``(workers, *shape)``."""
        return torch.zeros(self.workers, *shape, dtype=self.dtype, device=self.device)

    def run(self, body: Callable[[int, int | slice, slice], None]) -> None:
        """``body(worker, sample index, pixel slice)`` for every chunk; chunk k goes to worker k mod workers."""
        if self.workers == 1:
            for i, ps in self.chunks:
                body(0, i, ps)
            return

        # Grad and inference mode are thread-local: under the caller's inference mode (Lightning's validation) the
        # buffers are inference tensors, and a worker thread must run in inference mode too to update them in place.
        inference = torch.is_inference_mode_enabled()

        def task(w: int) -> None:
            torch.set_num_threads(max(1, self.threads // self.workers))
            with torch.inference_mode(inference), torch.no_grad():
                for i, ps in self.chunks[w :: self.workers]:
                    body(w, i, ps)

        try:
            futures = [_executor(self.workers).submit(task, w) for w in range(self.workers)]
            for future in futures:
                future.result()
        finally:
            torch.set_num_threads(self.threads)


def _view(buf: Tensor, i: int | slice, ps: slice) -> Tensor:
    width = ps.stop - ps.start
    return buf[0, :, :width] if isinstance(i, int) else buf[: i.stop - i.start, :, :width]


def _mm(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    return torch.mm(a, b, out=out) if a.dim() == 2 else torch.bmm(a, b, out=out)


def _mm_add_(acc: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``acc += a @ b`` (2-D in place; batched through a temporary, since in-place ``baddbmm_`` copies anyway)."""
    return acc.addmm_(a, b) if acc.dim() == 2 else acc.add_(torch.bmm(a, b))


def _softmax_(t: Tensor) -> Tensor:
    """In-place softmax over the entities (dim -2)."""
    t.sub_(t.amax(dim=-2, keepdim=True)).exp_()
    return t.div_(t.sum(dim=-2, keepdim=True))


def layout_and_moments(
    xf: Tensor, cx: Tensor, wlb: Tensor, wv: Tensor | None, s: Tensor, need_moments: bool
) -> Tensor | None:
    """Forward pass 1: ``s = softmax([b | w] @ [1; x_c])`` (in place) and, if ``need_moments``, the moments
    ``[1; v_c; v_c^2] @ s^T`` summed over the pixels, ``(B, 1 + 2C, n)``: region mass, first and second moments."""
    b, c, _ = xf.shape
    plan = _Plan(xf, s.dtype)
    moments = plan.zeros(b, 1 + 2 * c, s.shape[1]) if need_moments else None
    ubuf = plan.new(1 + 2 * c, ones_row=True) if need_moments else None
    xbuf = plan.new(1 + c, ones_row=True)

    def body(w: int, i: int | slice, ps: slice) -> None:
        u = _view(ubuf[w], i, ps) if ubuf is not None else None
        xo = u[..., : 1 + c, :] if u is not None and wv is None else _view(xbuf[w], i, ps)  # [1; x_c]
        xc = torch.sub(xf[i, :, ps], _rows(cx, i), out=xo[..., 1:, :])
        sc = s[i, :, ps]
        _softmax_(_mm(_rows(wlb, i), xo, out=sc))
        if u is not None:
            vc = xc if wv is None else _mm(_like(wv, xc), xc, out=u[..., 1 : 1 + c, :])
            torch.mul(vc, vc, out=u[..., 1 + c :, :])
            _mm_add_(moments[w][i], u, sc.transpose(-1, -2))

    plan.run(body)
    return moments.sum(0) if moments is not None else None


def coefficients(layer, p: dict[str, Tensor], moments: Tensor | None, center: Tensor, dtype: torch.dtype):
    """``[gain; offset]`` ``(B|1, 2C, n)``, the centred mean and the variance (``AttentiveNorm2d._coefficients``)."""
    gain, offset, mean, var = layer._coefficients(p, moments, center, dtype)
    return torch.cat([gain, offset], dim=1).contiguous(), mean, var


def output(xf: Tensor, s: Tensor, cx: Tensor, wv: Tensor | None, coeffs: Tensor, of: Tensor) -> None:
    """Forward pass 2: ``of = x + v_c * (gain @ S) + offset @ S`` with ``coeffs = [gain; offset]`` (B|1, 2C, n)."""
    c = xf.shape[1]
    plan = _Plan(xf, s.dtype)
    xbuf, gbuf = plan.new(c), plan.new(2 * c)
    vbuf = plan.new(c) if wv is not None else None

    def body(w: int, i: int | slice, ps: slice) -> None:
        xs = xf[i, :, ps]
        xc = torch.sub(xs, _rows(cx, i), out=_view(xbuf[w], i, ps))
        vc = xc if wv is None else _mm(_like(wv, xc), xc, out=_view(vbuf[w], i, ps))
        go = _mm(_rows(coeffs, i), s[i, :, ps], out=_view(gbuf[w], i, ps))
        torch.add(xs, go[..., c:, :].addcmul_(vc, go[..., :c, :]), out=of[i, :, ps])

    plan.run(body)


def output_gradient_moments(gf: Tensor, xf: Tensor, s: Tensor, cx: Tensor, wv: Tensor | None) -> Tensor:
    """Backward pass 1: ``[d gain; d offset] = [sum_p (g v_c) S^T; sum_p g S^T]``, ``(B, 2C, n)``."""
    b, c, _ = xf.shape
    dt = s.dtype
    plan = _Plan(xf, dt)
    dgo = plan.zeros(b, 2 * c, s.shape[1])
    xbuf, gvbuf = plan.new(c), plan.new(c)
    vbuf = plan.new(c) if wv is not None else None

    def body(w: int, i: int | slice, ps: slice) -> None:
        gs = gf[i, :, ps].to(dt)
        xc = torch.sub(xf[i, :, ps], _rows(cx, i), out=_view(xbuf[w], i, ps))
        vc = xc if wv is None else _mm(_like(wv, xc), xc, out=_view(vbuf[w], i, ps))
        st = s[i, :, ps].transpose(-1, -2)
        _mm_add_(dgo[w][i][..., :c, :], torch.mul(gs, vc, out=_view(gvbuf[w], i, ps)), st)
        _mm_add_(dgo[w][i][..., c:, :], gs, st)

    plan.run(body)
    return dgo.sum(0)


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
    """Backward pass 2: the input gradient into ``dxf`` and the small weight gradients.

    Per chunk: ``dS = pu @ [1; v_c; v_c^2; g v_c; g]`` (``pu = [dm; dT; dQ; gain; offset]^T``, ``(B, n, 1 + 4C)``),
    the softmax backward ``d logits``, ``d v_c = g * (h_1 @ S) + h_2 @ S + v_c * (h_3 @ S)`` with
    ``h3 = [h_1; h_2; h_3] = [gain (+1 when v = x); dT; 2 dQ]`` (``(B, 3C, n)``), and ``dx = d v_c + w^T d logits``
    (``v = x``) or ``g + W_v^T d v_c + w^T d logits``. The products are taken block by block (no ``(4C, P)``
    buffer: a smaller working set). Returns ``d [b | w]`` for ``[b | w] @ [1; x_c]`` (``(B, n, 1 + C)``) and, with a
    value projection, ``d W_v`` and ``sum_p d v_c`` (``(B, C)``, the bias gradient per sample).
    """
    b, c, _ = xf.shape
    n, dt = s.shape[1], s.dtype
    plan = _Plan(xf, dt)
    dwlb = plan.zeros(b, n, 1 + c)
    dwv = plan.zeros(c, c) if wv is not None else None
    dvsum = plan.zeros(b, c) if wv is not None else None
    pm, pg, po = (t.contiguous() for t in pu.split([1 + 2 * c, c, c], dim=2))  # [dm; dT; dQ]^T, gain^T, offset^T
    hg, ht, hq = (t.contiguous() for t in h3.split(c, dim=1))
    ubuf, gvbuf, tbuf, sbuf = plan.new(1 + 2 * c, ones_row=True), plan.new(c), plan.new(c), plan.new(n)
    xbuf = plan.new(1 + c, ones_row=True) if wv is not None else None
    dvbuf = plan.new(c) if wv is not None or dxf.dtype != dt else None

    def body(w: int, i: int | slice, ps: slice) -> None:
        gs = gf[i, :, ps].to(dt)
        sc = s[i, :, ps]
        u = _view(ubuf[w], i, ps)  # [1; v_c; v_c^2]
        xo = u[..., : 1 + c, :] if wv is None else _view(xbuf[w], i, ps)  # [1; x_c]
        xc = torch.sub(xf[i, :, ps], _rows(cx, i), out=xo[..., 1:, :])
        vc = xc if wv is None else _mm(_like(wv, xc), xc, out=u[..., 1 : 1 + c, :])
        torch.mul(vc, vc, out=u[..., 1 + c :, :])
        ds = _mm(_rows(pm, i), u, out=_view(sbuf[w], i, ps))
        _mm_add_(ds, _rows(pg, i), torch.mul(gs, vc, out=_view(gvbuf[w], i, ps)))
        _mm_add_(ds, _rows(po, i), gs)
        dl = torch._softmax_backward_data(ds, sc, sc.dim() - 2, dt)
        dv = _mm(_rows(ht, i), sc, out=dxf[i, :, ps] if dvbuf is None else _view(dvbuf[w], i, ps))
        dv.addcmul_(gs, _mm(_rows(hg, i), sc, out=_view(tbuf[w], i, ps)))
        dv.addcmul_(vc, _mm(_rows(hq, i), sc, out=_view(tbuf[w], i, ps)))
        if wv is None:  # dx = d v_c (+ g already in h_1) + w^T d logits
            _mm_add_(dv, _rows(wl_t, i), dl)
            if dvbuf is not None:
                dxf[i, :, ps].copy_(dv)
        else:  # dx = g + W_v^T d v_c + w^T d logits
            dwv[w].add_((dv @ xc.transpose(-1, -2)).view(-1, c, c).sum(0))
            dvsum[w][i] += dv.sum(-1)
            dxc = _mm(_like(wv.t(), dv), dv, out=_view(tbuf[w], i, ps)).add_(gs)
            dxf[i, :, ps].copy_(_mm_add_(dxc, _rows(wl_t, i), dl))
        _mm_add_(dwlb[w][i], dl, xo.transpose(-1, -2))

    plan.run(body)
    if dwv is None:
        return dwlb.sum(0), None, None
    dvsum = dvsum.sum(0)
    dwv = dwv.sum(0) + dvsum.t() @ cx.squeeze(2).expand(b, -1)  # d W_v = sum_p d v_c (x_c + cx)^T
    return dwlb.sum(0), dwv, dvsum
