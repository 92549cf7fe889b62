"""Time spent inside given modules during a training iteration, measured in place with hooks.

What a long-range module costs is a few percent of an iteration, less than the iteration time drifts from one fit
to the next on a CPU (~10%): the difference of two iteration times cannot resolve it. :class:`ModuleClock` instead
sums the time between each module's forward pre-hook and forward hook, and between its full-backward pre-hook
(the gradient of its output is ready) and its full-backward hook (the gradient of its input is done), over every
call in the iteration, in the real training step with its real inputs. On CUDA the hooks record events (no host
synchronisation inside the step); the clock reads them when asked. Intervals of the hooked modules that overlap
(two calls whose backward passes interleave) count once: the clock measures the union.

Not counted: work done for a module outside its own forward and backward (e.g. AN's orthogonal regulariser, summed
in the loss; the optimiser's update of the module's parameters), and the backward of a call whose inputs need no
gradient (PyTorch then fires both backward hooks when the output's gradient arrives; the long-range modules of the
benchmarks always get inputs that need one: the output of a convolution being trained).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ModuleClock"]


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
        for module in modules:
            self.handles += [
                module.register_forward_pre_hook(lambda *_: self._enter("forward")),
                module.register_forward_hook(lambda *_: self._leave("forward")),
                module.register_full_backward_pre_hook(lambda *_: self._enter("backward")),
                module.register_full_backward_hook(lambda *_: self._leave("backward")),
            ]

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _enter(self, phase: str) -> None:
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
