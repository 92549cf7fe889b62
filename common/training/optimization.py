"""One manual optimiser step, as Lightning's manual-optimization GAN example writes it, in one place.

GAN training (both tasks) alternates the optimisers of two networks. Each update is the same five moves:
``toggle_optimizer`` (so the other network's parameters need no gradient during the forward pass), the forward
pass and loss, ``zero_grad``, ``manual_backward``, ``step`` and ``untoggle_optimizer``. :func:`manual_step` does
exactly that around a loss function that returns ``(loss, logs)`` (the house style of the loss objects), so the
modules' ``training_step`` reads as the sequence of updates and nothing else. It is also where a non-finite loss is
caught: the trainer's :class:`common.training.callbacks.nonfinite.NonFiniteGuard` (when present) sees every loss
before the
update and either records it for a clear error or has the update skipped.

:func:`accumulated_step` is the same update over several micro-batches (gradient accumulation): each part's forward
and backward pass runs before the next part's forward pass (activation memory of one part), its loss weighted, and
the optimiser steps once on the summed gradients, as BigGAN-PyTorch's ``train_fns.py`` does (each micro-batch loss
divided by ``num_D_accumulations`` / ``num_G_accumulations``, one ``optim.step()``). Lightning's
``accumulate_grad_batches`` is not available under manual optimisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
from torch import Tensor

from common.training.callbacks.nonfinite import find_guard

__all__ = ["accumulated_step", "manual_step"]

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


def accumulated_step(
    module: pl.LightningModule, optimizer: Any, parts: Sequence[tuple[float, LossFn]], name: str = "model"
) -> tuple[Tensor, dict[str, Any]]:
    """Run one update of ``optimizer`` on the weighted sum of the micro-batch losses ``sum_i w_i * loss_i``.

    Inside one ``toggle_optimizer`` (as :func:`manual_step`): ``zero_grad``; for each ``(w_i, loss_fn_i)`` of
    ``parts`` the loss and the backward pass of ``w_i * loss_i`` (the gradients add up, the part's graph is freed
    before the next part runs); then the trainer's ``NonFiniteGuard`` sees the summed loss and logs, and the optimiser
    steps once. With weights ``n_i / n`` and losses that are means over their micro-batch, the gradients are those
    of the mean loss over the whole batch. A single part of weight 1 is exactly :func:`manual_step`.

    Args:
        module: the LightningModule (manual optimization) that owns ``optimizer``.
        optimizer: one of ``module.optimizers()``.
        parts: ``(weight, loss_fn)`` per micro-batch; each ``loss_fn`` returns ``(loss, logs)``.
        name: what this optimiser updates, for error messages.

    Returns:
        The summed weighted loss (detached unless there is one part) and the weighted sums of the parts' logged
        values (the whole batch's means when the parts log means).

    Raises:
        ValueError: no parts.
    """
    if not parts:
        raise ValueError(f"accumulated_step ({name}) needs at least one (weight, loss_fn) part")
    if len(parts) == 1 and parts[0][0] == 1.0:
        return manual_step(module, optimizer, parts[0][1], name=name)
    module.toggle_optimizer(optimizer)
    try:
        optimizer.zero_grad(set_to_none=True)
        total: Tensor | None = None
        logs: dict[str, Any] = {}
        for weight, loss_fn in parts:
            loss, part_logs = loss_fn()
            module.manual_backward(loss * weight)
            weighted = loss.detach() * weight
            total = weighted if total is None else total + weighted
            for key, value in part_logs.items():
                logs[key] = value * weight if key not in logs else logs[key] + value * weight
        guard = find_guard(module)
        if guard is None or guard.admit(module, name, total, logs):
            optimizer.step()
    finally:
        module.untoggle_optimizer(optimizer)
    return total, logs
