"""Ctrl-C stops training at the end of the running batch, as SIGTERM does; the exit status names the signal.

Python turns Ctrl-C (SIGINT) into a ``KeyboardInterrupt`` wherever the program is, usually in the middle of a
training step: a GAN batch whose D update is applied and whose G update is not, batch-norm counters advanced, Adam
moments half updated. A checkpoint of that state cannot resume exactly. :class:`GracefulStop` installs, while
``fit`` trains, a SIGINT handler that only asks Lightning to stop: the same flag SIGTERM sets, which Lightning reads
at the end of every batch (and broadcasts from rank 0 under DDP, so every rank stops after the same batch), then
raises its ``SIGTERMException``. :class:`~common.training.callbacks.checkpointing.InterruptCheckpoint` writes
``on_exception.ckpt`` at that boundary. A second Ctrl-C stops at once (a ``KeyboardInterrupt``; no checkpoint is
written inside a step, see :mod:`common.training.callbacks.checkpointing`).

The process then exits with ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM), as a shell reports a process
killed by that signal, so a job wrapper or scheduler never mistakes a stopped run for a finished one
(:func:`exit_status`; Lightning's ``SIGTERMException`` alone exits with status 0).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

__all__ = ["GracefulStop", "exit_status"]


class GracefulStop(Callback):
    """Defer Ctrl-C (SIGINT) to the end of the running training batch while ``fit`` trains (module docstring)."""

    def __init__(self) -> None:
        self.received: int | None = None  # the signal that asked for the stop
        self._previous: Any = None
        self._trainer: pl.Trainer | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.received == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.received = signum
        if self._trainer is not None:
            self._trainer._signal_connector.received_sigterm = True  # Lightning's stop-at-batch-end flag
        print(
            f"\nCtrl-C: stopping at the end of this batch and writing on_exception.ckpt (rank "
            f"{getattr(self._trainer, 'global_rank', 0)}); press Ctrl-C again to stop at once, without a checkpoint",
            flush=True,
        )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Install the SIGINT handler (main thread only: Python delivers signals there)."""
        self.received = None
        if threading.current_thread() is threading.main_thread():
            self._trainer = trainer
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Under DDP, a stop asked on any rank (Ctrl-C, SIGTERM) becomes every rank's, at this same batch end."""
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(bool(trainer.received_sigterm), all=False)
            if stop and not trainer.received_sigterm:
                trainer._signal_connector.received_sigterm = True

    def _restore(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
        self._previous, self._trainer = None, None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Restore the previous SIGINT handler."""
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Restore the previous SIGINT handler; a SIGTERM stop is recorded for :func:`exit_status`."""
        if self.received is None and trainer.received_sigterm:
            self.received = signal.SIGTERM
        self._restore()


def exit_status(trainer: pl.Trainer | None) -> int:
    """``128 + signal`` for a run stopped by SIGINT or SIGTERM (130, 143), else 1."""
    stop = next((cb for cb in getattr(trainer, "callbacks", []) if isinstance(cb, GracefulStop)), None)
    signum = stop.received if stop is not None and stop.received is not None else None
    if signum is None and trainer is not None and trainer.received_sigterm:
        signum = signal.SIGTERM
    return 128 + int(signum) if signum is not None else 1
