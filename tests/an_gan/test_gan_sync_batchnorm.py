"""SyncBN and the EMA generator: ``--trainer.sync_batchnorm true`` converts every batch norm of the module, and picture
logging runs the EMA generator (its standing-statistics pass: batch norms in training mode) on rank 0 only. A
``SyncBatchNorm`` there is a collective on one rank of eight: the run hangs. The EMA copy keeps plain batch norms."""

import datetime
import functools

import pytest
import torch
import torch.multiprocessing as mp
from pytorch_lightning.plugins import TorchSyncBatchNorm
from torch import nn

from an_gan.module import ANGAN
from an_gan.networks import Discriminator, Generator
from an_gan.settings import EMASettings, PictureSettings
from common.layers import AttentiveNorm2d

K = 4


def _module(eval_generator: str = "ema") -> ANGAN:
    torch.manual_seed(0)
    an = functools.partial(AttentiveNorm2d, num_entities=4)
    return ANGAN(
        generator=Generator(K, 32, z_dim=8, ch=1, long_range=an, long_range_block=1),
        discriminator=Discriminator(K, 32, ch=1, long_range=an),
        ema=EMASettings(decay=0.5, start_step=0, standing_batches=2, standing_batch_size=8),
        eval_generator=eval_generator,
        pictures=PictureSettings(every_n_steps=0, per_class=2),
    )


def _sync_batchnorms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.SyncBatchNorm) for m in module.modules())


def test_the_ema_copy_of_a_converted_module_has_no_sync_batchnorm():
    """What ``Trainer(sync_batchnorm=True)`` applies (``TorchSyncBatchNorm().apply``) leaves the EMA generator with
    plain batch norms, the same state-dict keys, and a standing-statistics pass that runs."""
    module = _module()
    keys = module.state_dict().keys()
    converted = TorchSyncBatchNorm().apply(module)
    assert _sync_batchnorms(converted.generator) > 0  # the trained G synchronises its batch statistics ...
    assert _sync_batchnorms(converted.ema.averaged) == 0  # ... the EMA generator never does
    assert converted.state_dict().keys() == keys
    grid = converted.sample_grid()  # the pictures path: standing statistics, then the EMA generator in eval mode
    assert grid.shape[0] == 3 and not converted._ema_stale


def _rank_zero_pictures(rank: int, world: int, init_file: str, backend: str, which: str) -> None:
    torch.distributed.init_process_group(
        backend, init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    try:
        device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        module = TorchSyncBatchNorm().apply(_module(which)).to(device)
        if rank == 0:  # log_pictures: rank 0 alone draws the grid (EMA: after its standing statistics)
            module.sample_grid()
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["ema", "raw"])
def test_rank_zero_alone_makes_the_pictures_under_two_gloo_processes(tmp_path, which):
    """Two processes, rank 0 alone runs the pictures path with the EMA or the raw generator: no collective (a
    ``SyncBatchNorm`` in training mode would raise on the CPU or wait for rank 1 until the 60 s timeout)."""
    mp.spawn(_rank_zero_pictures, args=(2, str(tmp_path / "init"), "gloo", which), nprocs=2, join=True)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL)")
def test_rank_zero_alone_makes_the_ema_pictures_under_two_nccl_processes(tmp_path):
    """The same on two GPUs with NCCL, where a collective on one rank hangs until the timeout."""
    mp.spawn(_rank_zero_pictures, args=(2, str(tmp_path / "init"), "nccl", "ema"), nprocs=2, join=True)
