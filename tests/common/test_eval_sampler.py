"""EvalDistributedSampler: every index exactly once over the ranks, no padding (unlike DistributedSampler)."""

import pytest
from torch.utils.data import DistributedSampler

from common.data.distributed import EvalDistributedSampler, eval_sampler


@pytest.mark.parametrize(("length", "world"), [(5, 2), (7, 3), (2, 4), (8, 2)])
def test_each_index_once(length, world):
    dataset = list(range(length))
    shards = [list(EvalDistributedSampler(dataset, num_replicas=world, rank=r)) for r in range(world)]
    assert sorted(i for shard in shards for i in shard) == dataset
    assert [len(EvalDistributedSampler(dataset, num_replicas=world, rank=r)) for r in range(world)] == [
        len(s) for s in shards
    ]
    assert shards[0] == list(range(0, length, world))


def test_lightning_default_sampler_pads():
    padded = [list(DistributedSampler(list(range(5)), num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert sum(len(s) for s in padded) == 6  # one image twice: what the eval sampler avoids
    assert isinstance(EvalDistributedSampler(list(range(5)), num_replicas=2, rank=0), DistributedSampler)


def test_no_process_group_means_no_sampler():
    assert eval_sampler(list(range(3))) is None
