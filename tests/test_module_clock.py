"""benchmarks._module_time.ModuleClock: the time inside hooked modules' forward and backward, measured in place."""

import time

import pytest
import torch
from torch import nn

from benchmarks import _module_time as module_time
from benchmarks._module_time import ModuleClock, instance_norm_seconds


class _SlowBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, seconds):
        ctx.seconds = seconds
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        time.sleep(ctx.seconds)
        return grad * 2, None


class Slow(nn.Module):
    """Sleeps ``forward_s`` in its forward and ``backward_s`` in its backward."""

    def __init__(self, forward_s: float, backward_s: float, inner: nn.Module | None = None) -> None:
        super().__init__()
        self.forward_s, self.backward_s, self.inner = forward_s, backward_s, inner
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        time.sleep(self.forward_s)
        x = self.inner(x) if self.inner is not None else x
        return _SlowBackward.apply(x * self.scale, self.backward_s)


@pytest.mark.timeout(60)
def test_counts_the_hooked_modules_forward_and_backward_only():
    hooked, outside = Slow(0.05, 0.08), Slow(0.1, 0.1)
    clock = ModuleClock([hooked], "cpu")
    x = torch.ones(3, requires_grad=True)
    for calls in (1, 2):
        before = clock.read()
        outside(hooked(x)).sum().backward()
        spent = clock.read() - before
        assert 0.13 <= spent < 0.13 + 0.06, (calls, spent)  # not the 0.2 s of the other module
    hooked(hooked(x)).sum().backward()  # two calls in one graph: both forwards and both backwards
    assert 0.52 <= clock.read() < 0.52 + 0.1
    clock.close()
    total = clock.read()
    hooked(x).sum().backward()
    assert clock.read() == total  # hooks removed


@pytest.mark.timeout(60)
def test_nested_hooked_modules_count_once():
    inner = Slow(0.04, 0.04)
    outer = Slow(0.04, 0.04, inner=inner)
    clock = ModuleClock([outer, inner], "cpu")
    outer(torch.ones(2, requires_grad=True)).sum().backward()
    assert 0.16 <= clock.read() < 0.16 + 0.06  # the union of the intervals, not 0.24


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_input_without_gradient_and_no_grad_calls():
    """A module whose input needs no gradient closes its backward interval at once (PyTorch fires both hooks when the
    output gradient arrives: that backward is not timed, as documented); calls without autograd time their forward
    only."""
    hooked = Slow(0.03, 0.05)
    clock = ModuleClock([hooked], "cpu")
    hooked(torch.ones(2)).sum().backward()  # only the parameter needs a gradient
    first = clock.read()
    assert 0.03 <= first < 0.03 + 0.03
    assert clock.depth == {"forward": 0, "backward": 0}
    with torch.no_grad():
        hooked(torch.ones(2))
    assert 0.03 <= clock.read() - first < 0.03 + 0.03


@pytest.mark.timeout(60)
def test_logs_each_calls_shapes():
    """Every forward logs its first input's shape, every backward its output gradient's (the replay's input)."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    clock = ModuleClock([conv], "cpu")
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    conv(conv.weight.new_ones(1, 3, 5, 5))  # a forward whose output is never differentiated
    (conv(x).sum() + conv(x[:1]).sum()).backward()
    assert clock.calls[:3] == [("forward", (1, 3, 5, 5)), ("forward", (2, 3, 8, 8)), ("forward", (1, 3, 8, 8))]
    assert sorted(clock.calls[3:]) == [("backward", (1, 4, 8, 8)), ("backward", (2, 4, 8, 8))]
    clock.close()


@pytest.mark.timeout(60)
def test_instance_norm_seconds_counts_every_call(monkeypatch):
    """With a clock that ticks once per reading, each call costs exactly one tick: forward and backward calls are
    each counted as often as they were logged; shapes that are not (N, C, H, W) or no calls give None."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(module_time.time, "perf_counter", lambda: next(ticks))
    calls = [
        ("forward", (2, 4, 6, 6)),
        ("forward", (2, 4, 6, 6)),
        ("backward", (2, 4, 6, 6)),
        ("forward", (1, 8, 3, 3)),
    ]
    assert instance_norm_seconds(calls, "cpu") == 4
    assert instance_norm_seconds([], "cpu") is None
    assert instance_norm_seconds([("forward", (2, 4, 6))], "cpu") is None


@pytest.mark.timeout(120)
def test_instance_norm_seconds_grows_with_the_work():
    small = instance_norm_seconds([("forward", (1, 8, 8, 8)), ("backward", (1, 8, 8, 8))], "cpu", repeats=5)
    large = instance_norm_seconds([("forward", (4, 64, 128, 128)), ("backward", (4, 64, 128, 128))], "cpu", repeats=5)
    assert small > 0 and 3 * small < large  # 16384x the elements
