"""Lightning callbacks and helpers shared by both tasks."""

from common.callbacks.checkpointing import InterruptCheckpoint, WandbRunId, stored_wandb_run_id
from common.callbacks.images import log_image

__all__ = ["InterruptCheckpoint", "WandbRunId", "log_image", "stored_wandb_run_id"]
