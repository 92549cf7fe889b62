"""Triton kernels for the four full-size passes of the fused Attentive Normalization (CUDA).

Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020 (Section 3). The same four passes
as :mod:`common.layers.attentive_norm_chunked`, with the same arguments and results, each one kernel: a program
handles ``BLOCK`` pixels of one sample with all ``C`` channels and ``n`` entities in registers (padded to powers of
two, at least 16, for ``tl.dot``), so a pass reads its full-size inputs once and writes its outputs once:

* ``layout_and_moments``: logits ``w x_c + b``, softmax over the entities, the layout tile stored, and per-block
  moments ``[mass; S v_c; S v_c^2]`` (summed over the blocks afterwards: deterministic, no atomics);
* ``output``: ``x + v_c * (gain @ S) + offset @ S``;
* ``output_gradient_moments``: per-block ``[(g v_c) S^T; g S^T]``;
* ``input_gradient``: ``dS``, the softmax backward, ``d v_c``, the input gradient and per-block ``d [b | w]``.

All arithmetic is float32 (``tl.dot`` with ``input_precision="ieee"``, no TF32); inputs may be float32, bfloat16 or
float16, the layout is float32. With a value projection ``v_c = W_v x_c`` is one cuBLAS product before the pass
(and ``W_v^T d v_c``, ``d W_v`` after it). The module imports ``triton``; ``AttentiveNorm2d`` only imports it on
CUDA. ``TRITON_INTERPRET=1`` runs the kernels on CPU tensors (Triton's interpreter): that is how the tests check
them without a GPU.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["coefficients", "input_gradient", "layout_and_moments", "output", "output_gradient_moments", "supported"]

MAX_CHANNELS = 512  # C beyond this (padded) does not fit a program's registers: the chunked backend is used
MAX_ENTITIES = 64


def _pad(v: int) -> int:
    return max(16, triton.next_power_of_2(v))


def supported(x: Tensor, num_entities: int) -> bool:
    """Whether the kernels handle ``x``: CUDA (or the interpreter), float32/bf16/fp16, C <= 512, n <= 64."""
    on_device = x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"
    small = _pad(x.shape[1]) <= MAX_CHANNELS and _pad(num_entities) <= MAX_ENTITIES and x.shape[0] < 65536
    return on_device and small and x.dtype in (torch.float32, torch.bfloat16, torch.float16)


def _dims(xf: Tensor, n: int) -> dict[str, int]:
    """Tile sizes: BLOCK pixels per tile (a (C, BLOCK) tile of about 4096 values); the reducing kernels loop over
    TILES tiles per program (up to 1024 pixels), so their per-program partial sums stay a few percent of the input."""
    b, c, hw = xf.shape
    c_pad = _pad(c)
    block = max(16, min(128, 4096 // c_pad))
    tiles = min(triton.cdiv(hw, block), max(1, 1024 // block))
    return {"b": b, "c": c, "hw": hw, "n": n, "C_PAD": c_pad, "N_PAD": _pad(n), "BLOCK": block, "TILES": tiles,
            "NPROG": triton.cdiv(hw, block * tiles)}  # fmt: skip


def _bstride(t: Tensor) -> int:
    """Batch stride of a ``(B|1, ...)`` tensor: 0 for a shared row."""
    return t.stride(0) if t.shape[0] > 1 else 0


def _value(xf: Tensor, cx: Tensor, wv: Tensor) -> Tensor:
    """Full-size ``v_c = W_v (x - cx)``, float32 ``(B, C, H*W)``."""
    return torch.matmul(wv, xf.to(wv.dtype) - cx)


# ----------------------------------------------------------------------------------------------------------------
# Kernels. Program (blk, b): pixels p = blk * BLOCK + [0, BLOCK) of sample b; c, i index channels and entities.


# fmt: off
@triton.jit
def _layout_moments_kernel(
    x_ptr, v_ptr, s_ptr, part_ptr, wlb_ptr, cx_ptr, HW, C, N, NPROG, TILES, sxb, sxc, sxp, svb, svc, svp, wlb_sb,
    cx_sb, C_PAD: tl.constexpr, N_PAD: tl.constexpr, BLOCK: tl.constexpr, MOMENTS: tl.constexpr, VALUE: tl.constexpr,
):
    prog = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    c = tl.arange(0, C_PAD)
    i = tl.arange(0, N_PAD)
    mc, mi = c < C, i < N
    mci = mc[:, None] & mi[None, :]
    cx = tl.load(cx_ptr + b * cx_sb + c, mask=mc, other=0.0)
    row = wlb_ptr + b * wlb_sb + i * (C + 1)
    bias = tl.load(row, mask=mi, other=0.0)
    w = tl.load(row[:, None] + 1 + c[None, :], mask=mi[:, None] & mc[None, :], other=0.0)
    mass = tl.zeros([N_PAD], dtype=tl.float32)
    moment1 = tl.zeros([C_PAD, N_PAD], dtype=tl.float32)
    moment2 = tl.zeros([C_PAD, N_PAD], dtype=tl.float32)
    for t in range(0, TILES):
        p = (prog * TILES + t) * BLOCK + tl.arange(0, BLOCK)
        mp = p < HW
        mcp, mip = mc[:, None] & mp[None, :], mi[:, None] & mp[None, :]
        x = tl.load(x_ptr + b * sxb + c[:, None] * sxc + p[None, :] * sxp, mask=mcp, other=0.0).to(tl.float32)
        xc = tl.where(mcp, x - cx[:, None], 0.0)
        logits = tl.dot(w, xc, input_precision="ieee") + bias[:, None]
        logits = tl.where(mi[:, None], logits, float("-inf"))
        e = tl.exp(logits - tl.max(logits, axis=0)[None, :])
        s = tl.where(mip, e / tl.sum(e, axis=0)[None, :], 0.0)
        tl.store(s_ptr + b * N * HW + i[:, None] * HW + p[None, :], s, mask=mip)
        if MOMENTS:
            if VALUE:
                vc = tl.load(v_ptr + b * svb + c[:, None] * svc + p[None, :] * svp, mask=mcp, other=0.0)
            else:
                vc = xc
            st = tl.trans(s)
            mass += tl.sum(s, axis=1)
            moment1 += tl.dot(vc, st, input_precision="ieee")
            moment2 += tl.dot(vc * vc, st, input_precision="ieee")
    if MOMENTS:
        base = part_ptr + (b * NPROG + prog) * (1 + 2 * C) * N
        tl.store(base + i, mass, mask=mi)
        tl.store(base + N + c[:, None] * N + i[None, :], moment1, mask=mci)
        tl.store(base + (1 + C) * N + c[:, None] * N + i[None, :], moment2, mask=mci)
# fmt: on


# fmt: off
@triton.jit
def _output_kernel(
    x_ptr, v_ptr, s_ptr, out_ptr, coef_ptr, cx_ptr, HW, C, N, sxb, sxc, sxp, svb, svc, svp, sob, soc, sop, coef_sb,
    cx_sb, C_PAD: tl.constexpr, N_PAD: tl.constexpr, BLOCK: tl.constexpr, VALUE: tl.constexpr,
):
    blk = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    p = blk * BLOCK + tl.arange(0, BLOCK)
    c = tl.arange(0, C_PAD)
    i = tl.arange(0, N_PAD)
    mp, mc, mi = p < HW, c < C, i < N
    mcp, mip, mci = mc[:, None] & mp[None, :], mi[:, None] & mp[None, :], mc[:, None] & mi[None, :]
    x = tl.load(x_ptr + b * sxb + c[:, None] * sxc + p[None, :] * sxp, mask=mcp, other=0.0).to(tl.float32)
    if VALUE:
        vc = tl.load(v_ptr + b * svb + c[:, None] * svc + p[None, :] * svp, mask=mcp, other=0.0)
    else:
        cx = tl.load(cx_ptr + b * cx_sb + c, mask=mc, other=0.0)
        vc = tl.where(mcp, x - cx[:, None], 0.0)
    s = tl.load(s_ptr + b * N * HW + i[:, None] * HW + p[None, :], mask=mip, other=0.0)
    coef = coef_ptr + b * coef_sb + c[:, None] * N + i[None, :]
    gain = tl.load(coef, mask=mci, other=0.0)
    offset = tl.load(coef + C * N, mask=mci, other=0.0)
    out = x + vc * tl.dot(gain, s, input_precision="ieee") + tl.dot(offset, s, input_precision="ieee")
    tl.store(out_ptr + b * sob + c[:, None] * soc + p[None, :] * sop, out.to(out_ptr.dtype.element_ty), mask=mcp)
# fmt: on


# fmt: off
@triton.jit
def _output_grad_kernel(
    g_ptr, x_ptr, v_ptr, s_ptr, part_ptr, cx_ptr, HW, C, N, NPROG, TILES, sgb, sgc, sgp, sxb, sxc, sxp, svb, svc, svp,
    cx_sb, C_PAD: tl.constexpr, N_PAD: tl.constexpr, BLOCK: tl.constexpr, VALUE: tl.constexpr,
):
    prog = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    c = tl.arange(0, C_PAD)
    i = tl.arange(0, N_PAD)
    mc, mi = c < C, i < N
    mci = mc[:, None] & mi[None, :]
    cx = tl.load(cx_ptr + b * cx_sb + c, mask=mc, other=0.0)
    dgain = tl.zeros([C_PAD, N_PAD], dtype=tl.float32)
    doffset = tl.zeros([C_PAD, N_PAD], dtype=tl.float32)
    for t in range(0, TILES):
        p = (prog * TILES + t) * BLOCK + tl.arange(0, BLOCK)
        mp = p < HW
        mcp, mip = mc[:, None] & mp[None, :], mi[:, None] & mp[None, :]
        g = tl.load(g_ptr + b * sgb + c[:, None] * sgc + p[None, :] * sgp, mask=mcp, other=0.0).to(tl.float32)
        if VALUE:
            vc = tl.load(v_ptr + b * svb + c[:, None] * svc + p[None, :] * svp, mask=mcp, other=0.0)
        else:
            x = tl.load(x_ptr + b * sxb + c[:, None] * sxc + p[None, :] * sxp, mask=mcp, other=0.0).to(tl.float32)
            vc = tl.where(mcp, x - cx[:, None], 0.0)
        st = tl.trans(tl.load(s_ptr + b * N * HW + i[:, None] * HW + p[None, :], mask=mip, other=0.0))
        dgain += tl.dot(g * vc, st, input_precision="ieee")
        doffset += tl.dot(g, st, input_precision="ieee")
    base = part_ptr + (b * NPROG + prog) * 2 * C * N + c[:, None] * N + i[None, :]
    tl.store(base, dgain, mask=mci)
    tl.store(base + C * N, doffset, mask=mci)
# fmt: on


# fmt: off
@triton.jit
def _input_grad_kernel(
    g_ptr, x_ptr, v_ptr, s_ptr, dx_ptr, dv_ptr, part_ptr, pu_ptr, h3_ptr, wlt_ptr, cx_ptr, HW, C, N, NPROG, TILES,
    sgb, sgc, sgp, sxb, sxc, sxp, svb, svc, svp, sdb, sdc, sdp, wlt_sb, cx_sb,
    C_PAD: tl.constexpr, N_PAD: tl.constexpr, BLOCK: tl.constexpr, VALUE: tl.constexpr,
):
    prog = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    c = tl.arange(0, C_PAD)
    i = tl.arange(0, N_PAD)
    mc, mi = c < C, i < N
    mci, mic = mc[:, None] & mi[None, :], mi[:, None] & mc[None, :]
    cx = tl.load(cx_ptr + b * cx_sb + c, mask=mc, other=0.0)
    # pu = [dm; dT; dQ; gain; offset]^T (n, 1 + 4C), h3 = [h_1; h_2; h_3] (3C, n), w^T (C, n): loop-invariant
    row = pu_ptr + b * N * (1 + 4 * C) + i * (1 + 4 * C)
    dm = tl.load(row, mask=mi, other=0.0)
    p_t = tl.load(row[:, None] + 1 + c[None, :], mask=mic, other=0.0)
    p_q = tl.load(row[:, None] + 1 + C + c[None, :], mask=mic, other=0.0)
    p_g = tl.load(row[:, None] + 1 + 2 * C + c[None, :], mask=mic, other=0.0)
    p_o = tl.load(row[:, None] + 1 + 3 * C + c[None, :], mask=mic, other=0.0)
    h = h3_ptr + b * 3 * C * N + c[:, None] * N + i[None, :]
    h_1 = tl.load(h, mask=mci, other=0.0)
    h_2 = tl.load(h + C * N, mask=mci, other=0.0)
    h_3 = tl.load(h + 2 * C * N, mask=mci, other=0.0)
    wlt = tl.load(wlt_ptr + b * wlt_sb + c[:, None] * N + i[None, :], mask=mci, other=0.0)
    dl_sum = tl.zeros([N_PAD], dtype=tl.float32)
    dw = tl.zeros([N_PAD, C_PAD], dtype=tl.float32)
    for t in range(0, TILES):
        p = (prog * TILES + t) * BLOCK + tl.arange(0, BLOCK)
        mp = p < HW
        mcp, mip = mc[:, None] & mp[None, :], mi[:, None] & mp[None, :]
        g = tl.load(g_ptr + b * sgb + c[:, None] * sgc + p[None, :] * sgp, mask=mcp, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + b * sxb + c[:, None] * sxc + p[None, :] * sxp, mask=mcp, other=0.0).to(tl.float32)
        xc = tl.where(mcp, x - cx[:, None], 0.0)
        if VALUE:
            vc = tl.load(v_ptr + b * svb + c[:, None] * svc + p[None, :] * svp, mask=mcp, other=0.0)
        else:
            vc = xc
        s = tl.load(s_ptr + b * N * HW + i[:, None] * HW + p[None, :], mask=mip, other=0.0)
        # dS = dm + dT^T v_c + dQ^T v_c^2 + gain^T (g v_c) + offset^T g, then the softmax backward
        ds = dm[:, None] + tl.dot(p_t, vc, input_precision="ieee") + tl.dot(p_q, vc * vc, input_precision="ieee")
        ds += tl.dot(p_g, g * vc, input_precision="ieee") + tl.dot(p_o, g, input_precision="ieee")
        dl = s * (ds - tl.sum(s * ds, axis=0)[None, :])
        # d v_c = g * (h_1 @ S) + h_2 @ S + v_c * (h_3 @ S)
        dv = g * tl.dot(h_1, s, input_precision="ieee") + tl.dot(h_2, s, input_precision="ieee")
        dv += vc * tl.dot(h_3, s, input_precision="ieee")
        dx = tl.dot(wlt, dl, input_precision="ieee")
        if VALUE:
            tl.store(dv_ptr + b * C * HW + c[:, None] * HW + p[None, :], dv, mask=mcp)
            dx += g
        else:
            dx += dv
        tl.store(dx_ptr + b * sdb + c[:, None] * sdc + p[None, :] * sdp, dx.to(dx_ptr.dtype.element_ty), mask=mcp)
        dl_sum += tl.sum(dl, axis=1)
        dw += tl.dot(dl, tl.trans(xc), input_precision="ieee")
    base = part_ptr + (b * NPROG + prog) * N * (1 + C) + i * (1 + C)
    tl.store(base, dl_sum, mask=mi)
    tl.store(base[:, None] + 1 + c[None, :], dw, mask=mic)
# fmt: on


# fmt: off
@triton.jit
def _coefficients_kernel(
    mom_ptr, center_ptr, beta_ptr, alpha_ptr, rho_ptr, coef_ptr, stats_ptr, B, C, N, center_sb, eps,
    C_PAD: tl.constexpr, N_PAD: tl.constexpr, BATCH: tl.constexpr, AFFINE: tl.constexpr,
):
    # AttentiveNorm2d._coefficients for one sample (or, BATCH, for the moments summed over the batch), in one program.
    b = tl.program_id(0).to(tl.int64)
    c = tl.arange(0, C_PAD)
    i = tl.arange(0, N_PAD)
    mc, mi = c < C, i < N
    mci = mc[:, None] & mi[None, :]
    size = (1 + 2 * C) * N
    if BATCH:
        mass = tl.zeros([N_PAD], dtype=tl.float32)
        s1 = tl.zeros([C_PAD, N_PAD], dtype=tl.float32)
        s2 = tl.zeros([C_PAD, N_PAD], dtype=tl.float32)
        for k in range(0, B):
            base = mom_ptr + k * size
            mass += tl.load(base + i, mask=mi, other=0.0)
            s1 += tl.load(base + N + c[:, None] * N + i[None, :], mask=mci, other=0.0)
            s2 += tl.load(base + (1 + C) * N + c[:, None] * N + i[None, :], mask=mci, other=0.0)
    else:
        base = mom_ptr + b * size
        mass = tl.load(base + i, mask=mi, other=0.0)
        s1 = tl.load(base + N + c[:, None] * N + i[None, :], mask=mci, other=0.0)
        s2 = tl.load(base + (1 + C) * N + c[:, None] * N + i[None, :], mask=mci, other=0.0)
    denom = mass + eps
    center = tl.load(center_ptr + b * center_sb + c, mask=mc, other=0.0)
    mean = (s1 - center[:, None] * eps) / denom[None, :]
    var = tl.maximum((s2 - mean * (2.0 * s1 - mean * mass[None, :])) / denom[None, :], 0.0)
    scale = 1.0 / (tl.sqrt(tl.maximum(var, 1e-12)) + eps)
    if AFFINE:  # beta, alpha are (n, C)
        scale = scale * tl.load(beta_ptr + i[None, :] * C + c[:, None], mask=mci, other=0.0).to(tl.float32)
    shift = -mean * scale
    if AFFINE:
        shift = shift + tl.load(alpha_ptr + i[None, :] * C + c[:, None], mask=mci, other=0.0).to(tl.float32)
    rho = tl.load(rho_ptr).to(tl.float32)
    out = coef_ptr + b * 2 * C * N + c[:, None] * N + i[None, :]
    tl.store(out, rho * scale, mask=mci)
    tl.store(out + C * N, rho * shift, mask=mci)
    stats = stats_ptr + b * 2 * C * N + c[:, None] * N + i[None, :]
    tl.store(stats, mean, mask=mci)
    tl.store(stats + C * N, var, mask=mci)
# fmt: on


# ----------------------------------------------------------------------------------------------------------------
# The passes (same contract as attentive_norm_chunked)


def coefficients(layer, p: dict[str, Tensor], moments: Tensor | None, center: Tensor, dtype: torch.dtype):
    """``[gain; offset]`` ``(B|1, 2C, n)``, the centred mean and the variance: ``AttentiveNorm2d._coefficients`` in
    one kernel (running statistics, ``moments=None``, go through the torch code)."""
    if moments is None:
        gain, offset, mean, var = layer._coefficients(p, moments, center, dtype)
        return torch.cat([gain, offset], dim=1).contiguous(), mean, var
    b, rows, n = moments.shape
    c = (rows - 1) // 2
    batch = layer.stats == "batch"
    out_b = 1 if batch else b
    coeffs = moments.new_empty(out_b, 2 * c, n)
    stats = moments.new_empty(out_b, 2 * c, n)
    beta, alpha = p.get("beta"), p.get("alpha")
    # fmt: off
    _coefficients_kernel[(out_b,)](
        moments.contiguous(), center, beta if beta is not None else moments,
        alpha if alpha is not None else moments, p["rho"], coeffs, stats, b, c, n, _bstride(center), layer.eps,
        C_PAD=_pad(c), N_PAD=_pad(n), BATCH=batch, AFFINE=beta is not None,
    )
    # fmt: on
    return coeffs, stats[:, :c], stats[:, c:]


def layout_and_moments(
    xf: Tensor, cx: Tensor, wlb: Tensor, wv: Tensor | None, s: Tensor, need_moments: bool
) -> Tensor | None:
    """Forward pass 1 as one Triton kernel (contract of
    :func:`common.layers.attentive_norm_chunked.layout_and_moments`).

    Args:
        xf: input ``(B, C, HW)``.
        cx: per-channel centre ``(B|1, C, 1)`` (float32).
        wlb: layout logit weights ``[b | w]`` ``(B|1, n, 1 + C)`` acting on ``[1; x - cx]``.
        wv: value projection ``(C, C)`` or ``None`` (normalise ``x`` itself).
        s: output, filled in place with the layout ``softmax`` over the entities, ``(B, n, HW)`` float32.
        need_moments: also return the moments.

    Returns:
        ``[mass; sum S v_c; sum S v_c^2]`` summed over the pixels, ``(B, 1 + 2C, n)``, or ``None``.
    """
    d = _dims(xf, s.shape[1])
    nprog = d["NPROG"]
    vf = _value(xf, cx, wv) if wv is not None and need_moments else xf
    part = s.new_empty(d["b"], nprog, 1 + 2 * d["c"], d["n"]) if need_moments else s
    # fmt: off
    _layout_moments_kernel[(nprog, d["b"])](
        xf, vf, s, part, wlb, cx, d["hw"], d["c"], d["n"], nprog, d["TILES"], *xf.stride(), *vf.stride(), _bstride(wlb),
        _bstride(cx), C_PAD=d["C_PAD"], N_PAD=d["N_PAD"], BLOCK=d["BLOCK"], MOMENTS=need_moments,
        VALUE=wv is not None, num_warps=8,
    )
    # fmt: on
    return part.sum(1) if need_moments else None


def output(xf: Tensor, s: Tensor, cx: Tensor, wv: Tensor | None, coeffs: Tensor, of: Tensor) -> None:
    """Forward pass 2 as one Triton kernel: ``of = x + v_c * (gain @ S) + offset @ S``.

    Same contract as :func:`common.layers.attentive_norm_chunked.output`: ``xf`` ``(B, C, HW)``, ``s`` ``(B, n, HW)``,
    ``cx`` ``(B|1, C, 1)``, ``wv`` ``(C, C)`` or ``None``, ``coeffs = [gain; offset]`` ``(B|1, 2C, n)``; the result is
    written into ``of`` ``(B, C, HW)`` (the input's dtype).
    """
    d = _dims(xf, s.shape[1])
    nblk = triton.cdiv(d["hw"], d["BLOCK"])
    vf = _value(xf, cx, wv) if wv is not None else xf
    # fmt: off
    _output_kernel[(nblk, d["b"])](
        xf, vf, s, of, coeffs, cx, d["hw"], d["c"], d["n"], *xf.stride(), *vf.stride(), *of.stride(),
        _bstride(coeffs), _bstride(cx), C_PAD=d["C_PAD"], N_PAD=d["N_PAD"], BLOCK=d["BLOCK"], VALUE=wv is not None,
        num_warps=8,
    )
    # fmt: on


def output_gradient_moments(gf: Tensor, xf: Tensor, s: Tensor, cx: Tensor, wv: Tensor | None) -> Tensor:
    """Backward pass 1 as one Triton kernel: ``[sum_p (g v_c) S^T; sum_p g S^T]``, ``(B, 2C, n)`` float32.

    Same contract as :func:`common.layers.attentive_norm_chunked.output_gradient_moments`; ``gf`` is the output gradient
    ``(B, C, HW)``, the other arguments as in :func:`output`.
    """
    d = _dims(xf, s.shape[1])
    nprog = d["NPROG"]
    vf = _value(xf, cx, wv) if wv is not None else xf
    part = s.new_empty(d["b"], nprog, 2 * d["c"], d["n"])
    # fmt: off
    _output_grad_kernel[(nprog, d["b"])](
        gf, xf, vf, s, part, cx, d["hw"], d["c"], d["n"], nprog, d["TILES"], *gf.stride(), *xf.stride(), *vf.stride(),
        _bstride(cx), C_PAD=d["C_PAD"], N_PAD=d["N_PAD"], BLOCK=d["BLOCK"], VALUE=wv is not None, num_warps=8,
    )
    # fmt: on
    return part.sum(1)


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
    """Backward pass 2 as one Triton kernel: the input gradient into ``dxf`` ``(B, C, HW)`` and the small weight
    gradients.

    Same arguments and results as :func:`common.layers.attentive_norm_chunked.input_gradient`: returns ``d [b | w]``
    ``(B, n, 1 + C)`` and, with a value projection, ``d W_v`` ``(C, C)`` and the per-sample bias gradient ``(B, C)``
    (else ``None, None``).
    """
    d = _dims(xf, s.shape[1])
    b, c = d["b"], d["c"]
    nprog = d["NPROG"]
    vf = _value(xf, cx, wv) if wv is not None else xf
    dv = torch.empty(b, c, d["hw"], dtype=s.dtype, device=s.device) if wv is not None else s
    part = s.new_empty(b, nprog, d["n"], 1 + c)
    wl_t = wl_t.contiguous()
    # fmt: off
    _input_grad_kernel[(nprog, b)](
        gf, xf, vf, s, dxf, dv, part, pu, h3, wl_t, cx, d["hw"], c, d["n"], nprog, d["TILES"], *gf.stride(),
        *xf.stride(),
        *vf.stride(), *dxf.stride(), _bstride(wl_t), _bstride(cx), C_PAD=d["C_PAD"], N_PAD=d["N_PAD"],
        BLOCK=d["BLOCK"], VALUE=wv is not None, num_warps=8,
    )
    # fmt: on
    dwlb = part.sum(1)
    if wv is None:
        return dwlb, None, None
    # dx += W_v^T d v_c; d W_v = sum_b d v_c x^T (with x = x_c + cx); d b_v per sample = sum_p d v_c.
    dxf += torch.matmul(wv.t(), dv).to(dxf.dtype)
    dwv = torch.matmul(dv, xf.to(dv.dtype).transpose(1, 2)).sum(0)
    return dwlb, dwv, dv.sum(2)
