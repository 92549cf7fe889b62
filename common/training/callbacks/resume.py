"""Exact resume: every rank's random-number state goes into the checkpoint and comes back on resume.

With :mod:`common.data.resumable` keeping the data order, position and augmentations independent of the global
RNG, the only randomness a training step consumes is the global generators' (Python ``random``, NumPy, torch on
the CPU and on each CUDA device): the GANs' noise and AN's self-sampling. :class:`ExactResume` stores those states
for every DDP rank (gathered to rank 0, which writes the checkpoint) under ``checkpoint["rng_states"]`` and, on
resume, gives each rank its own state back right before the first training batch, after everything else that
resuming does (building data loaders, validation before fit) has run. The losses after the resume then equal the
uninterrupted run's, step for step, on the CPU.

The checkpoint also records the training loader's per-device batch size and world size (under
``checkpoint["train_data_layout"]``, :func:`train_data_layout`). The sampler resumes an interrupted epoch after the
number of batches already trained, counted in the resumed run's batch size and world size, so resuming mid-epoch
with other ones repeats or skips samples of that epoch (later epochs are whole): the resume warns, naming both
layouts and the samples concerned. It warns rather than refuses: moving a pre-empted run to fewer or more devices,
or to a smaller batch, is a legitimate way to keep it going, and the cost is bounded (part of one epoch).

That holds for checkpoints written at a batch boundary (the periodic ``last.ckpt``, Ctrl-C and SIGTERM stops,
validation, the end of training). A checkpoint written inside a training step (SLURM's pre-emption signal makes
Lightning save ``hpc_ckpt_*.ckpt`` at once, wherever the step is) holds a half-applied batch: it is marked
(``checkpoint["resume_exact"]``) and loading it warns; the CLI's ``--ckpt_path last`` prefers exact checkpoints.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from common.data.resumable import ResumableSampler, trainer_position

__all__ = [
    "EXACT_KEY",
    "LAYOUT_KEY",
    "ExactResume",
    "capture_rng_state",
    "inexact_reason",
    "restore_rng_state",
    "train_data_layout",
]

KEY = "rng_states"
#: ``None`` when resuming from the checkpoint continues exactly, else why not (a sentence).
EXACT_KEY = "resume_exact"
#: ``{"batch_size", "world_size"}`` of the run's resumable training loader (:func:`train_data_layout`).
LAYOUT_KEY = "train_data_layout"


def _loaders(node: Any):
    if isinstance(node, dict):
        for value in node.values():
            yield from _loaders(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _loaders(value)
    elif node is not None:
        yield node


def train_data_layout(trainer: pl.Trainer) -> dict[str, int] | None:
    """``{"batch_size": per-device batch size, "world_size": ranks}`` of the trainer's training loader whose sampler
    is a :class:`common.data.resumable.ResumableSampler` (what its position in an epoch is counted in); None when it
    has none (no training loader yet, or a user's own sampler)."""
    for loader in _loaders(getattr(trainer, "train_dataloader", None)):
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, ResumableSampler):
            return {"batch_size": int(sampler.batch_size), "world_size": int(sampler.num_replicas)}
    return None


def capture_rng_state() -> dict[str, Any]:
    """This process's global RNG states: Python, NumPy, torch CPU and (if initialised) every CUDA device.

    Only tensors, ints, floats and tuples, so checkpoints stay loadable with ``torch.load(weights_only=True)``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the global RNG states captured by :func:`capture_rng_state`."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class ExactResume(Callback):
    """Save every rank's RNG state in checkpoints and restore it before the first training batch of a resume.

    A checkpoint written with a different number of ranks restores rank ``r``'s state from rank
    ``r % saved_ranks`` (so the run continues, though not bit-for-bit; a warning says so). Resuming mid-epoch with
    another per-device batch size or world size than the checkpoint's warns too (module docstring).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._saved_layout: dict[str, int] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Empty: the RNG states travel in ``checkpoint['rng_states']`` (:meth:`on_save_checkpoint`), not in the
        callback state.
        """
        return {}

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """Store every rank's RNG state (gathered to rank 0) under ``checkpoint['rng_states']``; count an unfinished
        batch as not started.
        """
        state = capture_rng_state()
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, state)
        else:
            gathered = [state]
        checkpoint[KEY] = gathered
        layout = train_data_layout(trainer)
        if layout is not None:
            checkpoint[LAYOUT_KEY] = layout
        progress = trainer.fit_loop.epoch_loop.batch_progress.total
        if trainer.state.fn == "fit" and progress.started > progress.processed:
            checkpoint[EXACT_KEY] = (
                f"written inside training step {trainer.global_step} (after batch {progress.processed}): part of that "
                "batch's updates may be applied and the random state is mid-batch"
            )
        else:
            checkpoint[EXACT_KEY] = None
        _rewind_unfinished_batch(checkpoint)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """Keep this rank's saved RNG state (rank ``r % saved_ranks``, with a warning when the rank count changed);
        warn when the checkpoint cannot resume exactly."""
        reason = inexact_reason(checkpoint)
        if reason is not None:
            pl.utilities.rank_zero_warn(f"resuming from this checkpoint is not exact: {reason}")
        self._saved_layout = checkpoint.get(LAYOUT_KEY)
        states = checkpoint.get(KEY)
        if not states:
            self._pending = None
            return
        if len(states) != trainer.world_size:
            pl.utilities.rank_zero_warn(
                f"the checkpoint holds the RNG states of {len(states)} ranks but this run has {trainer.world_size}: "
                "rank r resumes with saved rank r % n's state, so the continuation is not bit-for-bit"
            )
        self._pending = states[trainer.global_rank % len(states)]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After a resume: warn when the interrupted epoch continues with another per-device batch size or world
        size than the checkpoint's (the sampler's position is counted in batches of the new layout)."""
        saved, self._saved_layout = self._saved_layout, None
        now = train_data_layout(trainer)
        if not saved or now is None or saved == now:
            return
        epoch, batches = trainer_position(trainer)
        if batches == 0:  # an epoch boundary: the next epoch is whole whatever the layout
            return
        trained = batches * saved["batch_size"] * saved["world_size"]
        skipped = batches * now["batch_size"] * now["world_size"]
        effect = (
            f"{skipped - trained} samples of it are never trained in this epoch"
            if skipped > trained
            else f"{trained - skipped} samples of it are trained twice in this epoch"
        )
        pl.utilities.rank_zero_warn(
            f"resuming epoch {epoch} after {batches} batches with per-device batch size {now['batch_size']} and "
            f"world size {now['world_size']}, but the checkpoint's run had batch size {saved['batch_size']} and "
            f"world size {saved['world_size']}: it trained the epoch's first {trained} samples and this run resumes "
            f"after sample {skipped}, so {effect} (later epochs are whole; the continuation is not exact). Resume with "
            f"--data.init_args.batch_size {saved['batch_size']} on {saved['world_size']} device(s) in all to continue "
            "exactly."
        )

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        """Restore the pending RNG state before the first training batch after a resume (once)."""
        if self._pending is not None:
            restore_rng_state(self._pending)
            self._pending = None


def inexact_reason(checkpoint: dict) -> str | None:
    """Why resuming from ``checkpoint`` does not continue exactly, or ``None`` when it does."""
    if checkpoint.get(EXACT_KEY):
        return str(checkpoint[EXACT_KEY])
    if "loops" in checkpoint and not checkpoint.get(KEY):
        return "it holds no random-number states (written without ExactResume)"
    return None


def _rewind_unfinished_batch(checkpoint: dict) -> None:
    """A checkpoint written while a batch was unfinished (an exception, Ctrl-C) counts that batch as not started.

    Lightning rewinds the epoch's batch counters of such a checkpoint when it resumes (``reset_on_restart``) but not
    the run's totals, so ``val_check_interval`` (counted on the totals when ``check_val_every_n_epoch`` is None)
    would fire one batch early after every such resume. Rewinding the totals here the same way keeps validation,
    and the RNG it may consume, where the uninterrupted run has it.
    """
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
    if not progress:
        return
    for counters in (progress.get("total"), progress.get("current")):
        if counters and counters.get("processed", 0) < counters.get("ready", 0):
            counters["ready"] = counters["started"] = counters["processed"]
