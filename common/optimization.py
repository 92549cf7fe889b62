"""One manual optimiser step, as Lightning's manual-optimization GAN example writes it, in one place.

GAN training (both tasks) alternates the optimisers of two networks. Each update is the same five moves:
``toggle_optimizer`` (so the other network's parameters need no gradient during the forward pass), the forward
pass and loss, ``zero_grad``, ``manual_backward``, ``step`` and ``untoggle_optimizer``. :func:`manual_step` does
exactly that around a loss function that returns ``(loss, logs)`` (the house style of the loss objects), so the
modules' ``training_step`` reads as the sequence of updates and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from torch import Tensor

__all__ = ["manual_step"]

LossFn = Callable[[], tuple[Tensor, dict[str, Any]]]


def manual_step(module: pl.LightningModule, optimizer: Any, loss_fn: LossFn) -> tuple[Tensor, dict[str, Any]]:
    """Run one update of ``optimizer`` on the loss computed by ``loss_fn``.

    ``loss_fn`` runs inside ``module.toggle_optimizer(optimizer)``: parameters of the module's other optimisers
    have ``requires_grad=False`` while it runs, so the backward pass computes gradients for this optimiser's
    parameters only. The optimizer is untoggled even if ``loss_fn`` or the backward pass raises.

    Args:
        module: the LightningModule (manual optimization) that owns ``optimizer``.
        optimizer: one of ``module.optimizers()`` (a ``LightningOptimizer``).
        loss_fn: called with no arguments; returns the scalar loss and a dict of values to log.

    Returns:
        ``(loss, logs)`` as returned by ``loss_fn`` (the loss still attached to its graph's outputs).
    """
    module.toggle_optimizer(optimizer)
    try:
        loss, logs = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        module.manual_backward(loss)
        optimizer.step()
    finally:
        module.untoggle_optimizer(optimizer)
    return loss, logs
