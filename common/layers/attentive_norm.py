"""Attentive Normalization (AN).

Wang, Yi; Chen, Ying-Cong; Zhang, Xiangyu; Sun, Jian; Jia, Jiaya. "Attentive Normalization for Conditional
Image Generation", CVPR 2020, https://arxiv.org/abs/2004.03828.

AN learns a soft semantic layout ``S`` of ``n`` regions from the features themselves (a 1x1 convolution of
``n`` "semantic entities", regularised during training by a self-sampling branch) and normalises every
region with its own soft-weighted statistics (regional instance normalisation), so that distant pixels of
the same region share statistics: long-range dependency at the cost of a normalisation layer.

This module follows the paper's formulation (Section 3, eq. 1-6), with the points the paper leaves open fixed as
below, not the authors' TF code. Departures from that code, on purpose:

* the normalised tensor is the input itself (no value convolution), with optional per-region affine;
  ``value_projection=True`` restores the authors' value branch (a 1x1 convolution ``v(X)`` of C channels is what
  gets normalised, the layout still comes from ``X``, and the output is ``X + rho * X_bar(v(X))``);
* the region mean is a true soft-weighted mean and the variance a soft-weighted variance (``numerics="authors"``
  restores theirs: :mod:`common.layers.attentive_norm_authors`);
* ``t`` is not clipped; one set of sampled positions is drawn per sample, not per batch;
* the orthogonality term is the squared Frobenius norm ``||W W^T - I||_F^2`` (never negative);
* in eval mode the self-sampling branch is switched off (``t = 0``), so the output is deterministic.

Efficient form: the weighted first and second moments are two batched matrix products and the output is
``X * (scale @ S) + (shift @ S)``; no ``(B, C, n, H, W)`` tensor is ever built, so time and memory are
``O(B * H * W * n * C)`` and ``O(B * H * W * (C + n))``. Statistics are computed in float32 (float64 for
float64 inputs) even under autocast, on inputs shifted by their per-channel mean for precision.

Implementations (``implementation=``, same values and gradients): the plain tensor operations here
(``"reference"``), and a fused autograd function (:mod:`common.layers.attentive_norm_fused`) whose four full-size
passes run over cache-sized chunks in torch operations (``"fused"``, any device,
:mod:`common.layers.attentive_norm_chunked`) or as Triton kernels (``"triton"``, CUDA, opt-in) and whose backward
recomputes instead of storing full-size intermediates. ``"auto"`` picks only paths that have run on their hardware
against the reference: see :class:`AttentiveNorm2d`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.layers.attentive_norm_authors import authors_coefficients, check_numerics
from common.layers.attentive_norm_fused import attentive_norm_fused

__all__ = ["AttentiveNorm2d", "orthogonal_loss"]

_STATS = ("instance", "batch")
_IMPLEMENTATIONS = ("auto", "fused", "triton", "reference")
# implementation="auto" uses the fused path on the CPU from this many input elements on (B*C*H*W). Measured with
# `python -m benchmarks.layers --threads 2` (2-core AMD EPYC VM, 2026-12, C 32, n 16, batch 1), fused vs reference:
# forward + backward 6.0 vs 5.7 ms at 64^2 (2^17), 11.0 vs 11.1 at 128^2 (2^19), 45 vs 74 at 256^2 (2^21), 127 vs 346
# at 512^2; eval forward 19.2 vs 15.9 ms at 256^2, 48 vs 105 at 512^2. Training time dominates, so the switch sits
# between 2^19 and 2^21.
FUSED_MIN_ELEMENTS = 1 << 20


class AttentiveNorm2d(nn.Module):
    """Attentive Normalization for 4-D feature maps (paper Section 3, eq. 1-6).

    Args:
        num_features: channels ``C`` of the input.
        num_entities: number of semantic entities / regions ``n`` (paper default 16; Table 4 uses 8 and 32).
        temperature: ``tau`` of the layout softmax ``softmax(tau * S_raw)`` (paper default 0.1).
        self_sampling: use the self-sampling regularisation branch during training. ``False`` is the
            "w/o SSR" ablation: the branch is never computed and its parameters (``key``, ``query``, ``t``)
            are frozen (``requires_grad=False``) so that DDP does not wait for their gradients.
        affine: learn per-region ``beta`` (scale, init 1) and ``alpha`` (shift, init 0) of shape ``(n, C)``.
        stats: ``"instance"`` (regional instance normalisation, the paper's model) or ``"batch"`` (the
            "AN w BN" ablation: statistics pooled over the batch as well as the region; running averages
            with momentum 0.1 are tracked and used in eval mode, like BatchNorm).
        eps: the ``eps`` of the spec, added to the region mass and to the standard deviation.
        value_projection: normalise a 1x1-convolution "value" ``v(X)`` (C -> C, with bias) instead of ``X``
            itself, as the authors' TF code does (its inpainting model); the layout is computed from ``X`` and the
            output is ``X + rho * X_bar(v(X))``. Off by default (the paper's eq. 5-6 normalise ``X``).
        implementation: how the layer is computed; every choice gives the same values and gradients.
            ``"reference"``: plain tensor operations with autograd through each (any device; what ``torch.compile``
            traces best). ``"fused"``: the regional statistics and the output in four passes over cache-sized chunks
            of the input in torch operations, with a backward that recomputes instead of storing full-size
            intermediates (:mod:`common.layers.attentive_norm_fused`, any device; tested on the CPU). ``"triton"``:
            the same four passes as Triton kernels (CUDA; :mod:`common.layers.attentive_norm_triton`). ``"auto"``
            (default) uses only paths that have run on their hardware against the reference: on the CPU ``"fused"``
            for inputs of at least ``FUSED_MIN_ELEMENTS`` (2^20) elements and ``"reference"`` below (where the fused
            path's fixed cost dominates); on CUDA (and any other device) ``"reference"``, since the Triton kernels
            have so far run only in Triton's CPU interpreter: choose ``"triton"`` explicitly once
            ``benchmarks/gpu_check.sh`` has passed on your GPU; ``"reference"`` while ``torch.compile`` or a
            ``torch.func`` transform traces the layer.
        numerics: ``"paper"`` (default: eq. 5-6 as the spec above) or ``"authors"``: the regional statistics of the
            authors' released TF layer (:mod:`common.layers.attentive_norm_authors`: their mean is the weighted mean
            over ``H*W``, their std the spread of the layout-weighted values, so the layer scales by a regional RMS
            without centring) and entities initialised from N(0, 1) as theirs. Reference implementation only
            (``"auto"`` picks it; ``"fused"`` / ``"triton"`` refuse it) and ``stats="instance"`` only.
    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``, same dtype as the input.

    Attributes:
        layout: the last soft layout ``S``, ``(B, n, H, W)``, detached (``None`` before the first call).

    Example:
        >>> layer = AttentiveNorm2d(32, num_entities=16)
        >>> layer(torch.randn(2, 32, 16, 16)).shape
        torch.Size([2, 32, 16, 16])
        >>> layer.layout.shape
        torch.Size([2, 16, 16, 16])
    """

    layout: Tensor | None

    def __init__(
        self,
        num_features: int,
        num_entities: int = 16,
        temperature: float = 0.1,
        self_sampling: bool = True,
        affine: bool = True,
        stats: str = "instance",
        eps: float = 1e-5,
        value_projection: bool = False,
        implementation: str = "auto",
        numerics: str = "paper",
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if num_entities < 2:
            raise ValueError(f"num_entities must be >= 2 (a layout of one region is instance norm), got {num_entities}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if stats not in _STATS:
            raise ValueError(f"stats must be one of {_STATS}, got {stats!r}")
        if implementation not in _IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {_IMPLEMENTATIONS}, got {implementation!r}")
        check_numerics(numerics, stats, implementation)
        self.numerics = numerics
        self.num_features = num_features
        self.num_entities = num_entities
        self.temperature = temperature
        self.self_sampling = self_sampling
        self.affine = affine
        self.stats = stats
        self.eps = eps
        self.value_projection = value_projection
        self.implementation = implementation
        hidden = max(num_features // 8, 1)

        self.entities = nn.Conv2d(num_features, num_entities, kernel_size=1, bias=False)
        self.key = nn.Conv2d(num_features, hidden, kernel_size=1)
        self.query = nn.Conv2d(num_features, hidden, kernel_size=1)
        self.t = nn.Parameter(torch.full((num_entities,), 0.1))
        self.value = nn.Conv2d(num_features, num_features, kernel_size=1) if value_projection else None
        if affine:
            self.beta = nn.Parameter(torch.ones(num_entities, num_features))
            self.alpha = nn.Parameter(torch.zeros(num_entities, num_features))
        else:
            self.register_parameter("beta", None)
            self.register_parameter("alpha", None)
        self.rho = nn.Parameter(torch.zeros(()))
        if stats == "batch":
            self.momentum = 0.1
            self.register_buffer("running_mean", torch.zeros(num_entities, num_features))
            self.register_buffer("running_var", torch.ones(num_entities, num_features))
        if not self_sampling:
            for p in (*self.key.parameters(), *self.query.parameters(), self.t):
                p.requires_grad_(False)
        if numerics == "authors":
            nn.init.normal_(self.entities.weight, 0.0, 1.0)  # their mask_filters: tf.random_normal, stddev 1
        self.layout = None

    def extra_repr(self) -> str:
        """The constructor settings for ``repr``."""
        return (
            f"{self.num_features}, num_entities={self.num_entities}, temperature={self.temperature}, "
            f"self_sampling={self.self_sampling}, affine={self.affine}, stats={self.stats!r}, eps={self.eps}"
            + (", value_projection=True" if self.value_projection else "")
            + (f", numerics={self.numerics!r}" if self.numerics != "paper" else "")
        )

    def orthogonal_loss(self) -> Tensor:
        """Orthogonality of the entities ``W`` ``(n, C)``: the scalar ``||W W^T - I||_F^2`` (eq. 1, unweighted)."""
        weight = self.entities.weight.flatten(1)  # (n, C)
        gram = weight @ weight.t()
        eye = torch.eye(self.num_entities, dtype=gram.dtype, device=gram.device)
        return (gram - eye).pow(2).sum()

    # ------------------------------------------------------------------ shared pieces
    def sample_positions(self, batch: int, num_pooled: int, device: torch.device) -> Tensor:
        """Draw ``n`` distinct pooled positions per sample, uniformly: ``rand(B, P).topk(n).indices``.

        Uses the global torch generator on ``device``; tests reproduce the draw by re-seeding.
        """
        return torch.rand(batch, num_pooled, device=device).topk(self.num_entities, dim=1).indices

    def _draw_positions(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        num_pooled = (h // 2) * (w // 2)
        if num_pooled < self.num_entities:
            raise ValueError(
                f"AttentiveNorm2d samples {self.num_entities} positions from the 2x2 max-pooled key map, but an input "
                f"of spatial size {(h, w)} has only {num_pooled} pooled positions; use a larger feature map, fewer "
                "entities, or self_sampling=False"
            )
        return self.sample_positions(b, num_pooled, device)

    def _tensors(self) -> dict[str, Tensor]:
        """The learnable tensors by name (``entities``, ``key.weight``, ..., ``rho``); absent ones left out."""
        p = {"entities": self.entities.weight, "t": self.t, "rho": self.rho}
        for name in ("key", "query", "value"):
            conv = getattr(self, name)
            if conv is not None:
                p[f"{name}.weight"], p[f"{name}.bias"] = conv.weight, conv.bias
        if self.beta is not None:
            p["beta"], p["alpha"] = self.beta, self.alpha
        return p

    def _coefficients(
        self, p: dict[str, Tensor], moments: Tensor | None, center: Tensor, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-region gain ``rho * scale`` and offset ``rho * shift`` from the regional moments, ``(B|1, C, n)`` each.

        ``moments`` is ``(B, 1 + 2C, n)``: the region mass ``sum_p S``, ``sum_p S v_c`` and ``sum_p S v_c^2``
        (``v_c = v - center``); ``None`` in eval mode with ``stats="batch"`` (the running statistics are used).
        Also returns the centred mean and the variance (for the running averages). Exactly the spec's
        ``mu = sum S v / (sum S + eps)``, ``var = sum S (v - mu)^2 / (sum S + eps)``, ``scale = beta / (sigma + eps)``
        and ``shift = alpha - mu * scale``.
        """
        if moments is None:
            mean = self.running_mean.t().unsqueeze(0).to(dtype) - center  # (1, C, n), centred
            var = self.running_var.t().unsqueeze(0).to(dtype)
        else:
            c = self.num_features
            mass, s1, s2 = moments.split([1, c, c], dim=1)  # (B, 1, n), (B, C, n), (B, C, n)
            if self.stats == "batch":
                s1, s2, mass = s1.sum(0, keepdim=True), s2.sum(0, keepdim=True), mass.sum(0, keepdim=True)
            denom = mass + self.eps
            mean = (s1 - center * self.eps) / denom  # = (sum S v) / denom - center
            var = ((s2 - mean * (2.0 * s1 - mean * mass)) / denom).clamp_min(0.0)  # = sum S (v_c - mean)^2 / denom
        # Floor var at 1e-12 (std 1e-6, a tenth of eps) so that d sqrt / d var stays finite for constant input.
        scale = 1.0 / (var.clamp_min(1e-12).sqrt() + self.eps)
        if "beta" in p:
            scale = scale * p["beta"].t().to(dtype).unsqueeze(0)
        shift = -mean * scale
        if "alpha" in p:
            shift = shift + p["alpha"].t().to(dtype).unsqueeze(0)
        rho = p["rho"].to(dtype)
        return rho * scale, rho * shift, mean, var

    def _layout_affine(self, p: dict[str, Tensor], windows: Tensor | None, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``tau * S_raw = w @ x + b`` per sample, with ``w`` ``(B|1, n, C)`` and ``b`` ``(B|1, n)``.

        Eval mode (or ``self_sampling=False``): ``w = tau W``, ``b = 0``. With self-sampling, ``F = <k_i, q(x)>`` is
        linear in ``x`` for fixed sampled keys, ``tau t_i <k_i, W_q x + b_q>``, so it folds into ``w`` and ``b``.
        ``windows`` ``(B, C, 4n)`` holds the input pixels of each sampled position's 2x2 pooling window (row-major);
        the key there is the max over the window of ``W_k x + b_k``, which is 2x2 max-pooling at the sampled
        positions only.
        """
        n, c = self.num_entities, self.num_features
        w = (p["entities"].view(n, c).to(dtype) * self.temperature).unsqueeze(0)
        if windows is None:
            return w, w.new_zeros(1, n)
        b, d = windows.shape[0], self.key.out_channels
        keys = torch.matmul(p["key.weight"].view(d, c).to(dtype), windows).view(b, d, n, 4).max(dim=3).values
        filters = keys + p["key.bias"].to(dtype)[None, :, None]  # (B, d, n): the fast filters k(X)_i
        filters = (filters * (self.temperature * p["t"].to(dtype))[None, None, :]).transpose(1, 2)  # (B, n, d)
        w = w + torch.matmul(filters, p["query.weight"].view(d, c).to(dtype))
        return w, torch.matmul(filters, p["query.bias"].to(dtype))

    # ------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` ``(B, C, H, W)`` region by region (eq. 1-6); returns ``(B, C, H, W)``, same dtype.

        The soft layout ``S`` of this pass is kept (detached) in :attr:`layout`, ``(B, n, H, W)``, each pixel's weights
        summing to 1. Raises ``ValueError`` for a non-4-D input or a channel count other than ``num_features``.
        """
        if x.dim() != 4:
            raise ValueError(f"AttentiveNorm2d expects a 4-D input (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"AttentiveNorm2d was built for {self.num_features} channels, got an input with {x.shape[1]}"
            )
        b, c, h, w = x.shape
        positions = self._draw_positions(b, h, w, x.device) if self.training and self.self_sampling else None
        p = self._tensors()
        impl = self._resolve_implementation(x)
        if impl == "reference":
            out, s, stats = self._forward_reference(x, p, positions)
        else:
            backend = "triton" if impl == "triton" else "chunked"
            out, s, stats = attentive_norm_fused(self, x, p, positions, backend=backend)
        self.layout = s.detach().view(b, self.num_entities, h, w)
        if stats is not None:
            self._update_running_stats(*stats)
        return out

    def _resolve_implementation(self, x: Tensor) -> str:
        impl = self.implementation
        if impl not in _IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {_IMPLEMENTATIONS}, got {impl!r}")
        if self.numerics != "paper":
            check_numerics(self.numerics, self.stats, impl)
            return "reference"
        if impl == "triton" and not _triton_supports(x, self.num_entities):
            raise ValueError(
                "implementation='triton' needs a CUDA tensor (or TRITON_INTERPRET=1) of dtype float32, bfloat16 or "
                f"float16 with C <= 512 and n <= 64, and the triton package; got {x.dtype} on {x.device}, "
                f"C = {x.shape[1]}, n = {self.num_entities}"
            )
        if impl == "auto":
            # Under torch.compile / torch.func transforms the plain graph is traced and fused by the compiler; on
            # small CPU inputs the fused path's fixed cost (its backward differentiates two small graphs) dominates.
            if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
                return "reference"
            # The fused torch passes have run against the reference on the CPU only, the Triton kernels only in
            # Triton's interpreter: elsewhere "auto" keeps to the reference until they have run on that hardware.
            if x.device.type != "cpu" or x.numel() < FUSED_MIN_ELEMENTS:
                return "reference"
            return "fused"
        return impl

    # ------------------------------------------------------------ the reference implementation
    def _forward_reference(
        self, x: Tensor, p: dict[str, Tensor], positions: Tensor | None
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
        """The layer in plain differentiable tensor operations (autograd through each); the fused path's reference.

        Returns the output, the soft layout ``(B, n, H*W)`` and, when training with ``stats="batch"``, the pooled
        ``(mean, var)`` for the running averages.
        """
        b, c, h, w = x.shape
        stat_dtype = torch.promote_types(x.dtype, torch.float32)
        logits = self._layout_logits(x, p, positions)  # runs under autocast when enabled
        stats = None
        with torch.autocast(device_type=x.device.type, enabled=False):
            s = torch.softmax(logits.to(stat_dtype), dim=1)  # (B, n, HW)
            xf = x.flatten(2).to(stat_dtype)
            # vf is what gets normalised: x itself (the paper) or the authors' value projection v(x) (1x1 conv).
            vf = xf if self.value is None else self._project_value(xf, p)
            if self.numerics == "authors":  # not centred: their statistics are not shift-invariant
                gain, offset = authors_coefficients(vf, s, self.eps, p)
                g, o = torch.bmm(torch.cat([gain, offset], dim=1), s).split([c, c], dim=1)
                return (torch.addcmul(o, vf, g) + xf).view(b, c, h, w).to(x.dtype), s, None
            # Statistics of v - c0 with c0 the channel mean (per sample; over the batch for stats="batch"): second
            # moments of raw v lose precision when |mean| >> std. c0 cancels in (v - mu) exactly.
            center = vf.mean(dim=(0, 2) if self.stats == "batch" else (2,), keepdim=True).detach()  # (B|1, C, 1)
            vc = vf - center
            moments = None
            if self.stats == "instance" or self.training:
                st = s.transpose(1, 2)  # (B, HW, n)
                mass = s.sum(dim=2).unsqueeze(1)  # (B, 1, n)
                moments = torch.cat([mass, torch.bmm(vc, st), torch.bmm(vc * vc, st)], dim=1)
            gain, offset, mean, var = self._coefficients(p, moments, center, stat_dtype)  # (B|1, C, n)
            if self.stats == "batch" and self.training:
                stats = (mean + center, var)
            # AN(x) = x + rho * sum_i ((v - mu_i) scale_i + alpha_i) S_i = x + v_c * (gain @ S) + offset @ S.
            coeffs = torch.cat([gain, offset], dim=1)  # (B|1, 2C, n)
            g, o = torch.bmm(coeffs.expand(b, -1, -1), s).split([c, c], dim=1)  # (B, C, HW) each
            out = torch.addcmul(o, vc, g) + xf
        return out.view(b, c, h, w).to(x.dtype), s, stats

    def _layout_logits(self, x: Tensor, p: dict[str, Tensor], positions: Tensor | None) -> Tensor:
        """``tau * S_raw`` with ``S_raw = t * F + f(X)`` (training with self-sampling) or ``f(X)``: ``(B, n, H*W)``.

        The 1x1 convolutions are matrix products on the flattened input (much faster than 1x1 convolutions on
        CPU), with ``tau`` folded into the small weight matrices rather than applied to the full-size logits.
        With self-sampling, entities, key and query share one product; the key bias is added after pooling
        (max-pooling commutes with a per-channel constant) and the query bias becomes a per-entity constant.
        """
        b, c, h, w = x.shape
        xf = x.flatten(2)  # (B, C, HW)
        n = self.num_entities
        entities = p["entities"].view(n, c) * self.temperature
        if positions is None:
            return torch.matmul(entities.to(xf.dtype), xf)
        d = self.key.out_channels
        weight = torch.cat([entities, p["key.weight"].view(d, c), p["query.weight"].view(d, c)])
        f_x, keys, queries = torch.matmul(weight.to(xf.dtype), xf).split([n, d, d], dim=1)
        keys = F.max_pool2d(keys.reshape(b, d, h, w), kernel_size=2, stride=2).flatten(2)  # (B, d, P)
        filters = torch.gather(keys, 2, positions.unsqueeze(1).expand(-1, d, -1))  # (B, d, n), without the key bias
        filters = filters + p["key.bias"].to(filters.dtype)[None, :, None]  # the fast filters k(X)_i
        # tau * t_i * <k_i, q_j + b_q> = <tau t_i k_i, W_q x_j> + tau t_i <k_i, b_q>
        filters = filters * (self.temperature * p["t"].to(filters.dtype))[None, None, :]
        const = torch.matmul(filters.transpose(1, 2), p["query.bias"].to(filters.dtype))  # (B, n)
        return torch.baddbmm(f_x + const.unsqueeze(2), filters.transpose(1, 2), queries)

    def _project_value(self, xf: Tensor, p: dict[str, Tensor]) -> Tensor:
        """The authors' value branch ``v(X)`` on flattened input ``(B, C, HW)``, as a matrix product."""
        weight = p["value.weight"].view(self.num_features, self.num_features).to(xf.dtype)
        return torch.matmul(weight, xf) + p["value.bias"].to(xf.dtype)[None, :, None]

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor) -> None:
        """Exponential running averages of the batch-pooled regional statistics (``stats="batch"``)."""
        self.running_mean.lerp_(mean[0].t().to(self.running_mean.dtype), self.momentum)
        self.running_var.lerp_(var[0].t().to(self.running_var.dtype), self.momentum)


def _triton_supports(x: Tensor, num_entities: int) -> bool:
    """Whether the Triton kernels can run ``x`` (imported on first use: CPU-only installs need no triton)."""
    try:
        from common.layers import attentive_norm_triton
    except ImportError:
        return False
    return attentive_norm_triton.supported(x, num_entities)


def orthogonal_loss(module: nn.Module) -> Tensor:
    """Sum of :meth:`AttentiveNorm2d.orthogonal_loss` over every AN layer inside ``module`` (a 0-dim tensor).

    Returns a zero tensor (on the module's device) when ``module`` holds no AN layer, so callers can always
    add ``weight * orthogonal_loss(net)`` to a loss.
    """
    terms = [m.orthogonal_loss() for m in module.modules() if isinstance(m, AttentiveNorm2d)]
    if terms:
        return torch.stack(terms).sum()
    param = next(module.parameters(), None)
    return torch.zeros((), device=param.device if param is not None else None)
