"""What a non-finite (NaN or inf) loss does to a run: stop with a clear error, or skip the update.

:func:`common.training.optimization.manual_step` hands every loss (and its logged terms) to the trainer's
:class:`NonFiniteGuard` before the optimiser steps. Two policies:

* ``"raise"`` (default): the loss is checked on the device with no host synchronisation; the flags are read every
  ``check_every_n_steps`` optimiser steps, at the end of training and before any checkpoint is written. The run then
  stops with :class:`NonFiniteLossError` naming the first bad step, the network (``"discriminator"``, ...) and the
  loss terms that were not finite. No checkpoint is written after the bad step (the save that would have been is
  refused, and no ``on_exception.ckpt`` is written), so the run's last checkpoint is the last good one.
* ``"skip"``: every loss is checked on the host (one synchronisation per optimiser step); a non-finite one skips
  that optimiser step (no update, no optimiser-state change), counts it and logs ``train/nonfinite_skipped``.
  ``max_skips`` bounds the number of skipped steps before the run stops with the error anyway.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

__all__ = ["NonFiniteGuard", "NonFiniteLossError", "find_guard"]


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite; the message names the step, the network and the terms."""


def _terms(loss: Tensor, logs: dict[str, Any]) -> tuple[list[str], Tensor]:
    names, values = ["loss"], [loss.detach().float().reshape(())]
    for key, value in logs.items():
        if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
            names.append(key)
            values.append(value.detach().float().reshape(()).to(loss.device))
    return names, torch.stack(values)


def _describe(step: int, name: str, names: list[str], values: list[float], stops: bool = True) -> str:
    bad = [f"{n} = {v}" for n, v in zip(names, values, strict=True) if not torch.isfinite(torch.tensor(v))]
    good = [f"{n} = {v:.4g}" for n, v in zip(names, values, strict=True) if torch.isfinite(torch.tensor(v))]
    text = f"non-finite loss at optimiser step {step} ({name} update): {', '.join(bad)}" + (
        f" (finite: {', '.join(good)})" if good else ""
    )
    if not stops:
        return text
    return (
        text + ". Training stopped; the run's last checkpoint is from before this step. Lower the learning rate, use "
        "--trainer.precision 32, or set --nonfinite.policy skip to skip such steps."
    )


class NonFiniteGuard(Callback):
    """Stop (``"raise"``) or skip (``"skip"``) on a non-finite training loss (module docstring).

    Args:
        policy: ``"raise"`` or ``"skip"``.
        check_every_n_steps: ``"raise"`` only: how often (in optimiser steps) the device-side flags are read.
        max_skips: ``"skip"`` only: skipped steps allowed before the run stops anyway (``None``: no limit).
    """

    def __init__(
        self, policy: Literal["raise", "skip"] = "raise", check_every_n_steps: int = 50, max_skips: int | None = 100
    ) -> None:
        if policy not in ("raise", "skip"):
            raise ValueError(f"policy must be 'raise' or 'skip', got {policy!r}")
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.policy = policy
        self.check_every_n_steps = int(check_every_n_steps)
        self.max_skips = max_skips
        self.skipped = 0
        # "raise": per (network, logged terms), the step and term values of the first non-finite loss, on the device.
        self._first: dict[tuple[str, tuple[str, ...]], tuple[Tensor, Tensor]] = {}

    # ------------------------------------------------------------------ called by manual_step
    def admit(self, module: pl.LightningModule, name: str, loss: Tensor, logs: dict[str, Any]) -> bool:
        """Whether the optimiser may step on ``loss`` (``False``: skip this update)."""
        step = int(module.trainer.global_step)
        names, values = _terms(loss, logs)
        if self.policy == "skip":
            values_host = values.tolist()
            bad = not all(torch.isfinite(torch.tensor(values_host)))
            if module.trainer.world_size > 1:  # every rank skips together, or DDP's gradient all-reduce hangs
                bad = module.trainer.strategy.reduce_boolean_decision(bad, all=False)
            if not bad:
                return True
            self.skipped += 1
            module.log("train/nonfinite_skipped", float(self.skipped), reduce_fx="max")
            if self.max_skips is not None and self.skipped > self.max_skips:
                raise NonFiniteLossError(
                    f"{self.skipped} non-finite losses skipped, more than max_skips={self.max_skips}; last: "
                    + _describe(step, name, names, values_host)
                )
            pl.utilities.rank_zero_warn(
                f"skipping the update ({self.skipped} skipped so far; training goes on): "
                + _describe(step, name, names, values_host, stops=False)
            )
            return False
        bad = ~torch.isfinite(values).all()
        key = (name, tuple(names))
        if key not in self._first:
            self._first[key] = (torch.full((), -1, dtype=torch.long, device=values.device), values.clone())
        first_step, first_values = self._first[key]
        new = bad & (first_step < 0)
        first_step.copy_(torch.where(new, torch.full_like(first_step, step), first_step))
        first_values.copy_(torch.where(new, values, first_values))
        return True

    def check(self, trainer: pl.Trainer) -> None:
        """Read the device-side flags; raise :class:`NonFiniteLossError` for the earliest non-finite loss.

        Under DDP every rank raises together (a non-finite loss on one rank stops all of them).
        """
        found = []
        for (name, names), (step, values) in self._first.items():
            if int(step) >= 0:
                found.append((int(step), name, list(names), values.tolist()))
        bad = bool(found)
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            if not found:
                raise NonFiniteLossError("non-finite loss on another DDP rank (its log names the step and terms)")
            raise NonFiniteLossError(_describe(*min(found, key=lambda item: item[0])))

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """With ``policy='raise'``, :meth:`check` every ``check_every_n_steps`` optimiser steps."""
        if self.policy == "raise" and trainer.global_step % self.check_every_n_steps == 0:
            self.check(trainer)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """With ``policy='raise'``, :meth:`check` first: no checkpoint of weights updated by a non-finite loss."""
        if self.policy == "raise":
            self.check(trainer)  # never write a checkpoint of weights updated by a non-finite loss

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """With ``policy='raise'``, a last :meth:`check` (steps since the last periodic check)."""
        if self.policy == "raise":
            self.check(trainer)

    def state_dict(self) -> dict[str, Any]:
        """``{'skipped': number of skipped steps}`` (``policy='skip'``), saved in checkpoints."""
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the skipped-step count of :meth:`state_dict`."""
        self.skipped = int(state_dict.get("skipped", 0))


def find_guard(module: pl.LightningModule) -> NonFiniteGuard | None:
    """The :class:`NonFiniteGuard` among the callbacks of the module's trainer, if any."""
    trainer = getattr(module, "_trainer", None)
    if trainer is None:
        return None
    return next((cb for cb in trainer.callbacks if isinstance(cb, NonFiniteGuard)), None)
