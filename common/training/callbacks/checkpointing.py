"""Checkpoint callbacks: a resumable ``last.ckpt`` during training, ``on_exception.ckpt`` on a coordinated stop, and
the W&B run id in every checkpoint.

What each stop leaves (the CLI's ``--ckpt_path last`` picks the newest checkpoint that resumes exactly):

* ``kill -9``, the OOM killer, a lost node: the last periodic ``last.ckpt`` (:class:`PeriodicCheckpoint`, every
  ``every_minutes`` minutes of training and / or every ``every_n_steps`` optimiser steps);
* SIGTERM, Ctrl-C (deferred to the end of the running batch, :class:`common.training.callbacks.signals.GracefulStop`):
  ``on_exception.ckpt`` at that batch boundary, on every rank together;
* an exception raised by one process (a corrupt image in one DDP shard, a bug inside a training step): no new
  checkpoint. A checkpoint written by one rank alone would need collectives the other ranks never join (the job would
  hang), and one written in the middle of a training step holds a half-applied batch (D updated, G not): resume uses
  the last periodic ``last.ckpt`` instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from common.training.callbacks.nonfinite import NonFiniteLossError
from common.training.checkpoints import CheckpointWriteError
from common.training.runs import results_dir

__all__ = ["InterruptCheckpoint", "PeriodicCheckpoint", "WandbRunId", "checkpoint_dir", "stored_wandb_run_id"]


def checkpoint_dir(trainer: pl.Trainer) -> Path:
    """The folder of the trainer's first ``ModelCheckpoint`` (else ``<results dir>/checkpoints``)."""
    ckpt = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath), None)
    return Path(ckpt.dirpath) if ckpt is not None else results_dir(trainer) / "checkpoints"


def _inside_a_step(trainer: pl.Trainer) -> bool:
    """Whether a training step has started and not finished (an exception raised inside ``training_step``)."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.total
    return progress.started > progress.processed


class InterruptCheckpoint(Callback):
    """Save ``on_exception.ckpt`` next to the run's other checkpoints when training stops at a batch boundary on an
    exception (SIGTERM and Ctrl-C, which stop at the end of the running batch, or an error between batches), and
    remove it when training ends normally.

    Nothing is written (module docstring) after a non-finite loss
    (:class:`~common.training.callbacks.nonfinite.NonFiniteLossError`) or a failed checkpoint write, before the first
    optimiser step, for an exception inside a training step (the batch is half applied: resume uses the periodic
    ``last.ckpt``), or under DDP for an exception other than a coordinated stop (saving runs collectives that the other
    ranks would never join).

    Unlike Lightning's ``OnExceptionCheckpoint`` it does not turn every ``fit()`` into ``fit(ckpt_path="last")``
    (which silently resumes an old run that shares the folder); resuming is explicit, through the CLI's
    ``--ckpt_path last`` or a path.
    """

    FILENAME = "on_exception.ckpt"

    @staticmethod
    def checkpoint_dir(trainer: pl.Trainer) -> Path:
        """The run's checkpoint folder (:func:`checkpoint_dir`)."""
        return checkpoint_dir(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Write ``on_exception.ckpt`` when ``fit`` stops on an exception at a batch boundary (class docstring)."""
        if trainer.state.fn != "fit" or isinstance(exception, (NonFiniteLossError, CheckpointWriteError)):
            return  # weights updated by a NaN loss are not worth keeping; a failing disk fails again
        coordinated = isinstance(exception, SIGTERMException)  # every rank stops at the same batch boundary
        why = None
        if trainer.world_size > 1 and not coordinated:
            why = f"rank {trainer.global_rank} failed alone (a checkpoint needs every rank)"
        elif _inside_a_step(trainer):
            why = "the exception came inside a training step (its batch is half applied)"
        elif trainer.global_step == 0:
            why = "no optimiser step was taken"
        if why is not None:
            print(
                f"[rank {trainer.global_rank}] {type(exception).__name__}: {exception}\n"
                f"no {self.FILENAME} written: {why}; resume with --ckpt_path last (the newest periodic last.ckpt)",
                flush=True,
            )
            return
        try:
            trainer.save_checkpoint(checkpoint_dir(trainer) / self.FILENAME, weights_only=False)
        except CheckpointWriteError as err:
            rank_zero_warn(f"{err} (while handling {type(exception).__name__}: {exception})")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remove ``on_exception.ckpt`` (rank 0) once training has ended normally."""
        path = checkpoint_dir(trainer) / self.FILENAME
        if trainer.is_global_zero and path.is_file():
            path.unlink()


class PeriodicCheckpoint(Callback):
    """Own the run's ``last.ckpt``: written (atomically, through the trainer's checkpoint I/O) during training, so that
    a process killed without warning (``kill -9``, the OOM killer, a lost node) loses at most the work since the last
    one, and at the end of the last training batch.

    Every write happens at the end of a training batch, a batch boundary where resuming is exact: every
    ``every_minutes`` minutes of training (rank 0's clock, broadcast so that every DDP rank saves together) and / or
    every ``every_n_steps`` optimiser steps (``trainer.global_step``, which counts the steps of every optimiser: a GAN
    iteration with one D and one G step is 2), and always after the batch that ends training (``max_steps`` reached,
    or the last batch of the last epoch), before anything the end of training does (final validation, pictures, the
    demo's judge) draws random numbers, so that ``fit --ckpt_path last.ckpt --trainer.max_steps <more>`` continues
    exactly as a run that went there directly.

    Args:
        every_minutes: minutes of training between two saves (default 10: a paper run loses at most ~10 minutes);
            ``None``: no time-based saves.
        every_n_steps: optimiser steps between two saves; ``None``: no step-based saves.
    """

    FILENAME = "last.ckpt"

    def __init__(self, every_minutes: float | None = 10.0, every_n_steps: int | None = None) -> None:
        if every_minutes is not None and every_minutes <= 0:
            raise ValueError(f"every_minutes must be > 0 or None, got {every_minutes}")
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}")
        self.every_minutes, self.every_n_steps = every_minutes, every_n_steps
        self._last_time: float | None = None
        self._last_step: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the clock and the step count (a resumed run counts from where it resumed)."""
        self._last_time, self._last_step = time.monotonic(), trainer.global_step

    def _due(self, trainer: pl.Trainer) -> bool:
        step = trainer.global_step
        due = self.every_n_steps is not None and step - (self._last_step or 0) >= self.every_n_steps
        if self.every_minutes is not None:
            late = time.monotonic() - (self._last_time or time.monotonic()) >= 60.0 * self.every_minutes
            if trainer.world_size > 1:  # rank 0's clock decides for all ranks
                late = bool(trainer.strategy.broadcast(late, src=0))
            due = due or late
        return due and step > (self._last_step or 0)

    @staticmethod
    def _training_ends(trainer: pl.Trainer) -> bool:
        """Whether the batch that just ended is the last one of ``fit`` (the same on every rank)."""
        if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
            return True
        progress = trainer.fit_loop.epoch_loop.batch_progress
        epoch_ends = progress.is_last_batch or progress.current.ready >= trainer.num_training_batches
        max_epochs = trainer.max_epochs
        return epoch_ends and max_epochs not in (None, -1) and trainer.current_epoch + 1 >= max_epochs

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Save ``last.ckpt`` when it is due, and after the last training batch."""
        if self._due(trainer) or self._training_ends(trainer):
            path = checkpoint_dir(trainer) / self.FILENAME
            trainer.save_checkpoint(path, weights_only=False)  # the full state (weights, optimisers, loops, RNG)
            self._last_time, self._last_step = time.monotonic(), trainer.global_step
            rank_zero_info(f"saved {path} at optimiser step {trainer.global_step}")


class WandbRunId(Callback):
    """Store the W&B run id in every checkpoint (key ``wandb_run_id``), so the CLI can resume that run."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]):
        """Put the W&B run id (the logger's ``version`` when it is a string) into ``checkpoint['wandb_run_id']``."""
        version = getattr(trainer.logger, "version", None)
        if isinstance(version, str):
            checkpoint["wandb_run_id"] = version


def stored_wandb_run_id(ckpt_path: str | Path) -> str | None:
    """The W&B run id saved by :class:`WandbRunId` in a checkpoint, if any (read as data: ``weights_only``)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    run_id = checkpoint.get("wandb_run_id")
    return run_id if isinstance(run_id, str) else None
