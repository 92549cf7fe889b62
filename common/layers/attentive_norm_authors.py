"""The regional statistics of the AN authors' released TF layer (``AttentiveNorm2d(numerics="authors")``).

Source: github.com/dvlab-research/AttenNorm, ``inpaint-attnorm/net/network.py``, ``att_normalization``. With the
soft layout ``S`` ``(B, H, W, n)``, the value ``v`` ``(B, H, W, C)`` and ``eps`` (1e-7 there), that function computes,
per sample ``b``, channel ``c`` and region ``i`` (sums over the ``H*W`` positions ``p``)::

    cnt_i  = sum_p S_i(p) + eps
    m_ci   = reduce_mean_p(S_i(p) v_c(p)) / cnt_i        = sum_p S_i v_c / (H W cnt_i)
    std_ci = sqrt(sum_p (S_i(p) v_c(p) - m_ci)^2 / cnt_i)
    xn_c   = sum_i (v_c - m_ci) / (std_ci + eps) * S_i
    out    = x + sigma * xn

so ``m`` is the soft-weighted mean divided once more by ``H*W`` (close to 0: the layer does not centre) and ``std``
is the spread of the *layout-weighted* values ``S_i v`` over all ``H*W`` positions, inside and outside the region
(about the regional root mean square of ``v``, weighted by ``S_i^2 / sum S_i``). Exactly this is ported, including
``eps`` in both places; the only change is a floor of 1e-12 on the variance under the square root (so that its
gradient stays finite for constant input). The per-region affine (off in the authors' layer) applies as in the paper
path when on: ``((v - m) / (std + eps) * beta + alpha) * S``. The rest of the authors' layer (their value projection,
``n = 16``, ``tau = 1 / 10``, entities drawn from N(0, 1)) is set by :class:`common.layers.AttentiveNorm2d`'s other
arguments and ``numerics="authors"`` (the N(0, 1) initialisation); their other departures (``t`` clipped to
[0, 1], one sampled set per batch, sampling from the unpooled key map, a signed orthogonality sum, sampling kept on
at test time) are not reproduced.

Cost: the moments are three batched matrix products, ``(C x HW)(HW x n)``, like the paper path; no
``(B, H, W, C, n)`` tensor is built.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["NUMERICS", "authors_coefficients", "check_numerics"]

#: ``AttentiveNorm2d(numerics=...)``: the paper's eq. 5-6 (the default) or the authors' released statistics.
NUMERICS: tuple[str, ...] = ("paper", "authors")


def authors_coefficients(v: Tensor, s: Tensor, eps: float, p: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Per-region gain and offset ``(B, C, n)`` of the authors' statistics: ``out = x + v * (gain @ S) + offset @ S``.

    Args:
        v: the normalised features ``(B, C, HW)`` (the input or its value projection), float32 or float64.
        s: the soft layout ``(B, n, HW)``, same dtype.
        eps: the layer's ``eps`` (the authors': 1e-7).
        p: the layer's tensors by name (``rho``, and ``beta`` / ``alpha`` when affine).
    """
    hw = s.shape[2]
    dtype = v.dtype
    cnt = s.sum(dim=2).unsqueeze(1) + eps  # (B, 1, n)
    st = s.transpose(1, 2)  # (B, HW, n)
    s1 = torch.bmm(v, st)  # sum_p S v        (B, C, n)
    s2 = torch.bmm(v * v, st * st)  # sum_p S^2 v^2   (B, C, n)
    mean = s1 / (hw * cnt)
    # sum_p (S v - m)^2 = sum S^2 v^2 - 2 m sum S v + H W m^2
    var = ((s2 - mean * (2.0 * s1 - hw * mean)) / cnt).clamp_min(1e-12)
    scale = 1.0 / (var.sqrt() + eps)
    if "beta" in p:
        scale = scale * p["beta"].t().to(dtype).unsqueeze(0)
    shift = -mean * scale
    if "alpha" in p:
        shift = shift + p["alpha"].t().to(dtype).unsqueeze(0)
    rho = p["rho"].to(dtype)
    return rho * scale, rho * shift


def check_numerics(numerics: str, stats: str, implementation: str) -> None:
    """Raise ``ValueError`` for an unknown ``numerics`` or one the other settings cannot run."""
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {NUMERICS}, got {numerics!r}")
    if numerics == "authors" and stats != "instance":
        raise ValueError("numerics='authors' (the authors' released statistics) needs stats='instance'")
    if numerics == "authors" and implementation not in ("auto", "reference"):
        raise ValueError(
            f"numerics='authors' is implemented in the reference path only: use implementation='reference' or 'auto', "
            f"not {implementation!r}"
        )
