"""``AttentiveNorm2d(numerics="authors")`` against a literal NumPy port of the authors' released layer.

The port below follows github.com/dvlab-research/AttenNorm ``inpaint-attnorm/net/network.py`` ``att_normalization``
line by line, in its (B, H, W, C, n) layout (``tf.tile``, ``reduce_mean`` / ``reduce_sum`` over H, W), from the
soft layout and the value features on: the layout and value come from our layer (its ``layout`` attribute and its
``value`` 1x1 convolution), since how they are produced is shared with the paper path and tested elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.layers import AttentiveNorm2d


def authors_att_norm_numpy(x: np.ndarray, xv: np.ndarray, layout: np.ndarray, sigma: float, eps: float) -> np.ndarray:
    """``att_normalization`` from the layout on; ``x``, ``xv`` ``(b, h, w, c)``, ``layout`` ``(b, h, w, n)``."""
    n = layout.shape[-1]
    layout_expand = np.expand_dims(layout, -2)  # b x h x w x 1 x n
    cnt = np.sum(layout_expand, axis=(1, 2), keepdims=True) + eps
    xv_expand = np.tile(np.expand_dims(xv, -1), [1, 1, 1, 1, n])  # b x h x w x c x n
    hot_area = xv_expand * layout_expand
    xv_mean = np.mean(hot_area, axis=(1, 2), keepdims=True) / cnt
    xv_std = np.sqrt(np.sum((hot_area - xv_mean) ** 2, axis=(1, 2), keepdims=True) / cnt)
    xn = np.sum((xv_expand - xv_mean) / (xv_std + eps) * layout_expand, axis=-1)
    return x + sigma * xn


def _authors_layer(channels: int = 16, **kwargs) -> AttentiveNorm2d:
    torch.manual_seed(0)
    layer = AttentiveNorm2d(channels, affine=False, value_projection=True, eps=1e-7, numerics="authors", **kwargs)
    with torch.no_grad():
        layer.rho.fill_(0.7)  # sigma, initialised to 0 in both
    return layer.double()


def _to_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("training", [False, True])
def test_authors_numerics_match_literal_port(training: bool) -> None:
    layer = _authors_layer().train(training)
    x = torch.randn(2, 16, 12, 10, dtype=torch.float64) * 1.5 + 0.8  # a non-zero mean: their layer does not centre
    out = layer(x)
    value = layer.value(x)
    expected = authors_att_norm_numpy(
        _to_nhwc(x), _to_nhwc(value), _to_nhwc(layer.layout), float(layer.rho.detach()), 1e-7
    )
    np.testing.assert_allclose(_to_nhwc(out), expected, rtol=1e-9, atol=1e-9)
    # and it is not the paper's layer on the same weights
    paper = AttentiveNorm2d(16, affine=False, value_projection=True, eps=1e-7).double().train(training)
    paper.load_state_dict(layer.state_dict())
    torch.manual_seed(1)
    a = layer(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, paper(x), atol=1e-3)


def test_authors_numerics_gradients_and_float32() -> None:
    layer = _authors_layer().float().train()
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    layer(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and layer.entities.weight.grad.abs().sum() > 0
    layer.eval()
    x64 = x.detach().double()
    out32 = layer.float()(x.detach())
    out64 = layer.double()(x64)
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-4)


def test_authors_numerics_initialise_entities_from_standard_normal() -> None:
    torch.manual_seed(0)
    authors = AttentiveNorm2d(64, numerics="authors").entities.weight
    paper = AttentiveNorm2d(64).entities.weight
    assert 0.9 < float(authors.std()) < 1.1  # tf.random_normal (stddev 1), 1024 draws
    assert float(paper.std()) < 0.2  # PyTorch's default 1x1 convolution init, 1 / sqrt(3 C)


def test_authors_numerics_choose_and_refuse_implementations() -> None:
    layer = AttentiveNorm2d(32, numerics="authors")
    big = torch.randn(1, 32, 256, 256)  # "auto" would pick the fused path on the CPU at this size
    assert layer._resolve_implementation(big) == "reference"
    for impl in ("fused", "triton"):
        with pytest.raises(ValueError, match="reference path only"):
            AttentiveNorm2d(32, numerics="authors", implementation=impl)
    layer.implementation = "fused"
    with pytest.raises(ValueError, match="reference path only"):
        layer(torch.randn(1, 32, 8, 8))
    with pytest.raises(ValueError, match="stats='instance'"):
        AttentiveNorm2d(32, numerics="authors", stats="batch")
    with pytest.raises(ValueError, match="numerics must be one of"):
        AttentiveNorm2d(32, numerics="tf")
    assert "numerics='authors'" in repr(AttentiveNorm2d(32, numerics="authors"))
