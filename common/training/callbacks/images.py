"""Save pictures of a run as PNG files in its folder and, with a W&B logger, log them to W&B too."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor

from common.training.runs import RunFolder
from common.visualization import save_png

__all__ = ["log_image"]


def log_image(trainer: pl.Trainer, key: str, image: Tensor, caption: str | None = None) -> Path:
    """Write ``image`` (``(3, H, W)`` in [0, 1]) to ``<results dir>/images/<key>_step<global step>.png``.

    With a :class:`~pytorch_lightning.loggers.WandbLogger` the picture is also logged as a ``wandb.Image``
    under ``key`` at the trainer's global step. Only rank 0 writes. Returns the PNG path.
    """
    name = key.replace("/", "_").replace(" ", "_")
    path = RunFolder.of_trainer(trainer).images / f"{name}_step{trainer.global_step:07d}.png"
    if trainer.is_global_zero:
        save_png(image, path)
        if isinstance(trainer.logger, WandbLogger):
            extra = {"caption": [caption]} if caption else {}
            trainer.logger.log_image(key=key, images=[str(path)], **extra)
    return path
