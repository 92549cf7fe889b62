"""Exact resume on a tiny real training run: data order, position, augmentations and the global RNG.

A run interrupted at step k (exception, SIGTERM, or just its periodic checkpoint) and resumed from its checkpoint
must log the same losses, step for step, as the run that was never interrupted.
"""

import contextlib
import os
import signal
import warnings

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from common.data.resumable import ResumableSampler, SampleIndex, resumable_train_loader, sample_generator
from common.training.callbacks import InterruptCheckpoint
from common.training.callbacks.resume import LAYOUT_KEY, ExactResume, capture_rng_state, restore_rng_state


class NoisyDataset(torch.utils.data.Dataset):
    """Index i -> a vector whose random augmentation comes from ``sample_generator`` (never the global RNG)."""

    def __len__(self):
        return 10

    def __getitem__(self, index):
        gen = sample_generator(7, index)
        return torch.full((3,), float(index)) + torch.randn(3, generator=gen), int(index)


class Data(pl.LightningDataModule):
    def __init__(self, num_workers=0, batch_size=3):
        super().__init__()
        self.num_workers, self.batch_size = num_workers, batch_size

    def train_dataloader(self):
        return resumable_train_loader(
            self, NoisyDataset(), batch_size=self.batch_size, seed=5, num_workers=self.num_workers
        )


class Model(pl.LightningModule):
    def __init__(self, fail_at=-1, how="raise"):
        super().__init__()
        self.net = torch.nn.Linear(3, 1)
        self.fail_at, self.how = fail_at, how
        self.record: list[tuple[int, list[int], float]] = []

    def on_train_batch_start(self, batch, batch_idx):
        if self.global_step == self.fail_at and self.how == "between":  # an error between batches (e.g. data)
            raise RuntimeError("simulated crash before the step")

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at and self.how != "between":
            if self.how == "raise":
                raise RuntimeError("simulated crash")
            os.kill(os.getpid(), signal.SIGTERM)
        x, idx = batch
        noise = torch.randn(x.shape[0], 3)  # the global RNG, like a GAN's z or AN's self-sampling
        loss = self.net(x + noise).pow(2).mean()
        self.record.append((self.global_step, idx.tolist(), round(float(loss.detach()), 6)))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(root, ckpt_path=None, num_workers=0, batch_size=3, **model_kwargs):
    pl.seed_everything(0)
    model = Model(**model_kwargs)
    trainer = pl.Trainer(
        max_epochs=3,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            ModelCheckpoint(dirpath=root, every_n_train_steps=4, save_top_k=-1, filename="{step}"),
            InterruptCheckpoint(),
            ExactResume(),
        ],
    )
    with contextlib.suppress(RuntimeError, SystemExit):
        trainer.fit(model, datamodule=Data(num_workers, batch_size), ckpt_path=ckpt_path)
    return model.record


@pytest.mark.parametrize(
    ("how", "num_workers"),
    [("raise", 0), ("between", 0), ("sigterm", 0), ("periodic", 0), ("raise", 2), ("between", 2)],
    ids=str,
)
def test_resume_matches_uninterrupted_run(tmp_path, how, num_workers):
    full = fit(tmp_path / "full", num_workers=num_workers)
    assert len(full) == 9  # 3 epochs of 3 batches (10 samples, batch 3, the last partial batch dropped)
    root = tmp_path / "cut"
    # step 4 is the second batch of epoch 1: the order, the position in the epoch and the RNG all matter
    first = fit(root, num_workers=num_workers, fail_at=4 if how != "periodic" else -1, how=how)
    if how in ("periodic", "raise"):
        # an exception inside a training step writes no on_exception.ckpt (its batch may be half applied): the
        # periodic checkpoint, written at the end of step 3, is the resume point
        assert not list(root.rglob(InterruptCheckpoint.FILENAME))
        first = first[:4]
        ckpt = root / "step=4.ckpt"
    else:
        ckpt = next(root.rglob(InterruptCheckpoint.FILENAME))
    second = fit(root, ckpt_path=str(ckpt), num_workers=num_workers)
    assert second[0][0] == len(first) == (5 if how == "sigterm" else 4)  # SIGTERM lets step 4 finish first
    assert first + second == full


def test_resuming_with_another_batch_or_world_size_warns(tmp_path):
    # The sampler resumes an epoch after the batches already trained, counted in the new batch and world size.
    root = tmp_path / "cut"
    fit(root, fail_at=4, how="between")  # stops in epoch 1 after its first batch of 3 (10 samples, 3 per batch)
    ckpt = next(root.rglob(InterruptCheckpoint.FILENAME))
    checkpoint = torch.load(ckpt, weights_only=True)
    assert checkpoint[LAYOUT_KEY] == {"batch_size": 3, "world_size": 1}
    with warnings.catch_warnings(record=True) as same:
        warnings.simplefilter("always")
        fit(tmp_path / "same", ckpt_path=str(ckpt))
    assert not [w for w in same if "per-device batch size" in str(w.message)]
    with pytest.warns(UserWarning, match=(
        r"resuming epoch 1 after 1 batches with per-device batch size 2 and world size 1, but the checkpoint's run "
        r"had batch size 3 and world size 1: .* 1 samples of it are trained twice in this epoch .*"
        r"--data.init_args.batch_size 3 on 1 device"
    )):  # fmt: skip
        fit(tmp_path / "smaller", ckpt_path=str(ckpt), batch_size=2)
    checkpoint[LAYOUT_KEY] = {"batch_size": 3, "world_size": 2}  # as a 2-rank run would have written it
    two_ranks = tmp_path / "two_ranks.ckpt"
    torch.save(checkpoint, two_ranks)
    with pytest.warns(UserWarning, match=r"world size 2: it trained the epoch's first 6 samples .* 3 samples of it"):
        fit(tmp_path / "fewer", ckpt_path=str(two_ranks))


def test_sampler_orders_positions_and_ranks():
    data = list(range(10))
    a = ResumableSampler(data, batch_size=2, seed=1, num_replicas=1, rank=0, position=lambda: (3, 0))
    b = ResumableSampler(data, batch_size=2, seed=1, num_replicas=1, rank=0, position=lambda: (3, 2))
    assert list(b) == list(a)[4:]  # two batches of two already trained
    assert {i.epoch for i in a} == {3}
    other_epoch = ResumableSampler(data, batch_size=2, seed=1, num_replicas=1, rank=0, position=lambda: (4, 0))
    assert list(other_epoch) != list(a) and sorted(other_epoch) == data
    ranks = [list(ResumableSampler(list(range(7)), 1, seed=2, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4  # padded by wrapping so both ranks run the same steps
    assert set(ranks[0]) | set(ranks[1]) == set(range(7))
    plain = ResumableSampler(data, 2, shuffle=False, num_replicas=1, rank=0)
    assert list(plain) == data
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ResumableSampler(data, 0)


def test_sample_index_and_generator():
    i = SampleIndex(4, epoch=2)
    assert i == 4 and i + 1 == 5 and i.epoch == 2
    import pickle

    j = pickle.loads(pickle.dumps(i))
    assert j == 4 and j.epoch == 2
    draw = lambda index: torch.rand(2, generator=sample_generator(9, index))  # noqa: E731
    assert torch.equal(draw(SampleIndex(4, 2)), draw(SampleIndex(4, 2)))
    assert not torch.equal(draw(SampleIndex(4, 2)), draw(SampleIndex(4, 3)))  # new epoch, new augmentation
    assert not torch.equal(draw(SampleIndex(4, 2)), draw(SampleIndex(5, 2)))
    assert torch.equal(draw(4), draw(SampleIndex(4, 0)))  # a plain int is epoch 0


def test_rng_state_roundtrip():
    import random

    import numpy as np

    state = capture_rng_state()
    values = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == values
