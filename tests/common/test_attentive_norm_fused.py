"""The fused AttentiveNorm2d path against the plain reference implementation: values, layouts, running statistics
and every gradient, over chunk plans that split the pixels and the batch in every way the chunker can."""

import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from common.layers import attentive_norm_chunked
from common.layers.attentive_norm import AttentiveNorm2d
from common.losses import gradient_penalty

# CHUNK_ELEMENTS for C = 8, H*W = 42, B = 3: 5 pixels per chunk (the last one shorter), two whole samples, all.
CHUNKS = {"pixels": 40, "samples": 700, "whole": 1 << 18}


def _set_chunk(monkeypatch, elements: int) -> None:
    """Chunks of ``elements`` input elements in the fused path, whatever the thread count."""
    monkeypatch.setattr(attentive_norm_chunked, "_chunk_elements", lambda device: elements)


def _layer(train, stats="instance", affine=True, value=False, seed=0, c=8, n=4, dtype=torch.float64, scale=0.7):
    torch.manual_seed(seed)
    layer = AttentiveNorm2d(c, num_entities=n, stats=stats, affine=affine, value_projection=value, temperature=0.5)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return layer.to(dtype).train(train)


def _run(layer, impl, x, positions, grad_out, create_graph=False):
    """Output, layout, input gradient and parameter gradients with the sampled positions fixed."""
    layer.implementation = impl
    layer.zero_grad(set_to_none=True)
    layer.sample_positions = lambda batch, num_pooled, device: positions.to(device)
    x = x.detach().clone().requires_grad_(True)
    y = layer(x)
    del layer.sample_positions
    grads = torch.autograd.grad(y, [x, *layer.parameters()], grad_out, allow_unused=True, create_graph=create_graph)
    return y, layer.layout, grads


def _compare(layer, x, positions, rtol, atol):
    grad_out = torch.randn_like(x)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    ref = _run(layer, "reference", x, positions, grad_out)
    ref_state = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    fused = _run(layer, "fused", x, positions, grad_out)
    torch.testing.assert_close(fused[0], ref[0], rtol=rtol, atol=atol)
    torch.testing.assert_close(fused[1], ref[1], rtol=rtol, atol=atol)
    names = ["x"] + [k for k, _ in layer.named_parameters()]
    for name, gf, gr in zip(names, fused[2], ref[2], strict=True):
        assert (gf is None) == (gr is None), name
        if gr is not None:
            torch.testing.assert_close(gf, gr, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}")
    for k, v in layer.state_dict().items():  # running statistics updated alike
        torch.testing.assert_close(v, ref_state[k], rtol=rtol, atol=atol)
    return ref


@pytest.mark.parametrize("chunk", list(CHUNKS))
@pytest.mark.parametrize(
    ("train", "stats"), [(True, "instance"), (False, "instance"), (True, "batch"), (False, "batch")]
)
def test_matches_reference_float64(monkeypatch, chunk, train, stats):
    _set_chunk(monkeypatch, CHUNKS[chunk])
    for affine, value, channels_last in itertools.product([True, False], [False, True], [False, True]):
        layer = _layer(train, stats, affine, value, seed=int(affine) + 2 * int(value))
        if stats == "batch" and not train:
            layer.running_mean.normal_().mul_(0.3)
            layer.running_var.uniform_(0.5, 2.0)
        x = torch.randn(3, 8, 7, 6, dtype=torch.float64) * 2.0 + 1.5
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        positions = torch.rand(3, 9).topk(4, dim=1).indices
        ref = _compare(layer, x, positions, rtol=1e-10, atol=1e-10)
        assert (ref[0] - x).abs().max() > 0.1  # not comparing identities
        assert ref[2][0].abs().max() > 0.1


def test_one_pixel_chunks(monkeypatch):
    _set_chunk(monkeypatch, 1)
    for train, stats in [(True, "instance"), (True, "batch")]:
        layer = _layer(train, stats, value=True)
        x = torch.randn(2, 8, 5, 4, dtype=torch.float64) - 0.5
        _compare(layer, x, torch.rand(2, 4).topk(4, dim=1).indices, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("threads", [1, 3])
def test_chunk_workers(monkeypatch, threads):
    """Chunks run on one worker thread per torch thread (single-threaded operations): same values and gradients as
    the reference, bit-identical from call to call, and the caller's thread count restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _set_chunk(monkeypatch, 8 * 7)  # 7 pixels per chunk: 6 chunks per sample
        for stats, value in [("instance", False), ("batch", True)]:
            layer = _layer(True, stats, value=value)
            x = torch.randn(2, 8, 7, 6, dtype=torch.float64)
            positions = torch.rand(2, 9).topk(4, dim=1).indices
            _compare(layer, x, positions, rtol=1e-10, atol=1e-10)
            assert torch.get_num_threads() == threads
            grad_out = torch.randn_like(x)
            first, second = (_run(layer, "fused", x, positions, grad_out) for _ in range(2))
            for a, b in zip([first[0], *first[2]], [second[0], *second[2]], strict=True):
                assert a is None or torch.equal(a, b)  # fixed chunk-to-worker assignment: deterministic
        assert attentive_norm_chunked._Plan(x.flatten(2), x.dtype).workers == min(threads, 12)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("stats", ["instance", "batch"])
def test_chunk_workers_under_inference_mode(monkeypatch, stats):
    """Lightning validates under ``torch.inference_mode``: the worker threads update the inference-mode buffers in
    place, so they must run in inference mode too (a CPU validation of the Paris model failed without it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _set_chunk(monkeypatch, 8 * 7)  # several chunks, two workers
        layer = _layer(False, stats, value=False).eval()
        x = torch.randn(2, 8, 7, 6)
        expected = layer.float()._forward_reference(x, layer._tensors(), None)[0]
        layer.implementation = "fused"
        with torch.inference_mode():
            out = layer(x)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(previous)


def test_float32_as_accurate_as_reference(monkeypatch):
    """In float32 the fused path is as close to the float64 result as the reference implementation is."""
    _set_chunk(monkeypatch, 16 * 100)  # several chunks per sample
    for train, value in [(True, False), (False, False), (True, True)]:
        layer = _layer(train, value=value, c=16, n=8, dtype=torch.float32, scale=0.25)
        x = torch.randn(2, 16, 20, 18) * 3.0 + 5.0  # mean far from 0: the centring matters
        positions, grad_out = torch.rand(2, 90).topk(8, dim=1).indices, torch.randn_like(x)
        state = {k: v.clone() for k, v in layer.state_dict().items()}
        results = {}
        for impl in ("fused", "reference"):
            layer.load_state_dict(state)
            results[impl] = _run(layer, impl, x, positions, grad_out)
        layer.load_state_dict(state)
        truth = _run(layer.double(), "reference", x.double(), positions, grad_out.double())
        for k, truth_k in enumerate([truth[0], truth[1], *truth[2]]):
            if truth_k is None:
                continue
            errors = {}
            for impl, res in results.items():
                errors[impl] = ((res[0], res[1], *res[2])[k].double() - truth_k).abs().max().item()
            scale = truth_k.abs().max().item()
            # float32 rounding of sums over the pixels in another order: relative 1e-5 at most (measured 6e-6)
            assert errors["fused"] <= 2.0 * errors["reference"] + 2e-5 * scale, (train, value, k, errors, scale)


@pytest.mark.parametrize("train", [True, False])
def test_bf16(train):
    """bf16 input (and autocast): statistics in float32, output in the input dtype, close to the reference."""
    layer = _layer(train, c=16, n=4, dtype=torch.float32)
    x = torch.randn(2, 16, 8, 8) * 2.0 + 1.0
    positions = torch.rand(2, 16).topk(4, dim=1).indices
    outputs = {}
    for impl in ("fused", "reference"):
        xb, gb = x.to(torch.bfloat16), torch.ones(x.shape, dtype=torch.bfloat16)
        y, layout, (gx, *_) = _run(layer.to(torch.bfloat16), impl, xb, positions, gb)
        assert y.dtype == torch.bfloat16 and gx.dtype == torch.bfloat16 and layout.dtype == torch.float32
        outputs[impl] = (y.float(), gx.float())
        layer.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ya, _, (gxa, *_) = _run(layer, impl, x, positions, torch.ones_like(x))
        assert ya.dtype == torch.float32 and torch.isfinite(gxa).all()
        outputs[impl + " autocast"] = (ya, gxa)
    for key in ("", " autocast"):
        for a, b in zip(outputs["fused" + key], outputs["reference" + key], strict=True):
            torch.testing.assert_close(a, b, rtol=0.05, atol=0.1)


def test_gradcheck_small_chunks(monkeypatch):
    _set_chunk(monkeypatch, 4 * 5)  # 5 pixels per chunk
    for train, stats, value in [(True, "instance", False), (True, "batch", True), (False, "instance", True)]:
        layer = _layer(train, stats, value=value, c=4, n=3, seed=3)
        layer.implementation = "fused"
        layer.sample_positions = lambda batch, num_pooled, device: torch.tensor([[0, 3, 1], [2, 1, 0]])
        names = [k for k, p in layer.named_parameters() if p.requires_grad]
        params = [p.detach().clone().requires_grad_(True) for k, p in layer.named_parameters() if p.requires_grad]
        x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)

        def fn(x, *values, layer=layer, names=names):
            return torch.func.functional_call(layer, dict(zip(names, values, strict=True)), (x,))

        assert torch.autograd.gradcheck(fn, (x, *params), fast_mode=True)


def test_double_backward_gradient_penalty():
    """create_graph=True (a WGAN-GP penalty through a critic holding AN) gives the reference's second derivatives."""
    grads = {}
    for impl in ("fused", "reference"):
        torch.manual_seed(0)
        critic = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            AttentiveNorm2d(8, num_entities=4, self_sampling=False, implementation=impl),
            torch.nn.Flatten(),
            torch.nn.Linear(8 * 36, 1),
        ).double()
        with torch.no_grad():
            critic[1].rho.fill_(0.7)
        real, fake = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(2, 3, 6, 6, dtype=torch.float64)
        gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1)).backward()
        # (the critic's last bias has no effect on the input gradient, so no gradient from the penalty)
        grads[impl] = [p.grad for p in critic.parameters() if p.grad is not None]
    assert len(grads["fused"]) == len(grads["reference"]) == 7  # conv (2), entities, beta, alpha, rho, linear
    for a, b in zip(grads["fused"], grads["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
        assert a.abs().sum() > 0


class _SavedAndLargest(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_memory_saved_for_backward(monkeypatch):
    """The backward recomputes: autograd keeps the input, the layout and tensors whose size does not depend on H*W
    (the reference keeps several (C, H*W)- and (2C, H*W)-sized intermediates)."""
    _set_chunk(monkeypatch, 16 * 64)
    b, c, n = 2, 16, 8
    extra = {}
    for impl, size in itertools.product(("fused", "reference"), (16, 32)):
        layer = _layer(True, c=c, n=n, dtype=torch.float32)
        layer.implementation = impl
        x = torch.randn(b, c, size, size, requires_grad=True)
        storages = {}

        def pack(t, storages=storages):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = layer(x)
        layout_bytes = b * n * size * size * 4
        extra[impl, size] = sum(storages.values()) - x.numel() * 4 - layout_bytes
        with _SavedAndLargest() as mode:
            y.backward(torch.randn_like(y))
        if impl == "fused":
            assert mode.largest <= b * c * size * size  # backward: nothing beyond input-sized tensors
    assert 0 < extra["fused", 16] == extra["fused", 32] < 16 * 1024
    assert extra["reference", 32] > 4 * b * n * 32 * 32 * 4


def test_chunk_plan_covers_every_pixel_once():
    for elements, (b, hw, c) in itertools.product([1, 7, 50, 4096, 1 << 18], [(1, 1, 1), (3, 42, 8), (5, 9, 2)]):
        seen = torch.zeros(b, hw, dtype=torch.int64)
        chunks = attentive_norm_chunked._chunks(b, hw, c, elements)
        for i, ps in chunks:
            seen[i, ps] += 1
        assert torch.all(seen == 1), (elements, b, hw, c)
        assert max(
            (ps.stop - ps.start) * c * (1 if isinstance(i, int) else i.stop - i.start) for i, ps in chunks
        ) <= max(elements, c)
    # a chunk per CPU worker thread; few, large chunks on GPUs (kernel launches)
    assert attentive_norm_chunked._chunk_elements(torch.device("cpu")) == attentive_norm_chunked.CHUNK_ELEMENTS
    assert attentive_norm_chunked._chunk_elements(torch.device("cuda")) >= 1 << 22


def test_auto_selects_tested_paths_only(monkeypatch):
    layer = AttentiveNorm2d(8, num_entities=4)
    x = torch.randn(1, 8, 4, 4)
    assert layer._resolve_implementation(x) == "reference"  # small input
    assert layer._resolve_implementation(torch.empty(1, 16, 256, 255)) == "reference"  # just under 2^20
    x = torch.empty(1, 16, 256, 256)  # 2^20 elements
    assert layer._resolve_implementation(x) == "fused"
    # off the CPU "auto" is the reference: the fused and Triton paths have not run against it on that hardware
    assert layer._resolve_implementation(torch.empty(1, 16, 256, 256, device="meta")) == "reference"
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert layer._resolve_implementation(x) == "reference"
    layer.implementation = "fused"
    assert layer._resolve_implementation(x) == "fused"
    with pytest.raises(ValueError, match="implementation"):
        AttentiveNorm2d(8, implementation="cuda-magic")
