"""Lightning callbacks and helpers shared by both tasks."""

from common.training.callbacks.checkpointing import InterruptCheckpoint, WandbRunId, stored_wandb_run_id
from common.training.callbacks.images import log_image

__all__ = ["InterruptCheckpoint", "WandbRunId", "log_image", "stored_wandb_run_id"]
