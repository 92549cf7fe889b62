"""Training data whose order, position and randomness survive a checkpoint: exact, step-for-step resume.

A run stopped at step k (a crash, Ctrl-C, SIGTERM) and resumed from its checkpoint must see the same batches, with
the same random augmentations, as the run that was never stopped. Two things make that hold here, for any number
of DataLoader workers and DDP ranks:

* :class:`ResumableSampler` draws the epoch's order from ``(seed, epoch)`` alone (like ``DistributedSampler``) and,
  when it belongs to a Lightning ``Trainer``, asks the trainer's restored fit-loop progress for the epoch and the
  number of batches of it already trained, and starts after them. The position comes from the checkpoint's loop
  state, so nothing extra is stored, and it is right for checkpoints written mid-step (an exception), at the end of
  a step (``last.ckpt``) or after validation. Lightning's own stateful-loader resume is off by the prefetched batch,
  and its samplers are iterated before their epoch is set when a run resumes mid-epoch; this sampler avoids both.
* Random augmentation never touches the global RNG: the sampler yields :class:`SampleIndex` values (plain ints that
  also carry their epoch) and datasets draw each sample's randomness from :func:`sample_generator`, seeded by
  ``(seed, epoch, index)``. The global RNG (the models' noise, AN's self-sampling) is then consumed by the training
  step alone, and :class:`common.training.callbacks.resume.ExactResume` saves and restores it per rank.

:func:`resumable_train_loader` builds the training ``DataLoader`` of a DataModule this way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = [
    "ResumableSampler",
    "SampleIndex",
    "augmentation_generator",
    "default_train_seed",
    "resumable_train_loader",
    "sample_generator",
    "trainer_position",
]


class SampleIndex(int):
    """A dataset index that also carries the epoch it was drawn in and the sampler's seed (``index.epoch``,
    ``index.seed``); behaves as a plain ``int``."""

    epoch: int
    seed: int

    def __new__(cls, value: int, epoch: int = 0, seed: int = 0) -> SampleIndex:
        obj = super().__new__(cls, value)
        obj.epoch = int(epoch)
        obj.seed = int(seed)
        return obj

    def __reduce__(self):  # keep the epoch and seed when the index is sent to a DataLoader worker
        return SampleIndex, (int(self), self.epoch, self.seed)

    def __repr__(self) -> str:
        return f"SampleIndex({int(self)}, epoch={self.epoch}, seed={self.seed})"


def default_train_seed() -> int:
    """The training order's seed: the run's ``seed_everything`` seed (``PL_GLOBAL_SEED``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def sample_generator(seed: int, index: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for one sample's random augmentation, seeded by ``(seed, epoch, index)``.

    ``index`` is what the dataset's ``__getitem__`` received: a :class:`SampleIndex` (its epoch is used) or a plain
    int (epoch 0). The same sample in the same epoch always gets the same draws, whichever worker or rank loads it
    and whether or not the run was resumed; a new epoch gets new draws.
    """
    epoch = getattr(index, "epoch", 0)
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def augmentation_generator(index: int) -> torch.Generator | None:
    """The generator a dataset's ``__getitem__`` draws its random augmentation from.

    For a :class:`SampleIndex` (training batches of :func:`resumable_train_loader`): ``sample_generator(index.seed,
    index)``, so the draws survive a resume. For a plain int (a user's own sampler or loader): ``None``, which torch's
    random functions read as the global RNG.
    """
    if isinstance(index, SampleIndex):
        return sample_generator(index.seed, index)
    return None


def trainer_position(trainer: pl.Trainer) -> tuple[int, int]:
    """``(epoch, batches of it already trained)`` from a trainer's (restored) fit-loop progress.

    ``processed`` counts a batch once its training step has finished, so a checkpoint written by an exception in the
    middle of step k gives k (the step is redone) and one written at the end of step k gives k + 1.
    """
    loop = trainer.fit_loop
    return int(loop.epoch_progress.current.processed), int(loop.epoch_loop.batch_progress.current.processed)


class ResumableSampler(DistributedSampler):
    """Seeded per-epoch order, split over DDP ranks, that can start in the middle of an epoch.

    Every epoch is a permutation of the dataset drawn from ``seed + epoch`` (``shuffle``) or the identity, padded by
    wrapping around to a multiple of the number of replicas (training: every rank runs the same number of steps),
    and rank ``r`` takes every ``num_replicas``-th index starting at ``r``. It subclasses ``DistributedSampler`` so
    Lightning uses it as it is instead of wrapping it.

    Args:
        dataset: the dataset (only its length is used).
        batch_size: the DataLoader's batch size (to turn a position in batches into one in samples).
        shuffle: draw a new permutation every epoch.
        seed: the order's seed (the same on every rank).
        num_replicas, rank: the DDP world size and this process's rank (default: from ``torch.distributed``, else
            1 and 0).
        position: a function returning ``(epoch, batches already trained in it)``, asked each time an epoch's
            iteration starts (see :func:`trainer_position`); ``None`` uses :meth:`set_epoch` and starts at 0.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        position: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if num_replicas is None:
            num_replicas = torch.distributed.get_world_size() if distributed else 1
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.position = position

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's indices of a whole epoch."""
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        else:
            order = list(range(n))
        if self.total_size > n:
            order += (order * (self.total_size // max(n, 1) + 1))[: self.total_size - n]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[SampleIndex]:
        epoch, start_batch = self.position() if self.position is not None else (self.epoch, 0)
        indices = self.epoch_indices(epoch)
        return iter([SampleIndex(i, epoch, self.seed) for i in indices[start_batch * self.batch_size :]])


def resumable_train_loader(
    datamodule: pl.LightningDataModule,
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int | None = None,
    drop_last: bool = True,
    **loader_kwargs,
) -> DataLoader:
    """The training ``DataLoader`` of ``datamodule`` over ``dataset``, exactly resumable.

    The sampler is a :class:`ResumableSampler` that follows the attached trainer's loop progress (when the
    DataModule has a trainer), so a resumed run continues with the next batch of the interrupted epoch.
    ``seed`` (default :func:`default_train_seed`) fixes the order of every epoch and, through :class:`SampleIndex`,
    every sample's augmentation. The loader has its own ``generator`` so that creating its iterator (which draws a
    base seed) does not consume the global RNG. ``loader_kwargs`` go to ``DataLoader`` (``num_workers``,
    ``pin_memory``, ``collate_fn``, ...).
    """
    seed = default_train_seed() if seed is None else int(seed)

    def position() -> tuple[int, int]:
        trainer = getattr(datamodule, "trainer", None)
        return trainer_position(trainer) if trainer is not None else (sampler.epoch, 0)

    sampler = ResumableSampler(dataset, batch_size, shuffle=shuffle, seed=seed, position=position)
    if loader_kwargs.get("num_workers", 0) > 0:
        loader_kwargs.setdefault("persistent_workers", False)
    loader_kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **loader_kwargs)
