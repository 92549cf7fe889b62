"""One manual optimiser step, as Lightning's manual-optimization GAN example writes it, in one place.

GAN training (both tasks) alternates the optimisers of two networks. Each update is the same five moves:
``toggle_optimizer`` (so the other network's parameters need no gradient during the forward pass), the forward
pass and loss, ``zero_grad``, ``manual_backward``, ``step`` and ``untoggle_optimizer``. :func:`manual_step` does
exactly that around a loss function that returns ``(loss, logs)`` (the house style of the loss objects), so the
modules' ``training_step`` reads as the sequence of updates and nothing else. It is also where a non-finite loss is
caught: the trainer's :class:`common.training.callbacks.nonfinite.NonFiniteGuard` (when present) sees every loss
before the
update and either records it for a clear error or has the update skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from torch import Tensor

from common.training.callbacks.nonfinite import find_guard

__all__ = ["manual_step"]

LossFn = Callable[[], tuple[Tensor, dict[str, Any]]]


def manual_step(
    module: pl.LightningModule, optimizer: Any, loss_fn: LossFn, name: str = "model"
) -> tuple[Tensor, dict[str, Any]]:
    """Run one update of ``optimizer`` on the loss computed by ``loss_fn``.

    ``loss_fn`` runs inside ``module.toggle_optimizer(optimizer)``: parameters of the module's other optimisers
    have ``requires_grad=False`` while it runs, so the backward pass computes gradients for this optimiser's
    parameters only. The optimizer is untoggled even if ``loss_fn`` or the backward pass raises.

    Args:
        module: the LightningModule (manual optimization) that owns ``optimizer``.
        optimizer: one of ``module.optimizers()`` (a ``LightningOptimizer``).
        loss_fn: called with no arguments; returns the scalar loss and a dict of values to log.
        name: what this optimiser updates (``"generator"``, ``"discriminator"``, ...), for error messages.

    Returns:
        ``(loss, logs)`` as returned by ``loss_fn`` (the loss still attached to its graph's outputs).
    """
    module.toggle_optimizer(optimizer)
    try:
        loss, logs = loss_fn()
        guard = find_guard(module)
        optimizer.zero_grad(set_to_none=True)
        if guard is None or guard.admit(module, name, loss, logs):
            module.manual_backward(loss)
            optimizer.step()
    finally:
        module.untoggle_optimizer(optimizer)
    return loss, logs
