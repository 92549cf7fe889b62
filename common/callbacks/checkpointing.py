"""Checkpoint callbacks: nothing checkpointed is lost on a crash or Ctrl-C, and resume continues the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, OnExceptionCheckpoint

from common.callbacks.images import results_dir

__all__ = ["InterruptCheckpoint", "WandbRunId"]


class InterruptCheckpoint(OnExceptionCheckpoint):
    """Save ``on_exception.ckpt`` next to the run's other checkpoints when training stops on an exception
    (Ctrl-C included). ``fit --ckpt_path last`` picks the newest of it and ``last.ckpt``; the file is removed
    when training ends normally. Unlike Lightning's callback, the folder is found at setup time."""

    def __init__(self) -> None:
        super().__init__(dirpath=".", filename="on_exception")

    def _resolve(self, trainer: pl.Trainer) -> None:
        ckpt = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath), None)
        self.dirpath = str(ckpt.dirpath) if ckpt is not None else str(results_dir(trainer) / "checkpoints")

    def on_exception(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self._resolve(trainer)
        super().on_exception(trainer, *args, **kwargs)

    def teardown(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self._resolve(trainer)
        super().teardown(trainer, *args, **kwargs)


class WandbRunId(Callback):
    """Store the W&B run id in every checkpoint (key ``wandb_run_id``), so the CLI can resume that run."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]):
        version = getattr(trainer.logger, "version", None)
        if isinstance(version, str):
            checkpoint["wandb_run_id"] = version


def stored_wandb_run_id(ckpt_path: str | Path) -> str | None:
    """The W&B run id saved by :class:`WandbRunId` in a checkpoint, if any."""
    import torch

    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    run_id = checkpoint.get("wandb_run_id")
    return run_id if isinstance(run_id, str) else None
