"""Fused Attentive Normalization: the layer's full-size passes over cache-sized chunks, and a recomputing backward.

Wang, Yi; Chen, Ying-Cong; Zhang, Xiangyu; Sun, Jian; Jia, Jiaya. "Attentive Normalization for Conditional
Image Generation", CVPR 2020, https://arxiv.org/abs/2004.03828 (Section 3; Section 3.4 and Table 5 for the cost).

At the paper's sizes (C = 32, n = 16) AN is memory-bound: its arithmetic is a few small matrix products per pixel,
and written as whole-tensor operations (``AttentiveNorm2d(implementation="reference")``) every step is a full-size
tensor (logits, layout, centred input and its square, the ``(2C, H*W)`` gain and offset, ...) that is written to
memory, read back and, for autograd, mostly stored until the backward. This autograd function computes the small
steps with plain torch operations and the four full-size passes in a backend module:
:mod:`common.layers.attentive_norm_chunked` (chunks of the pixels small enough for a core's caches, spread over
worker threads; any device) or :mod:`common.layers.attentive_norm_triton` (one kernel per pass; CUDA):

* forward pass 1: layout logits ``[b | w] @ [1; x_c]`` (one small product; the self-sampling branch folds into
  ``w`` and ``b``, see ``AttentiveNorm2d._layout_affine``), the softmax, stored as the layout (which the layer
  keeps anyway), and the moments ``[1; v_c; v_c^2] @ S^T`` summed over the pixels;
* the ``(C, n)`` statistics -> coefficients step (``AttentiveNorm2d._coefficients``);
* forward pass 2: ``out = x + v_c * (gain @ S) + offset @ S``;
* backward pass 1 sums ``d gain`` and ``d offset`` over the pixels; autograd differentiates the two small steps on
  their ``(C, n)`` tensors (recomputed from saved small inputs); backward pass 2 computes the layout gradient
  (softmax backward included) and the input gradient, recomputing ``v_c`` from ``x``.

Only the output, the layout and (in the backward) the input gradient are full-size; saved for the backward are the
input, the layout and ``(C, n)``-sized tensors. Values and gradients equal the reference implementation's up to
floating-point rounding (tests compare them in float64). A double backward (``create_graph=True``, e.g. a gradient
penalty through a critic that holds AN) differentiates a recomputation of the reference implementation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from common.layers import attentive_norm_chunked

__all__ = ["attentive_norm_fused"]


def attentive_norm_fused(
    layer: Any, x: Tensor, p: dict[str, Tensor], positions: Tensor | None, backend: str = "chunked"
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
    """``AttentiveNorm2d``'s forward, fused; same contract as ``AttentiveNorm2d._forward_reference``.

    ``backend``: ``"chunked"`` (:mod:`common.layers.attentive_norm_chunked`, torch operations, any device) or
    ``"triton"`` (:mod:`common.layers.attentive_norm_triton`, CUDA). Returns the output (dtype of ``x``), the
    layout ``(B, n, H*W)`` (float32, float64 for float64 input) and, when training with ``stats="batch"``, the pooled
    ``(mean, var)`` of shape ``(1, C, n)`` each.
    """
    if backend == "triton":
        from common.layers import attentive_norm_triton as passes
    else:
        passes = attentive_norm_chunked
    with torch.autocast(device_type=x.device.type, enabled=False):
        out, s, stats = _FusedAttentiveNorm.apply(layer, x, positions, passes, tuple(p), *p.values())
    return out, s, (tuple(stats.split(x.shape[1], dim=1)) if stats.numel() else None)


# ----------------------------------------------------------------------------------------------------------------
# Helpers


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


def _window_index(positions: Tensor, h: int, w: int) -> Tensor:
    """Flat pixel indices ``(B, 4n)`` of the 2x2 pooling windows of the sampled pooled positions, row-major."""
    wp = w // 2
    base = 2 * (positions // wp) * w + 2 * (positions % wp)
    offsets = torch.tensor([0, 1, w, w + 1], device=positions.device)
    return (base.unsqueeze(2) + offsets).flatten(1)


def _grad(outputs: list[Tensor], inputs: list[Tensor], grad_outputs) -> list[Tensor | None]:
    """``torch.autograd.grad`` of the small steps; outputs that do not require grad contribute nothing."""
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs, strict=True) if o.requires_grad]
    if not inputs or not pairs:
        return [None] * len(inputs)
    return list(torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True))


# ----------------------------------------------------------------------------------------------------------------
# The autograd function: the small steps in plain torch, the four full-size passes in ``passes`` (a backend module).


class _FusedAttentiveNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, layer, x, positions, passes, names, *values):
        p = dict(zip(names, values, strict=True))
        b, c, h, w = x.shape
        n, hw = layer.num_entities, h * w
        dt = torch.promote_types(x.dtype, torch.float32)
        batch_stats = layer.stats == "batch"
        xf = _flat(x)

        # Centre of the input (per sample, or over the batch for stats="batch"): statistics of x - cx keep their
        # precision when |mean| >> std. The layout logits w x + b become [b + w cx | w] @ [1; x - cx].
        cx = xf.mean(dim=(0, 2) if batch_stats else 2, keepdim=True, dtype=dt)  # (B|1, C, 1)
        windows = None
        if positions is not None:
            index = _window_index(positions, h, w).unsqueeze(1).expand(-1, c, -1)
            windows = xf.gather(2, index).to(dt)  # (B, C, 4n)
        wl, bl = layer._layout_affine(p, windows, dt)  # (B|1, n, C), (B|1, n)
        bl = bl.unsqueeze(2) + torch.matmul(wl, cx)  # (B|1, n, 1)
        wlb = torch.cat([bl, wl.expand(bl.shape[0], -1, -1)], dim=2).contiguous()  # (B|1, n, 1 + C)
        wv = p["value.weight"].view(c, c).to(dt) if "value.weight" in p else None
        # What gets normalised is v = x (the paper) or W_v x + b_v; its centre, and v_c = v - center = W_v (x - cx).
        center = cx if wv is None else torch.matmul(wv, cx) + p["value.bias"].to(dt)[None, :, None]

        # Pass 1: the layout and the moments [mass; sum S v_c; sum S v_c^2]; then the (C, n) coefficients.
        s = torch.empty(b, n, hw, dtype=dt, device=x.device)
        moments = passes.layout_and_moments(xf, cx, wlb, wv, s, not batch_stats or layer.training)
        coeffs, mean, var = passes.coefficients(layer, p, moments, center, dt)  # [gain; offset] (B|1, 2C, n)

        # Pass 2: out = x + v_c * (gain @ S) + offset @ S.
        out = _empty_like(x)
        passes.output(xf, s, cx, wv, coeffs, _flat(out))

        stats = torch.cat([mean + center, var], dim=1) if batch_stats and layer.training else s.new_empty(0)
        ctx.layer, ctx.names, ctx.passes = layer, names, passes
        ctx.mark_non_differentiable(s, stats)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, s, positions, windows, moments, cx, center, *values)
        return out, s, stats

    @staticmethod
    def backward(ctx, grad_out, _grad_layout, _grad_stats):
        x, s, positions, windows, moments, cx, center, *values = ctx.saved_tensors
        if grad_out is None:
            return (None,) * (5 + len(values))
        with torch.autocast(device_type=x.device.type, enabled=False):
            if torch.is_grad_enabled():  # create_graph=True: differentiate the reference implementation
                grads = _reference_backward(ctx, grad_out, x, positions, values)
            else:
                grads = _fused_backward(ctx, grad_out, x, s, positions, windows, moments, cx, center, values)
        return (None, grads[0], None, None, None, *grads[1:])


def _reference_backward(ctx, grad_out: Tensor, x: Tensor, positions: Tensor | None, values: list[Tensor]) -> list:
    inputs = [x, *values]
    wanted = [t for t, need in zip(inputs, ctx.needs_input_grad[1:2] + ctx.needs_input_grad[5:], strict=True) if need]
    out, _, _ = ctx.layer._forward_reference(x, dict(zip(ctx.names, values, strict=True)), positions)
    found = iter(torch.autograd.grad(out, wanted, grad_out, create_graph=True, allow_unused=True))
    return [next(found) if any(t is w for w in wanted) else None for t in inputs]


def _fused_backward(ctx, grad_out, x, s, positions, windows, moments, cx, center, values) -> list:
    layer, names, passes = ctx.layer, ctx.names, ctx.passes
    b, c, h, w = x.shape
    n, dt = layer.num_entities, s.dtype
    xf, gf = _flat(x), _flat(grad_out)
    wv = values[names.index("value.weight")].detach().view(c, c).to(dt) if "value.weight" in names else None

    # The two small steps again, with autograd, on detached leaves: layout map (w, b) and coefficients.
    leaves = {k: v.detach().requires_grad_(v.requires_grad) for k, v in zip(names, values, strict=True)}
    win_leaf = windows.detach().requires_grad_(True) if windows is not None else None
    mom_leaf = moments.detach().requires_grad_(True) if moments is not None else None
    with torch.enable_grad():
        wl_g, bl_g = layer._layout_affine(leaves, win_leaf, dt)
        gain_g, offset_g, _, _ = layer._coefficients(leaves, mom_leaf, center, dt)
    wl, gain, offset = wl_g.detach(), gain_g.detach(), offset_g.detach()

    # Backward pass 1: d gain = sum_p (g * v_c) S^T, d offset = sum_p g S^T; then through the coefficients.
    dgo = passes.output_gradient_moments(gf, xf, s, cx, wv)
    if gain.shape[0] == 1:
        dgo = dgo.sum(0, keepdim=True)
    param_grads: dict[str, Tensor] = {}
    coef_names = [k for k in ("beta", "alpha", "rho") if k in leaves and leaves[k].requires_grad]
    coef_inputs = ([mom_leaf] if mom_leaf is not None else []) + [leaves[k] for k in coef_names]
    coef_grads = _grad([gain_g, offset_g], coef_inputs, dgo.split(c, dim=1))
    dmom = coef_grads.pop(0) if mom_leaf is not None else None
    dmom = torch.zeros(b, 1 + 2 * c, n, dtype=dt, device=x.device) if dmom is None else dmom
    param_grads.update(zip(coef_names, coef_grads, strict=True))

    # Backward pass 2: dS = [dm; dT; dQ; gain; offset]^T [1; v_c; v_c^2; g v_c; g], softmax backward,
    # d v_c = g * (gain @ S) + dT @ S + 2 v_c * (dQ @ S) (plus g, for the residual, when v = x), the input gradient.
    _, dT, dQ = dmom.split([1, c, c], dim=1)  # (B, C, n) each
    gain, offset = gain.expand(b, -1, -1), offset.expand(b, -1, -1)
    pu = torch.cat([dmom, gain, offset], dim=1).transpose(1, 2).contiguous()  # (B, n, 1 + 4C)
    h3 = torch.cat([gain + 1.0 if wv is None else gain, dT, 2.0 * dQ], dim=1).contiguous()  # (B, 3C, n); sum S = 1
    dx = _empty_like(x)
    dxf = _flat(dx)
    dwlb, dwv, dvsum = passes.input_gradient(gf, xf, s, cx, wv, pu, h3, wl.transpose(1, 2), dxf)

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
        weight = values[names.index("value.weight")]
        param_grads["value.weight"] = dwv.view_as(weight).to(weight.dtype)
        param_grads["value.bias"] = dvsum.sum(0).to(weight.dtype)
    return [dx, *(param_grads.get(k) for k in names)]
