"""Time spent inside given modules during a training iteration, measured in place with hooks.

What a long-range module costs is a few percent of an iteration, less than the iteration time drifts from one fit
to the next on a CPU (~10%): the difference of two iteration times cannot resolve it. :class:`ModuleClock` instead
sums the time between each module's forward pre-hook and forward hook, and between its full-backward pre-hook
(the gradient of its output is ready) and its full-backward hook (the gradient of its input is done), over every
call in the iteration, in the real training step with its real inputs. On CUDA the hooks record events (no host
synchronisation inside the step); the clock reads them when asked. Intervals of the hooked modules that overlap
(two calls whose backward passes interleave) count once: the clock measures the union.

The clock also logs each call's tensor shapes (:attr:`ModuleClock.calls`: the first input of every forward, the
first output gradient of every backward). :func:`instance_norm_seconds` replays one iteration's calls with
``nn.InstanceNorm2d(C, affine=True)`` on those shapes: what a plain normalisation layer in the same places would
cost, the reference for AN's claim of long-range modelling at the cost of a normalisation layer.

Not counted: work done for a module outside its own forward and backward (e.g. AN's orthogonal regulariser, summed
in the loss; the optimiser's update of the module's parameters), and the backward of a call whose inputs need no
gradient (PyTorch then fires both backward hooks when the output's gradient arrives; the long-range modules of the
benchmarks always get inputs that need one: the output of a convolution being trained).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ModuleClock", "instance_norm_seconds"]

Call = tuple[str, tuple[int, ...]]


class ModuleClock:
    """Sums the forward and backward time of ``modules`` (see the module docstring); :meth:`read` returns the
    seconds so far. ``device``: where the modules run (``cuda`` records events, anything else wall time)."""

    def __init__(self, modules: Sequence[nn.Module], device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.seconds = 0.0
        self.pending: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.depth = {"forward": 0, "backward": 0}
        self.start: dict[str, object] = {}
        self.handles = []
        self.calls: list[Call] = []  # ("forward" | "backward", shape of the first input / output gradient)
        for module in modules:
            self.handles += [
                module.register_forward_pre_hook(lambda _, args: self._enter("forward", args)),
                module.register_forward_hook(lambda *_: self._leave("forward")),
                module.register_full_backward_pre_hook(lambda _, grads: self._enter("backward", grads)),
                module.register_full_backward_hook(lambda *_: self._leave("backward")),
            ]

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _enter(self, phase: str, tensors: Sequence[object] = ()) -> None:
        first = next((t for t in tensors if isinstance(t, torch.Tensor)), None)
        if first is not None:
            self.calls.append((phase, tuple(first.shape)))
        if self.depth[phase] == 0:
            self.start[phase] = self._now()
        self.depth[phase] += 1

    def _leave(self, phase: str) -> None:
        self.depth[phase] -= 1
        if self.depth[phase] == 0:
            start, end = self.start.pop(phase), self._now()
            if self.cuda:
                self.pending.append((start, end))
            else:
                self.seconds += end - start

    def read(self) -> float:
        """Seconds spent inside the modules since the clock was made (synchronises CUDA to read its events)."""
        if self.pending:
            self.pending[-1][1].synchronize()
            self.seconds += sum(a.elapsed_time(b) for a, b in self.pending) / 1000.0
            self.pending.clear()
        return self.seconds

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def instance_norm_seconds(calls: Sequence[Call], device: torch.device | str, repeats: int = 3) -> float | None:
    """Seconds that ``nn.InstanceNorm2d(C, affine=True)`` (float32) takes for ``calls``: its forward for every
    ``forward`` call and its backward for every ``backward`` one, on random tensors of the logged shapes (each
    shape's median of ``repeats`` timings, after one untimed). ``None`` without calls or if a shape is not
    ``(N, C, H, W)``."""
    if not calls or any(len(shape) != 4 for _, shape in calls):
        return None
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cost: dict[Call, float] = {}
    for call in set(calls):
        phase, shape = call
        norm = nn.InstanceNorm2d(shape[1], affine=True).to(device)
        x = torch.randn(shape, device=device, requires_grad=True)
        grad = torch.randn(shape, device=device)
        times = []
        for _ in range(repeats + 1):
            sync()
            start = time.perf_counter()
            y = norm(x)
            if phase == "backward":
                sync()
                start = time.perf_counter()
                y.backward(grad)
            sync()
            times.append(time.perf_counter() - start)
        cost[call] = statistics.median(times[1:])
    return sum(cost[call] for call in calls)
