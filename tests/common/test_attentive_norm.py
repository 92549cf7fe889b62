"""Tests for ``common.layers.AttentiveNorm2d`` against a naive float64 reference of the layer spec.

The reference below is written from the paper's Section 3 (eq. 1-6) with the choices ``common.layers.attentive_norm``
documents (true weighted mean and variance, squared Frobenius orthogonality, self-sampling off in eval mode), with
explicit loops over the regions and pooling windows; it shares no code with the layer. In train mode the layer draws
its sampled positions through ``AttentiveNorm2d.sample_positions``; the tests wrap that method to record (or fix) the
draw and give the same positions to the reference.
"""

import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from common.layers import attentive_norm_chunked
from common.layers.an_inspection import an_rho, collect_layouts
from common.layers.attentive_norm import AttentiveNorm2d, orthogonal_loss

# ---------------------------------------------------------------------------------------------------------------
# Naive reference of the spec


def _conv1x1(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    out = torch.einsum("oc,bchw->bohw", weight[:, :, 0, 0], x)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


def _maxpool2x2_flat(k: torch.Tensor) -> torch.Tensor:
    """(B, d, H, W) -> (B, d, P), P = (H//2)*(W//2) in row-major order, max over each 2x2 window."""
    b, d, h, w = k.shape
    hp, wp = h // 2, w // 2
    out = torch.empty(b, d, hp * wp, dtype=k.dtype)
    for i in range(hp):
        for j in range(wp):
            window = k[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].reshape(b, d, 4)
            out[:, :, i * wp + j] = window.amax(dim=2)
    return out


def naive_attentive_norm(
    layer: AttentiveNorm2d, x: torch.Tensor, positions: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spec steps 1-7 in float64. ``positions``: (B, n) sampled pooled positions, or None (no self-sampling).

    Returns (output, soft layout S of shape (B, n, H, W)).
    """
    x = x.detach().double()
    b, c, h, w = x.shape
    n = layer.num_entities
    eps = layer.eps
    tau = layer.temperature
    f = _conv1x1(layer.entities.weight.detach().double(), None, x)  # step 1: (B, n, H, W)
    s_raw = f.clone()
    if positions is not None:  # step 3-4: F from the sampled pooled keys and the queries
        keys = _conv1x1(layer.key.weight.detach().double(), layer.key.bias.detach().double(), x)
        queries = _conv1x1(layer.query.weight.detach().double(), layer.query.bias.detach().double(), x)
        pooled = _maxpool2x2_flat(keys)
        t = layer.t.detach().double()
        for bi in range(b):
            for i in range(n):
                kvec = pooled[bi, :, positions[bi, i]]  # (d,)
                fmap = (kvec[:, None, None] * queries[bi]).sum(dim=0)  # (H, W)
                s_raw[bi, i] = t[i] * fmap + f[bi, i]
    # step 5: softmax over the entities of tau * S_raw
    logits = tau * s_raw
    expd = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    s = expd / expd.sum(dim=1, keepdim=True)
    x_in = x
    if layer.value is not None:  # the authors' value branch: normalise v(x), layout from x, add to x
        x = _conv1x1(layer.value.weight.detach().double(), layer.value.bias.detach().double(), x_in)
    beta = layer.beta.detach().double() if layer.beta is not None else torch.ones(n, c, dtype=torch.float64)
    alpha = layer.alpha.detach().double() if layer.alpha is not None else torch.zeros(n, c, dtype=torch.float64)
    x_bar = torch.zeros_like(x)
    for i in range(n):  # step 6: regional normalisation, one region at a time
        si = s[:, i : i + 1]  # (B, 1, H, W)
        if layer.stats == "batch":
            mass = si.sum(dim=(0, 2, 3), keepdim=True)  # (1, 1, 1, 1)
            mu = (si * x).sum(dim=(0, 2, 3), keepdim=True) / (mass + eps)  # (1, C, 1, 1)
            var = (si * (x - mu) ** 2).sum(dim=(0, 2, 3), keepdim=True) / (mass + eps)
        else:
            mass = si.sum(dim=(2, 3), keepdim=True)  # (B, 1, 1, 1)
            mu = (si * x).sum(dim=(2, 3), keepdim=True) / (mass + eps)  # (B, C, 1, 1)
            var = (si * (x - mu) ** 2).sum(dim=(2, 3), keepdim=True) / (mass + eps)
        normed = (x - mu) / (torch.sqrt(var) + eps) * beta[i][None, :, None, None] + alpha[i][None, :, None, None]
        x_bar = x_bar + normed * si
    rho = layer.rho.detach().double()
    return rho * x_bar + x_in, s  # step 7


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _randomize(layer: AttentiveNorm2d, seed: int = 0, entity_scale: float = 4.0) -> AttentiveNorm2d:
    """Non-trivial parameters: rho != 0 (else AN is the identity), random t, beta, alpha, sharp layouts."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.rho.fill_(0.8)
        layer.t.copy_(torch.rand(layer.t.shape, generator=gen) * 2.0 + 0.5)
        layer.entities.weight.mul_(entity_scale)
        for conv in (layer.key, layer.query):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.3)
        if layer.beta is not None:
            layer.beta.copy_(torch.rand(layer.beta.shape, generator=gen) + 0.5)
            layer.alpha.copy_(torch.randn(layer.alpha.shape, generator=gen) * 0.5)
    return layer


class _RecordPositions:
    """Wraps ``layer.sample_positions`` (instance attribute) to keep the positions of the last draw."""

    def __init__(self, layer: AttentiveNorm2d, fixed: torch.Tensor | None = None) -> None:
        self.original = layer.sample_positions
        self.fixed = fixed
        self.last: torch.Tensor | None = None
        self.calls = 0
        layer.sample_positions = self

    def __call__(self, batch: int, num_pooled: int, device: torch.device) -> torch.Tensor:
        self.calls += 1
        self.last = self.fixed.to(device) if self.fixed is not None else self.original(batch, num_pooled, device)
        return self.last


IMPLS = pytest.mark.parametrize("impl", ["fused", "reference"])


def _set_chunk(monkeypatch, elements: int) -> None:
    """Chunks of ``elements`` input elements in the fused path, whatever the thread count."""
    monkeypatch.setattr(attentive_norm_chunked, "_chunk_elements", lambda device: elements)


def _make(c=8, n=4, seed=0, **kwargs) -> AttentiveNorm2d:
    torch.manual_seed(seed)
    return _randomize(AttentiveNorm2d(c, num_entities=n, **kwargs), seed=seed)


# ---------------------------------------------------------------------------------------------------------------


class TestAttentiveNorm2d:
    def test_smoke(self, device):
        layer = AttentiveNorm2d(16, num_entities=4).to(device)
        for dtype in (torch.float32, torch.float64):
            layer = layer.to(dtype)
            x = torch.randn(2, 16, 8, 8, device=device, dtype=dtype)
            for mode in (True, False):
                layer.train(mode)
                y = layer(x)
                assert y.shape == x.shape
                assert y.dtype == dtype
                assert y.device == x.device
        assert "num_entities=4" in repr(layer)

    def test_parameters_and_init(self):
        layer = AttentiveNorm2d(32)
        assert layer.entities.weight.shape == (16, 32, 1, 1)
        assert layer.entities.bias is None
        assert layer.key.out_channels == 4
        assert layer.query.out_channels == 4
        assert AttentiveNorm2d(4, num_entities=2).key.out_channels == 1
        torch.testing.assert_close(layer.t, torch.full((16,), 0.1))
        torch.testing.assert_close(layer.beta, torch.ones(16, 32))
        torch.testing.assert_close(layer.alpha, torch.zeros(16, 32))
        assert layer.rho.shape == ()
        assert layer.rho.item() == 0.0
        no_affine = AttentiveNorm2d(32, affine=False)
        assert no_affine.beta is None
        assert no_affine.alpha is None

    def test_identity_at_init(self):
        layer = AttentiveNorm2d(8, num_entities=4)
        x = torch.randn(2, 8, 8, 8)
        torch.testing.assert_close(layer(x), x)

    @pytest.mark.parametrize(("shape", "n"), [((2, 8, 6, 6), 4), ((1, 16, 8, 6), 8), ((3, 4, 4, 5), 3)])
    def test_cardinality(self, shape, n):
        layer = AttentiveNorm2d(shape[1], num_entities=n)
        y = layer(torch.randn(*shape))
        assert y.shape == shape
        assert layer.layout.shape == (shape[0], n, shape[2], shape[3])

    # ----------------------------------------------------------------------------- values vs. the reference
    @IMPLS
    @pytest.mark.parametrize("affine", [True, False])
    def test_feature_eval_matches_reference(self, impl, affine):
        layer = _make(c=8, n=4, affine=affine, temperature=0.5, implementation=impl).double().eval()
        x = torch.randn(2, 8, 6, 5, dtype=torch.float64) * 2.0 + 0.7
        recorder = _RecordPositions(layer)
        y = layer(x)
        assert recorder.calls == 0  # eval mode: no self-sampling
        expected, s = naive_attentive_norm(layer, x, None)
        torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(layer.layout, s, rtol=1e-9, atol=1e-12)
        assert (y - x).abs().max() > 0.1  # the test is not comparing two identities

    @IMPLS
    @pytest.mark.parametrize("affine", [True, False])
    def test_feature_train_matches_reference(self, impl, affine):
        layer = _make(c=8, n=5, seed=1, affine=affine, temperature=0.3, implementation=impl).double().train()
        x = torch.randn(3, 8, 8, 6, dtype=torch.float64)
        recorder = _RecordPositions(layer)
        torch.manual_seed(123)
        y = layer(x)
        assert recorder.calls == 1
        positions = recorder.last
        assert positions.shape == (3, 5)
        expected, s = naive_attentive_norm(layer, x, positions)
        torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(layer.layout, s, rtol=1e-9, atol=1e-12)
        # the self-sampling branch changes the result: the eval-mode reference differs
        no_sampling, _ = naive_attentive_norm(layer, x, None)
        assert (expected - no_sampling).abs().max() > 1e-3

    @IMPLS
    @pytest.mark.parametrize("train", [True, False])
    def test_feature_value_projection_matches_reference(self, impl, train):
        layer = (
            _make(c=8, n=4, seed=5, temperature=0.4, value_projection=True, implementation=impl).double().train(train)
        )
        with torch.no_grad():
            layer.value.weight.normal_(generator=torch.Generator().manual_seed(5))
            layer.value.bias.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(6))
        x = torch.randn(2, 8, 6, 6, dtype=torch.float64) + 0.3
        recorder = _RecordPositions(layer)
        y = layer(x)
        expected, s = naive_attentive_norm(layer, x, recorder.last if train else None)
        torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(layer.layout, s, rtol=1e-9, atol=1e-12)
        # normalising v(x) is not normalising x: the paper-form reference with the same layout differs
        layer.value = None
        plain, _ = naive_attentive_norm(layer, x, recorder.last if train else None)
        assert (expected - plain).abs().max() > 0.1

    @IMPLS
    def test_gradcheck_value_projection(self, impl):
        layer = _make(c=4, n=3, seed=13, temperature=0.7, value_projection=True, implementation=impl).double().eval()
        x = torch.randn(1, 4, 4, 4, dtype=torch.float64, requires_grad=True)
        names = ["rho", "beta", "value.weight", "value.bias"]
        params = tuple(dict(layer.named_parameters())[k].detach().clone().requires_grad_(True) for k in names)

        def fn(x, *values):
            return torch.func.functional_call(layer, dict(zip(names, values, strict=True)), (x,))

        assert torch.autograd.gradcheck(fn, (x, *params), fast_mode=True)

    @IMPLS
    def test_feature_train_float32_matches_reference(self, impl):
        layer = _make(c=16, n=8, seed=2, temperature=0.2, implementation=impl).train()
        x = torch.randn(2, 16, 8, 8) * 3.0 + 5.0  # mean far from 0: exercises the variance guard
        recorder = _RecordPositions(layer)
        y = layer(x)
        expected, _ = naive_attentive_norm(layer, x, recorder.last)
        torch.testing.assert_close(y.double(), expected, rtol=1e-4, atol=1e-4)

    @IMPLS
    def test_feature_batch_stats_train_matches_reference(self, impl):
        layer = _make(c=8, n=4, seed=3, stats="batch", temperature=0.5, implementation=impl).double().train()
        x = (
            torch.randn(3, 8, 6, 6, dtype=torch.float64)
            + torch.linspace(-1, 1, 3, dtype=torch.float64)[:, None, None, None]
        )
        recorder = _RecordPositions(layer)
        y = layer(x)
        expected, _ = naive_attentive_norm(layer, x, recorder.last)
        torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-9)
        # pooling over the batch really differs from per-instance statistics
        layer.stats = "instance"
        per_instance, _ = naive_attentive_norm(layer, x, recorder.last)
        assert (per_instance - expected).abs().max() > 1e-3

    @IMPLS
    def test_feature_batch_stats_eval_uses_running_stats(self, impl):
        layer = _make(
            c=8, n=4, seed=4, stats="batch", self_sampling=False, temperature=0.5, implementation=impl
        ).double()
        x = torch.randn(2, 8, 6, 6, dtype=torch.float64) + 3.0
        layer.momentum = 1.0  # running statistics := this batch's statistics
        y_train = layer.train()(x)
        y_eval = layer.eval()(x)
        torch.testing.assert_close(y_eval, y_train, rtol=1e-9, atol=1e-9)
        expected, _ = naive_attentive_norm(layer, x, None)
        torch.testing.assert_close(y_eval, expected, rtol=1e-9, atol=1e-9)
        # eval output no longer depends on the other samples of the batch
        torch.testing.assert_close(layer(x[:1]), y_eval[:1], rtol=1e-9, atol=1e-9)

    # ----------------------------------------------------------------------------- sampling
    def test_sampled_positions(self):
        layer = AttentiveNorm2d(8, num_entities=6).train()
        recorder = _RecordPositions(layer)
        counts = torch.zeros(16)
        for _ in range(40):
            layer(torch.randn(10, 8, 8, 8))  # 16 pooled positions
            pos = recorder.last
            assert pos.shape == (10, 6)
            assert pos.min() >= 0
            assert pos.max() < 16
            for row in pos:
                assert len(set(row.tolist())) == 6  # n distinct positions per sample
            counts += torch.bincount(pos.flatten(), minlength=16)
        # uniform: every position drawn 10*6*40/16 = 150 times on average; a loose chi-square check
        expected = counts.sum() / 16
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 60  # 15 degrees of freedom; p ~ 1e-7 at 60

    def test_positions_per_sample(self):
        layer = AttentiveNorm2d(8, num_entities=4).train()
        recorder = _RecordPositions(layer)
        different = 0
        for _ in range(20):
            layer(torch.randn(2, 8, 8, 8))
            different += int(not torch.equal(recorder.last[0], recorder.last[1]))
        assert different > 0  # each sample draws its own positions

    def test_seeded_train_is_reproducible(self):
        layer = _make(c=8, n=4, seed=5)
        x = torch.randn(2, 8, 8, 8)
        torch.manual_seed(7)
        y1 = layer(x)
        torch.manual_seed(7)
        y2 = layer(x)
        torch.manual_seed(8)
        y3 = layer(x)
        torch.testing.assert_close(y1, y2, rtol=0, atol=0)
        assert not torch.allclose(y1, y3)

    def test_determinism_eval(self):
        layer = _make(c=8, n=4, seed=6).eval()
        x = torch.randn(2, 8, 8, 8)
        torch.manual_seed(1)
        y1 = layer(x)
        torch.manual_seed(2)
        y2 = layer(x)
        torch.testing.assert_close(y1, y2, rtol=0, atol=0)
        # eval output of a sample does not depend on the rest of the batch
        torch.testing.assert_close(layer(x[1:]), y1[1:], rtol=1e-6, atol=1e-6)

    @IMPLS
    @pytest.mark.parametrize("train", [True, False])
    def test_no_sampling_branch_calls(self, impl, train):
        def fail(*args, **kwargs):
            raise AssertionError("the self-sampling branch was computed")

        def poison(layer: AttentiveNorm2d) -> list:
            # NaN in every parameter of the branch: any use of it would make the output NaN
            with torch.no_grad():
                for p in (layer.t, *layer.key.parameters(), *layer.query.parameters()):
                    p.fill_(float("nan"))
            layer.sample_positions = fail
            return [layer.key.register_forward_pre_hook(fail), layer.query.register_forward_pre_hook(fail)]

        layer = _make(c=8, n=4, seed=7, self_sampling=False, implementation=impl).train(train)
        x = torch.randn(2, 8, 4, 4)  # 4 pooled positions = n: would also be allowed with sampling
        expected, _ = naive_attentive_norm(layer, x, None)
        poison(layer)
        y = layer(x)
        torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)
        # eval mode switches the branch off even when self_sampling=True
        sampling = _make(c=8, n=4, seed=7, implementation=impl).eval()
        expected, _ = naive_attentive_norm(sampling, x, None)
        hooks = poison(sampling)
        torch.testing.assert_close(sampling(x).double(), expected, rtol=1e-5, atol=1e-5)
        # and the traps do fire when the branch runs
        with pytest.raises(AssertionError, match="was computed"):
            sampling.train()(x)
        del sampling.sample_positions
        for hook in hooks:
            hook.remove()
        assert torch.isnan(sampling(x)).any()

    # ----------------------------------------------------------------------------- layout
    def test_layout(self):
        layer = _make(c=8, n=5, seed=8)
        x = torch.randn(2, 8, 6, 7, requires_grad=True)
        assert layer.layout is None
        layer(x)
        layout = layer.layout
        assert layout.shape == (2, 5, 6, 7)
        assert not layout.requires_grad
        assert layout.grad_fn is None
        assert layout.min() >= 0
        torch.testing.assert_close(layout.sum(dim=1), torch.ones(2, 6, 7))
        assert layout.std(dim=1).mean() > 1e-3  # not a uniform layout
        layer(torch.randn(1, 8, 6, 4))
        assert layer.layout.shape == (1, 5, 6, 4)  # the last call's layout

    # ----------------------------------------------------------------------------- orthogonal loss
    def test_orthogonal_loss(self):
        layer = AttentiveNorm2d(8, num_entities=4).double()
        q, _ = torch.linalg.qr(torch.randn(8, 4, dtype=torch.float64))  # (C, n), orthonormal columns
        with torch.no_grad():
            layer.entities.weight.copy_(q.t()[:, :, None, None])
        assert layer.orthogonal_loss().abs().item() < 1e-20
        with torch.no_grad():
            layer.entities.weight.mul_(1.5)
            layer.entities.weight[0, 1] += 0.3
        w = layer.entities.weight.detach()[:, :, 0, 0]
        direct = sum((float(w[i] @ w[j]) - (1.0 if i == j else 0.0)) ** 2 for i in range(4) for j in range(4))
        loss = layer.orthogonal_loss()
        assert loss.item() > 0
        assert loss.item() == pytest.approx(direct, rel=1e-12)
        loss.backward()
        assert layer.entities.weight.grad.abs().sum() > 0

    def test_orthogonal_loss_nonnegative_for_default_init(self):
        for n in (2, 8, 32):
            assert AttentiveNorm2d(16, num_entities=n).orthogonal_loss().item() > 0

    def test_module_helpers(self):
        torch.manual_seed(0)
        net = nn.Sequential(
            AttentiveNorm2d(8, num_entities=4), nn.Conv2d(8, 8, 3, padding=1), AttentiveNorm2d(8, num_entities=3)
        )
        expected = net[0].orthogonal_loss() + net[2].orthogonal_loss()
        torch.testing.assert_close(orthogonal_loss(net), expected)
        assert collect_layouts(net) == {}
        net(torch.randn(2, 8, 6, 6))
        layouts = collect_layouts(net)
        assert set(layouts) == {"0", "2"}
        assert layouts["0"].shape == (2, 4, 6, 6)
        assert layouts["2"].shape == (2, 3, 6, 6)
        assert layouts["2"] is net[2].layout
        plain = nn.Sequential(nn.Conv2d(3, 3, 1))
        zero = orthogonal_loss(plain)
        assert zero.shape == ()
        assert zero.item() == 0.0
        nested = nn.ModuleDict({"g": net, "d": nn.Sequential(nn.Identity(), AttentiveNorm2d(8, num_entities=2))})
        assert set(collect_layouts(nested)) == {"g.0", "g.2"}
        with torch.no_grad():
            net[2].rho.fill_(0.25)
        rho = an_rho(nested)
        assert set(rho) == {"g.0", "g.2", "d.1"} and float(rho["g.2"]) == 0.25 and float(rho["g.0"]) == 0.0
        assert not rho["g.2"].requires_grad
        torch.testing.assert_close(orthogonal_loss(nested), expected + nested["d"][1].orthogonal_loss())

    # ----------------------------------------------------------------------------- gradients
    def _functional(self, layer: AttentiveNorm2d):
        names = ["rho", "t", "beta", "alpha", "entities.weight", "key.weight", "query.bias"]
        params = tuple(dict(layer.named_parameters())[k].detach().clone().requires_grad_(True) for k in names)

        def fn(x, *values):
            return torch.func.functional_call(layer, dict(zip(names[: len(values)], values, strict=True)), (x,))

        return fn, params

    @IMPLS
    def test_gradcheck_eval(self, impl):
        layer = _make(c=4, n=3, seed=9, temperature=0.7, implementation=impl).double().eval()
        x = torch.randn(1, 4, 4, 4, dtype=torch.float64, requires_grad=True)
        fn, params = self._functional(layer)
        assert torch.autograd.gradcheck(fn, (x, *params[:5]), fast_mode=True)

    @IMPLS
    def test_gradcheck_train_fixed_sampling(self, impl):
        layer = _make(c=4, n=3, seed=10, temperature=0.7, implementation=impl).double().train()
        _RecordPositions(layer, fixed=torch.tensor([[0, 3, 1], [2, 1, 0]]))
        x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
        fn, params = self._functional(layer)
        assert torch.autograd.gradcheck(fn, (x, *params), fast_mode=True)

    @IMPLS
    def test_gradcheck_batch_stats(self, impl):
        layer = (
            _make(c=4, n=2, seed=11, stats="batch", self_sampling=False, temperature=0.7, implementation=impl)
            .double()
            .train()
        )
        x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
        fn, params = self._functional(layer)
        assert torch.autograd.gradcheck(fn, (x, *params[:5]), fast_mode=True)

    # ----------------------------------------------------------------------------- numerics
    @IMPLS
    @pytest.mark.parametrize("train", [True, False])
    def test_constant_input(self, impl, train):
        layer = _make(c=8, n=4, seed=12, implementation=impl).train(train)
        x = torch.full((2, 8, 6, 6), 3.0, requires_grad=True)
        recorder = _RecordPositions(layer)
        y = layer(x)
        assert torch.isfinite(y).all()
        y.square().sum().backward()
        assert torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
        expected, _ = naive_attentive_norm(layer, x, recorder.last if train else None)
        torch.testing.assert_close(y.double(), expected, rtol=1e-4, atol=1e-4)

    @IMPLS
    def test_empty_region(self, impl):
        layer = _make(c=8, n=4, seed=13, self_sampling=False, implementation=impl)
        with torch.no_grad():
            layer.entities.weight[0] = -200.0  # region 0 gets ~zero mass for positive inputs
        x = (torch.rand(2, 8, 6, 6) + 1.0).requires_grad_(True)
        y = layer(x)
        assert layer.layout[:, 0].sum() < 1e-20
        assert torch.isfinite(y).all()
        y.sum().backward()
        assert torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
        expected, _ = naive_attentive_norm(layer, x, None)
        torch.testing.assert_close(y.double(), expected, rtol=1e-4, atol=1e-4)

    @IMPLS
    def test_autocast_bf16_cpu(self, impl):
        layer = _make(c=16, n=4, seed=14, implementation=impl).eval()
        x = torch.randn(2, 16, 8, 8) * 2.0 + 1.0
        reference = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
        assert y.dtype == torch.float32
        assert layer.layout.dtype == torch.float32
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y, reference, rtol=0.05, atol=0.1)
        layer.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_train = layer(x)
            y_const = layer(torch.full((1, 16, 8, 8), 2.0))
        assert torch.isfinite(y_train).all()
        assert torch.isfinite(y_const).all()

    @IMPLS
    def test_bf16_input(self, impl):
        layer = _make(c=8, n=4, seed=15, implementation=impl).eval()
        x = torch.randn(2, 8, 8, 8)
        y = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
        assert y.dtype == torch.bfloat16
        assert layer.layout.dtype == torch.float32  # statistics and layout in float32
        reference, _ = naive_attentive_norm(layer, x.to(torch.bfloat16), None)
        torch.testing.assert_close(y.double(), reference, rtol=0.05, atol=0.1)

    @IMPLS
    def test_no_b_c_n_h_w_tensor(self, impl, monkeypatch):
        """The efficient form: no intermediate as large as (B, C, n, H, W), forward or backward.

        The fused path works on chunks of CHUNK_ELEMENTS input elements (here a quarter of the map): apart from its
        input, output, layout and input gradient, every tensor it makes is chunk-sized or (C, n)-sized.
        """
        _set_chunk(monkeypatch, 16 * 64)

        class MaxNumel(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.largest = 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(t, torch.Tensor):
                        self.largest = max(self.largest, t.numel())
                return out

        b, c, n, h, w = 1, 16, 32, 16, 16
        layer = _make(c=c, n=n, seed=16, implementation=impl).train()
        x = torch.randn(b, c, h, w, requires_grad=True)
        with MaxNumel() as mode:
            layer(x).sum().backward()
        assert mode.largest <= b * (c + n) * h * w
        assert mode.largest < b * c * n * h * w / 8
        if impl == "fused":
            assert mode.largest <= b * max(c, n) * h * w  # the input or the layout itself

    # ----------------------------------------------------------------------------- errors
    def test_exception(self):
        layer = AttentiveNorm2d(8, num_entities=16)
        with pytest.raises(ValueError, match="4-D"):
            layer(torch.randn(8, 16, 16))
        with pytest.raises(ValueError, match="4-D"):
            layer(torch.randn(1, 1, 8, 16, 16))
        with pytest.raises(ValueError, match="8 channels"):
            layer(torch.randn(1, 4, 16, 16))
        with pytest.raises(ValueError, match="num_entities"):
            AttentiveNorm2d(8, num_entities=1)
        with pytest.raises(ValueError, match="stats"):
            AttentiveNorm2d(8, stats="group")
        # 4x4 map -> 4 pooled positions < 16 entities: an error while sampling ...
        with pytest.raises(ValueError, match="pooled positions"):
            layer.train()(torch.randn(1, 8, 4, 4))
        # ... but fine without the sampling branch
        assert layer.eval()(torch.randn(1, 8, 4, 4)).shape == (1, 8, 4, 4)
        no_ssr = AttentiveNorm2d(8, num_entities=16, self_sampling=False).train()
        assert no_ssr(torch.randn(1, 8, 4, 4)).shape == (1, 8, 4, 4)


def test_reference_is_not_trivial():
    """Guard for the reference itself: with rho = 1, beta = 1, alpha = 0 and one dominant region it is IN."""
    layer = AttentiveNorm2d(4, num_entities=2, self_sampling=False, eps=1e-8).double()
    with torch.no_grad():
        layer.rho.fill_(1.0)
        layer.entities.weight.zero_()
        layer.entities.weight[0] = 1.0
    layer.temperature = 1e6  # hard layout: all mass on region 0 where sum_c x > 0, region 1 elsewhere
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64).abs() + 0.1  # sum_c x > 0 everywhere -> region 0
    out, s = naive_attentive_norm(layer, x, None)
    assert torch.all(s[:, 0] > 1 - 1e-12)
    inst = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.var(dim=(2, 3), unbiased=False, keepdim=True).sqrt())
    torch.testing.assert_close(out, inst + x, rtol=1e-6, atol=1e-6)
    assert math.isfinite(float(out.sum()))
