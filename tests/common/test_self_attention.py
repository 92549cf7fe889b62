"""Tests for the SA-GAN self-attention baseline (``common.layers.SelfAttention2d``)."""

import pytest
import torch

from common.layers.self_attention import SelfAttention2d


def _naive_self_attention(layer: SelfAttention2d, x: torch.Tensor) -> torch.Tensor:
    """SAGAN block written out position by position (float64), independent of the layer's bmm form."""
    x = x.double()
    wq = layer.query.weight.double()[:, :, 0, 0]
    wk = layer.key.weight.double()[:, :, 0, 0]
    wv = layer.value.weight.double()[:, :, 0, 0]
    wo = layer.out.weight.double()[:, :, 0, 0]
    gamma = layer.gamma.double()
    b, c, h, w = x.shape
    hp, wp = h // 2, w // 2
    out = torch.empty_like(x)
    for n in range(b):
        # pooled keys / values: max over each 2x2 window of the 1x1-convolved maps
        keys, values = [], []
        for i in range(hp):
            for j in range(wp):
                window = x[n, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].reshape(c, 4)
                keys.append((wk @ window).amax(dim=1))
                values.append((wv @ window).amax(dim=1))
        keys = torch.stack(keys)  # (M, C/8)
        values = torch.stack(values)  # (M, C/2)
        for y in range(h):
            for z in range(w):
                q = wq @ x[n, :, y, z]
                logits = keys @ q
                weights = torch.exp(logits - logits.max())
                weights = weights / weights.sum()
                attended = (weights[:, None] * values).sum(dim=0)
                out[n, :, y, z] = x[n, :, y, z] + gamma * (wo @ attended)
    return out


class TestSelfAttention2d:
    def test_smoke(self, device):
        layer = SelfAttention2d(16).to(device)
        x = torch.randn(2, 16, 8, 8, device=device)
        y = layer(x)
        assert y.shape == x.shape
        assert y.dtype == x.dtype
        assert y.device == x.device
        assert "16" in repr(layer)

    @pytest.mark.parametrize(("channels", "qk", "v"), [(32, 4, 16), (8, 1, 4), (4, 1, 2), (1, 1, 1)])
    def test_cardinality(self, channels, qk, v):
        layer = SelfAttention2d(channels)
        assert layer.query.out_channels == qk
        assert layer.key.out_channels == qk
        assert layer.value.out_channels == v
        assert layer.out.in_channels == v
        assert layer.out.out_channels == channels
        for shape in [(1, channels, 2, 2), (3, channels, 5, 7), (2, channels, 6, 4)]:
            assert layer(torch.randn(*shape)).shape == shape

    def test_identity_at_init(self):
        layer = SelfAttention2d(8)
        assert layer.gamma.item() == 0.0
        x = torch.randn(2, 8, 6, 6)
        torch.testing.assert_close(layer(x), x, rtol=0, atol=0)

    @pytest.mark.parametrize("shape", [(2, 8, 4, 6), (1, 16, 5, 3)])
    def test_feature_matches_naive_reference(self, shape):
        torch.manual_seed(0)
        layer = SelfAttention2d(shape[1]).double()
        with torch.no_grad():
            layer.gamma.fill_(0.7)
        x = torch.randn(*shape, dtype=torch.float64)
        expected = _naive_self_attention(layer, x)
        torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
        # the gate really matters: a different gamma gives a different output
        assert not torch.allclose(expected, x)

    def test_gamma_receives_gradient_at_init(self):
        layer = SelfAttention2d(8)
        layer(torch.randn(2, 8, 4, 4)).square().sum().backward()
        assert layer.gamma.grad is not None
        assert layer.gamma.grad.abs().item() > 0

    def test_gradcheck(self):
        torch.manual_seed(0)
        layer = SelfAttention2d(4).double()
        with torch.no_grad():
            layer.gamma.fill_(0.5)
        x = torch.randn(1, 4, 4, 4, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(layer, (x,), fast_mode=True)

    def test_exception(self):
        layer = SelfAttention2d(8)
        with pytest.raises(ValueError, match="4-D"):
            layer(torch.randn(8, 4, 4))
        with pytest.raises(ValueError, match="8 channels"):
            layer(torch.randn(1, 4, 4, 4))
        with pytest.raises(ValueError, match="at least 2"):
            layer(torch.randn(1, 8, 1, 4))
        with pytest.raises(ValueError, match="num_features"):
            SelfAttention2d(0)
