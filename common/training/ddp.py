"""DDP settings that GAN training needs, applied from a LightningModule's ``setup``."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.strategies import DDPStrategy

__all__ = ["allow_unused_parameters"]


def allow_unused_parameters(trainer: pl.Trainer) -> bool:
    """Turn on DDP's ``find_unused_parameters`` unless the user set it, and say whether it is on.

    GAN steps update the generator and the critic in separate backward passes (and inpainting's phase 1 never
    uses the critics), so every backward leaves some parameters without gradients, which plain ``ddp`` rejects.
    Call it from ``LightningModule.setup``: the strategy wraps the model after that hook, so the same config runs
    unchanged on one device and under ``--trainer.strategy ddp``. Non-DDP strategies are left alone (``False``).
    """
    strategy = trainer.strategy
    if not isinstance(strategy, DDPStrategy):
        return False
    # Lightning keeps the DistributedDataParallel kwargs in this attribute (pytorch_lightning 2.x).
    kwargs = strategy._ddp_kwargs
    kwargs.setdefault("find_unused_parameters", True)
    return bool(kwargs["find_unused_parameters"])
