"""Fused Attentive Normalization: the layer's full-size passes over cache-sized chunks, and a recomputing backward.

Wang, Yi; Chen, Ying-Cong; Zhang, Xiangyu; Sun, Jian; Jia, Jiaya. "Attentive Normalization for Conditional
Image Generation", CVPR 2020, https://arxiv.org/abs/2004.03828 (Section 3; Section 3.4 and Table 5 for the cost).

At the paper's sizes (C = 32, n = 16) AN is memory-bound: its arithmetic is a few small matrix products per pixel,
and written as whole-tensor operations (``AttentiveNorm2d(implementation="reference")``) every step is a full-size
tensor (logits, layout, centred input and its square, the ``(2C, H*W)`` gain and offset, ...) that is written to
memory, read back and, for autograd, mostly stored until the backward. Here the pixels are processed in chunks of
about ``CHUNK_ELEMENTS`` input elements, whose intermediates stay in the CPU caches:

* forward pass 1, per chunk: layout logits ``w @ x_c + b`` (one small product; the self-sampling branch folds into
  ``w`` and ``b``, see ``AttentiveNorm2d._layout_affine``), the softmax in place in the layout (which the layer
  keeps anyway), and the moments ``[v_c; v_c^2; 1] @ S^T`` (one product) summed over the chunks;
* the ``(C, n)`` statistics -> coefficients step (``AttentiveNorm2d._coefficients``, the same code as the reference);
* forward pass 2, per chunk: ``out = x + v_c * (gain @ S) + offset @ S`` (one product, two pointwise operations);
* backward pass 1 sums ``d gain`` and ``d offset`` over the chunks; autograd differentiates the two small steps on
  their ``(C, n)`` tensors; backward pass 2 computes, per chunk, the layout gradient (softmax backward included)
  and the input gradient, recomputing ``v_c`` from ``x``.

Only the output, the layout and (in the backward) the input gradient are full-size; saved for the backward are the
input, the layout and ``(C, n)``-sized tensors. Values and gradients equal the reference implementation's up to
floating-point rounding (tests compare them in float64). A double backward (``create_graph=True``, e.g. a gradient
penalty through a critic that holds AN) differentiates a recomputation of the reference implementation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["CHUNK_ELEMENTS", "attentive_norm_fused"]

# Input elements (C x pixels) per chunk: 2^18 float32 = 1 MiB, so a chunk's working set (a few times that) stays in
# the L2/L3 caches while the per-chunk Python overhead stays a few percent. Tests lower it to exercise many chunks.
CHUNK_ELEMENTS = 1 << 18


def attentive_norm_fused(
    layer: Any, x: Tensor, p: dict[str, Tensor], positions: Tensor | None
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
    """``AttentiveNorm2d``'s forward in fused chunks; same contract as ``AttentiveNorm2d._forward_reference``.

    Returns the output (dtype of ``x``), the layout ``(B, n, H*W)`` (float32, float64 for float64 input) and, when
    training with ``stats="batch"``, the pooled ``(mean, var)`` of shape ``(1, C, n)`` each.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        out, s, stats = _FusedAttentiveNorm.apply(layer, x, positions, tuple(p), *p.values())
    return out, s, (tuple(stats.split(x.shape[1], dim=1)) if stats.numel() else None)


# ----------------------------------------------------------------------------------------------------------------
# Helpers. A chunk is (sample index, pixel slice); the index is an int (one sample: 2-D matrices) or a slice (several
# whole samples: batched 3-D matrices). Shared (B = 1) per-sample tensors are broadcast to the chunk's samples.


def _flat(t: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, C, H*W)`` without a copy for contiguous and channels_last tensors."""
    b, c, h, w = t.shape
    if t.is_contiguous():
        return t.view(b, c, h * w)
    if t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(b, h * w, c).transpose(1, 2)
    return t.contiguous().view(b, c, h * w)


def _empty_like(x: Tensor) -> Tensor:
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.empty_like(x, memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _chunks(b: int, hw: int, c: int) -> list[tuple[int | slice, slice]]:
    """Chunks covering ``(B, H*W)``, each about ``CHUNK_ELEMENTS / C`` pixels (several samples when H*W is small)."""
    pixels = min(hw, max(CHUNK_ELEMENTS // c, 1))
    per = max(1, min(b, CHUNK_ELEMENTS // (c * hw))) if pixels == hw else 1
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


class _Buffers:
    """Scratch tensors of the largest chunk's size, viewed to each chunk's size."""

    def __init__(self, chunks: list[tuple[int | slice, slice]], dtype: torch.dtype, device: torch.device) -> None:
        self.b = max(1 if isinstance(i, int) else i.stop - i.start for i, _ in chunks)
        self.p = max(ps.stop - ps.start for _, ps in chunks)
        self.dtype, self.device = dtype, device

    def new(self, rows: int, ones_row: bool = False) -> Tensor:
        buf = torch.empty(self.b, rows, self.p, dtype=self.dtype, device=self.device)
        if ones_row:
            buf[:, 0].fill_(1.0)
        return buf


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


def _window_index(positions: Tensor, h: int, w: int) -> Tensor:
    """Flat pixel indices ``(B, 4n)`` of the 2x2 pooling windows of the sampled pooled positions, row-major."""
    wp = w // 2
    base = 2 * (positions // wp) * w + 2 * (positions % wp)
    offsets = torch.tensor([0, 1, w, w + 1], device=positions.device)
    return (base.unsqueeze(2) + offsets).flatten(1)


# ----------------------------------------------------------------------------------------------------------------
# The autograd function. Chunk buffers hold [1; x_c] (the layout logits are [b | w] @ [1; x_c], one product) and
# [1; v_c; v_c^2] (the moments [mass; sum S v_c; sum S v_c^2] = [1; v_c; v_c^2] @ S^T, one product).


class _FusedAttentiveNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, layer, x, positions, names, *values):
        p = dict(zip(names, values, strict=True))
        b, c, h, w = x.shape
        n, hw = layer.num_entities, h * w
        dt = torch.promote_types(x.dtype, torch.float32)
        batch_stats = layer.stats == "batch"
        xf = _flat(x)
        chunks = _chunks(b, hw, c)
        buffers = _Buffers(chunks, dt, x.device)

        # Centre of the input (per sample, or over the batch for stats="batch"): statistics of x - cx keep their
        # precision when |mean| >> std. The layout logits w x + b become [b + w cx | w] @ [1; x - cx].
        cx = xf.mean(dim=(0, 2) if batch_stats else 2, keepdim=True, dtype=dt)  # (B|1, C, 1)
        windows = None
        if positions is not None:
            index = _window_index(positions, h, w).unsqueeze(1).expand(-1, c, -1)
            windows = xf.gather(2, index).to(dt)  # (B, C, 4n)
        wl, bl = layer._layout_affine(p, windows, dt)  # (B|1, n, C), (B|1, n)
        bl = bl.unsqueeze(2) + torch.matmul(wl, cx)  # (B|1, n, 1)
        wlb = torch.cat([bl, wl.expand(bl.shape[0], -1, -1)], dim=2)  # (B|1, n, 1 + C)
        wv = p["value.weight"].view(c, c).to(dt) if "value.weight" in p else None
        # What gets normalised is v = x (the paper) or W_v x + b_v; its centre, and v_c = v - center = W_v (x - cx).
        center = cx if wv is None else torch.matmul(wv, cx) + p["value.bias"].to(dt)[None, :, None]

        # Pass 1: layout (softmax in place) and the moments, chunk by chunk.
        s = torch.empty(b, n, hw, dtype=dt, device=x.device)
        moments = None
        if not batch_stats or layer.training:
            moments = torch.zeros(b, 1 + 2 * c, n, dtype=dt, device=x.device)
            ubuf = buffers.new(1 + 2 * c, ones_row=True)
        xbuf = buffers.new(1 + c, ones_row=True)
        for i, ps in chunks:
            u = _view(ubuf, i, ps) if moments is not None else None
            xo = u[..., : 1 + c, :] if u is not None and wv is None else _view(xbuf, i, ps)  # [1; x_c]
            xc = torch.sub(xf[i, :, ps], _rows(cx, i), out=xo[..., 1:, :])
            sc = s[i, :, ps]
            _softmax_(_mm(_rows(wlb, i), xo, out=sc))
            if u is not None:
                vc = xc if wv is None else _mm(_like(wv, xc), xc, out=u[..., 1 : 1 + c, :])
                torch.mul(vc, vc, out=u[..., 1 + c :, :])
                _mm_add_(moments[i], u, sc.transpose(-1, -2))

        gain, offset, mean, var = layer._coefficients(p, moments, center, dt)  # (B|1, C, n)
        coeffs = torch.cat([gain, offset], dim=1)

        # Pass 2: out = x + v_c * (gain @ S) + offset @ S.
        out = _empty_like(x)
        of = _flat(out)
        gbuf = buffers.new(2 * c)
        vbuf = buffers.new(c) if wv is not None else None
        for i, ps in chunks:
            xs = xf[i, :, ps]
            xc = torch.sub(xs, _rows(cx, i), out=_view(xbuf, i, ps)[..., 1:, :])
            vc = xc if wv is None else _mm(_like(wv, xc), xc, out=_view(vbuf, i, ps))
            go = _mm(_rows(coeffs, i), s[i, :, ps], out=_view(gbuf, i, ps))
            torch.add(xs, go[..., c:, :].addcmul_(vc, go[..., :c, :]), out=of[i, :, ps])

        stats = torch.cat([mean + center, var], dim=1) if batch_stats and layer.training else s.new_empty(0)
        ctx.layer, ctx.names = layer, names
        ctx.mark_non_differentiable(s, stats)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, s, positions, windows, moments, cx, center, *values)
        return out, s, stats

    @staticmethod
    def backward(ctx, grad_out, _grad_layout, _grad_stats):
        x, s, positions, windows, moments, cx, center, *values = ctx.saved_tensors
        if grad_out is None:
            return (None,) * (4 + len(values))
        with torch.autocast(device_type=x.device.type, enabled=False):
            if torch.is_grad_enabled():  # create_graph=True: differentiate the reference implementation
                grads = _reference_backward(ctx, grad_out, x, positions, values)
            else:
                grads = _fused_backward(ctx, grad_out, x, s, positions, windows, moments, cx, center, values)
        return (None, grads[0], None, None, *grads[1:])


def _reference_backward(ctx, grad_out: Tensor, x: Tensor, positions: Tensor | None, values: list[Tensor]) -> list:
    inputs = [x, *values]
    wanted = [t for t, need in zip(inputs, ctx.needs_input_grad[1:2] + ctx.needs_input_grad[4:], strict=True) if need]
    out, _, _ = ctx.layer._forward_reference(x, dict(zip(ctx.names, values, strict=True)), positions)
    found = iter(torch.autograd.grad(out, wanted, grad_out, create_graph=True, allow_unused=True))
    return [next(found) if any(t is w for w in wanted) else None for t in inputs]


def _fused_backward(ctx, grad_out, x, s, positions, windows, moments, cx, center, values) -> list:
    layer, names = ctx.layer, ctx.names
    b, c, h, w = x.shape
    n, hw = layer.num_entities, h * w
    dt = s.dtype
    xf, gf = _flat(x), _flat(grad_out)
    chunks = _chunks(b, hw, c)
    buffers = _Buffers(chunks, dt, x.device)
    wv = values[names.index("value.weight")].detach().view(c, c).to(dt) if "value.weight" in names else None

    # The two small steps again, with autograd, on detached leaves: layout map (w, b) and coefficients.
    leaves = {k: v.detach().requires_grad_(v.requires_grad) for k, v in zip(names, values, strict=True)}
    win_leaf = windows.detach().requires_grad_(True) if windows is not None else None
    mom_leaf = moments.detach().requires_grad_(True) if moments is not None else None
    with torch.enable_grad():
        wl_g, bl_g = layer._layout_affine(leaves, win_leaf, dt)
        gain_g, offset_g, _, _ = layer._coefficients(leaves, mom_leaf, center, dt)
    wl, gain, offset = wl_g.detach(), gain_g.detach(), offset_g.detach()

    # Backward pass 1: d gain = sum_p (g * v_c) S^T, d offset = sum_p g S^T.
    dgo = torch.zeros(b, 2 * c, n, dtype=dt, device=x.device)
    xbuf, gvbuf = buffers.new(1 + c, ones_row=True), buffers.new(c)
    vbuf = buffers.new(c) if wv is not None else None
    for i, ps in chunks:
        gs = gf[i, :, ps].to(dt)
        xc = torch.sub(xf[i, :, ps], _rows(cx, i), out=_view(xbuf, i, ps)[..., 1:, :])
        vc = xc if wv is None else _mm(_like(wv, xc), xc, out=_view(vbuf, i, ps))
        st = s[i, :, ps].transpose(-1, -2)
        _mm_add_(dgo[i][..., :c, :], torch.mul(gs, vc, out=_view(gvbuf, i, ps)), st)
        _mm_add_(dgo[i][..., c:, :], gs, st)
    if gain.shape[0] == 1:
        dgo = dgo.sum(0, keepdim=True)
    param_grads: dict[str, Tensor] = {}
    coef_names = [k for k in ("beta", "alpha", "rho") if k in leaves and leaves[k].requires_grad]
    coef_inputs = ([mom_leaf] if mom_leaf is not None else []) + [leaves[k] for k in coef_names]
    coef_grads = _grad([gain_g, offset_g], coef_inputs, dgo.split(c, dim=1))
    dmom = coef_grads.pop(0) if mom_leaf is not None else None
    dmom = torch.zeros(b, 1 + 2 * c, n, dtype=dt, device=x.device) if dmom is None else dmom
    param_grads.update(zip(coef_names, coef_grads, strict=True))

    # Backward pass 2, per chunk, with u = [1; v_c; v_c^2; g v_c; g]: dS = [dm; dT; dQ; gain; offset]^T u, softmax
    # backward, d v_c = g * (gain @ S) + dT @ S + 2 v_c * (dQ @ S) (plus g, for the residual, when v = x), and the
    # input gradient.
    _, dT, dQ = dmom.split([1, c, c], dim=1)  # (B, C, n) each
    gain, offset = gain.expand(b, -1, -1), offset.expand(b, -1, -1)
    pu = torch.cat([dmom, gain, offset], dim=1).transpose(1, 2).contiguous()  # (B, n, 1 + 4C)
    h3 = torch.cat([gain + 1.0 if wv is None else gain, dT, 2.0 * dQ], dim=1)  # (B, 3C, n); sum_i S_i = 1
    wl_t = wl.transpose(1, 2)  # (B|1, C, n)
    dx = _empty_like(x)
    dxf = _flat(dx)
    dwlb = torch.zeros(b, n, 1 + c, dtype=dt, device=x.device)  # d [b | w] for [b | w] @ [1; x_c]
    if wv is not None:
        dwv = torch.zeros(c, c, dtype=dt, device=x.device)
        dvsum = torch.zeros(b, c, dtype=dt, device=x.device)
    ubuf, hbuf, sbuf = buffers.new(1 + 4 * c, ones_row=True), buffers.new(3 * c), buffers.new(n)
    dxbuf = buffers.new(c) if dx.dtype != dt else None
    for i, ps in chunks:
        gs = gf[i, :, ps].to(dt)
        sc = s[i, :, ps]
        u = _view(ubuf, i, ps)
        xo = u[..., : 1 + c, :] if wv is None else _view(xbuf, i, ps)  # [1; x_c]
        xc = torch.sub(xf[i, :, ps], _rows(cx, i), out=xo[..., 1:, :])
        vc = xc if wv is None else _mm(_like(wv, xc), xc, out=u[..., 1 : 1 + c, :])
        torch.mul(vc, vc, out=u[..., 1 + c : 1 + 2 * c, :])
        torch.mul(gs, vc, out=u[..., 1 + 2 * c : 1 + 3 * c, :])
        u[..., 1 + 3 * c :, :].copy_(gs)
        dl = torch._softmax_backward_data(_mm(_rows(pu, i), u, out=_view(sbuf, i, ps)), sc, sc.dim() - 2, dt)
        hm = _mm(_rows(h3, i), sc, out=_view(hbuf, i, ps))
        target = dxf[i, :, ps] if dxbuf is None else _view(dxbuf, i, ps)
        if wv is None:  # dx = g (1 + gain @ S) + dT @ S + 2 x_c (dQ @ S) + w^T d logits
            torch.addcmul(hm[..., c : 2 * c, :], gs, hm[..., :c, :], out=target).addcmul_(vc, hm[..., 2 * c :, :])
        else:  # dx = g + W_v^T d v_c + w^T d logits
            dv = hm[..., c : 2 * c, :].addcmul_(gs, hm[..., :c, :]).addcmul_(vc, hm[..., 2 * c :, :])
            _mm(_like(wv.t(), dv), dv, out=target).add_(gs)
            dwv.add_((dv @ xc.transpose(-1, -2)).view(-1, c, c).sum(0))
            dvsum[i] += dv.sum(-1)
        _mm_add_(target, _rows(wl_t, i), dl)
        if dxbuf is not None:
            dxf[i, :, ps].copy_(target)
        _mm_add_(dwlb[i], dl, xo.transpose(-1, -2))

    # d w for w x + b = [b + w cx | w] @ [1; x_c]; then autograd through the layout map (entities, self-sampling).
    dbl, dwl = dwlb[..., 0], dwlb[..., 1:] + dwlb[..., :1] * cx.transpose(1, 2)
    if wl.shape[0] == 1:
        dwl, dbl = dwl.sum(0, keepdim=True), dbl.sum(0, keepdim=True)
    lay_names = ["entities", "key.weight", "key.bias", "query.weight", "query.bias", "t"]
    lay_names = [k for k in lay_names if k in leaves and leaves[k].requires_grad]
    lay_inputs = ([win_leaf] if win_leaf is not None else []) + [leaves[k] for k in lay_names]
    lay_grads = _grad([wl_g, bl_g], lay_inputs, [dwl, dbl])
    if win_leaf is not None:
        dwin = lay_grads.pop(0)
        if dwin is not None:
            index = _window_index(positions, h, w).unsqueeze(1).expand(-1, c, -1)
            dxf.scatter_add_(2, index, dwin.to(dx.dtype))
    param_grads.update(zip(lay_names, lay_grads, strict=True))
    if wv is not None:
        # d W_v = sum_p d v (x_c + cx)^T; d b_v = sum_p d v.
        weight = values[names.index("value.weight")]
        param_grads["value.weight"] = (dwv + dvsum.t() @ cx.squeeze(2).expand(b, -1)).view_as(weight).to(weight.dtype)
        param_grads["value.bias"] = dvsum.sum(0).to(weight.dtype)
    return [dx, *(param_grads.get(k) for k in names)]


def _grad(outputs: list[Tensor], inputs: list[Tensor], grad_outputs) -> list[Tensor | None]:
    """``torch.autograd.grad`` of the small steps; outputs that do not require grad contribute nothing."""
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs, strict=True) if o.requires_grad]
    if not inputs or not pairs:
        return [None] * len(inputs)
    return list(torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True))
