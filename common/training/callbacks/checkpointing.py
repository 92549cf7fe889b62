"""Checkpoint callbacks: nothing checkpointed is lost on a crash or Ctrl-C, and resume continues the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_warn

from common.training.callbacks.nonfinite import NonFiniteLossError
from common.training.checkpoints import CheckpointWriteError
from common.training.runs import results_dir

__all__ = ["InterruptCheckpoint", "WandbRunId"]


class InterruptCheckpoint(Callback):
    """Save ``on_exception.ckpt`` next to the run's other checkpoints when training stops on an exception
    (Ctrl-C and SIGTERM included: Lightning turns SIGTERM into an exception at the end of the running step), and
    remove it when training ends normally. Nothing is written after a non-finite loss
    (:class:`~common.training.callbacks.nonfinite.NonFiniteLossError`) or a failed checkpoint write.

    Unlike Lightning's ``OnExceptionCheckpoint`` it does not turn every ``fit()`` into ``fit(ckpt_path="last")``
    (which silently resumes an old run that shares the folder); resuming is explicit, through the CLI's
    ``--ckpt_path last`` or a path.
    """

    FILENAME = "on_exception.ckpt"

    @staticmethod
    def checkpoint_dir(trainer: pl.Trainer) -> Path:
        """The folder of the trainer's first ``ModelCheckpoint`` (else ``<results dir>/checkpoints``)."""
        ckpt = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath), None)
        return Path(ckpt.dirpath) if ckpt is not None else results_dir(trainer) / "checkpoints"

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Write ``on_exception.ckpt`` when ``fit`` stops on an exception (not after a non-finite loss or a failed
        write).
        """
        if trainer.state.fn != "fit" or isinstance(exception, (NonFiniteLossError, CheckpointWriteError)):
            return  # weights updated by a NaN loss are not worth keeping; a failing disk fails again
        try:
            trainer.save_checkpoint(self.checkpoint_dir(trainer) / self.FILENAME)
        except CheckpointWriteError as err:
            rank_zero_warn(f"{err} (while handling {type(exception).__name__}: {exception})")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remove ``on_exception.ckpt`` (rank 0) once training has ended normally."""
        path = self.checkpoint_dir(trainer) / self.FILENAME
        if trainer.is_global_zero and path.is_file():
            path.unlink()


class WandbRunId(Callback):
    """Store the W&B run id in every checkpoint (key ``wandb_run_id``), so the CLI can resume that run."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]):
        """Put the W&B run id (the logger's ``version`` when it is a string) into ``checkpoint['wandb_run_id']``."""
        version = getattr(trainer.logger, "version", None)
        if isinstance(version, str):
            checkpoint["wandb_run_id"] = version


def stored_wandb_run_id(ckpt_path: str | Path) -> str | None:
    """The W&B run id saved by :class:`WandbRunId` in a checkpoint, if any."""
    import torch

    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    run_id = checkpoint.get("wandb_run_id")
    return run_id if isinstance(run_id, str) else None
