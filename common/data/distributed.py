"""Exactly-once evaluation under DDP: a distributed sampler that neither pads nor drops.

Lightning gives evaluation loaders a ``DistributedSampler``, which pads the dataset with repeated samples until
its length divides by the number of processes, so with 5 images on 2 processes one image is scored twice and the
means are not those of one process. :class:`EvalDistributedSampler` gives rank ``r`` of ``R`` the indices
``r, r + R, r + 2R, ...``: every sample exactly once over all ranks (ranks may get one sample more or less), in a
fixed order. Combined with metric states reduced by ``sum`` (sums and counts, never per-rank means), evaluation
numbers are independent of the number of processes. It subclasses ``DistributedSampler``, so Lightning keeps it
instead of inserting its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["EvalDistributedSampler", "eval_sampler"]


class EvalDistributedSampler(DistributedSampler):
    """Sequential, unpadded sharding of ``dataset``: rank ``r`` of ``R`` gets indices ``r::R``.

    Args:
        dataset: A map-style dataset.
        num_replicas: Number of processes (default: the initialised process group's size).
        rank: This process's rank (default: the process group's rank).
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(self.rank, len(self.dataset), self.num_replicas))
        self.total_size = len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def eval_sampler(dataset: Dataset) -> EvalDistributedSampler | None:
    """An :class:`EvalDistributedSampler` when a process group with more than one process is initialised, else
    ``None`` (a plain sequential loader)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return EvalDistributedSampler(dataset)
    return None
