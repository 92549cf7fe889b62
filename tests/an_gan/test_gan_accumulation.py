"""Gradient accumulation in ANGAN's manual steps (``model.accumulate``, :mod:`an_gan.steps`): k micro-batches of a
batch give the update of the whole batch for networks without batch statistics, step for step."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from an_gan import steps
from an_gan.module import ANGAN
from an_gan.networks import Discriminator, Generator
from an_gan.settings import PictureSettings

K, Z = 3, 6


class LinearG(nn.Module):
    """A generator without batch statistics: ``tanh(W [z, onehot(y)])`` as a 3 x 8 x 8 image."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes, self.resolution, self.z_dim = K, 8, Z
        self.net = nn.Linear(Z + K, 3 * 8 * 8)

    def forward(self, z, y):
        return torch.tanh(self.net(torch.cat([z, nn.functional.one_hot(y, K).float()], 1))).view(-1, 3, 8, 8)


class ProjectionD(nn.Module):
    """A projection discriminator without batch statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes, self.resolution = K, 8
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU())
        self.linear, self.embed = nn.Linear(16, 1), nn.Embedding(K, 16)

    def forward(self, x, y):
        h = self.features(x)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int, resolution: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, resolution, resolution, generator=gen) * 2 - 1
        self.labels = torch.arange(n) % K

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i]}


class _FrozenBatchNorm(pl.Callback):
    """Batch norms in eval mode during training (running statistics only): 'BN frozen'."""

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        for m in pl_module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _sgd(params):
    return torch.optim.SGD(params, lr=0.05)


def _model(accumulate: int, nets: str, **kwargs) -> tuple[ANGAN, int]:
    torch.manual_seed(0)
    if nets == "linear":
        g, d, resolution = LinearG(), ProjectionD(), 8
    else:  # the paper's networks with their BN frozen, without spectral norm (its power iteration runs per D call)
        g = Generator(K, 32, z_dim=Z, ch=1, long_range=None, spectral_norm=False)
        d, resolution = Discriminator(K, 32, ch=1, long_range=None, spectral_norm=False), 32
    pictures = PictureSettings(every_n_steps=0, per_class=1)
    model = ANGAN(g, d, _sgd, _sgd, accumulate=accumulate, pictures=pictures, **kwargs)
    model.on_train_end = lambda: None  # no pictures
    return model, resolution


def _fit(accumulate: int, nets: str, monkeypatch, steps_: int = 4, **kwargs) -> ANGAN:
    """Train ``steps_`` optimiser steps on batches of 8, the noise rows taken from one seeded pool in order of use
    (so the micro-batches of a step use the rows the whole batch would)."""
    pool, used = torch.randn(4096, Z, generator=torch.Generator().manual_seed(7)), [0]

    def noise(module, size):  # the next `size` rows of the pool
        used[0] += size
        return pool[used[0] - size : used[0]]

    monkeypatch.setattr(steps, "noise", noise)
    model, resolution = _model(accumulate, nets, **kwargs)
    trainer = pl.Trainer(
        max_steps=steps_,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[_FrozenBatchNorm()] if nets == "paper" else [],
    )
    trainer.fit(model, DataLoader(_Images(32, resolution), batch_size=8))
    return model


@pytest.mark.parametrize(("nets", "accumulate"), [("linear", 2), ("linear", 4), ("linear", 3), ("paper", 2)])
def test_k_micro_batches_update_like_the_whole_batch(monkeypatch, nets, accumulate):
    """2 iterations (D + G steps) with batch 8 in ``accumulate`` micro-batches (3: uneven, 3 + 3 + 2) give the
    weights of the same steps on the whole batch, to float tolerance (1e-4 of each parameter's update): networks
    without batch statistics, and the paper's networks with their conditional BN frozen."""
    whole = _fit(1, nets, monkeypatch)
    initial = {n: p.detach().clone() for n, p in _model(1, nets)[0].named_parameters()}
    parts = _fit(accumulate, nets, monkeypatch)
    assert whole.num_g_steps == parts.num_g_steps == 2
    moved = 0
    for (name, a), b in zip(whole.named_parameters(), parts.parameters(), strict=True):
        update = (a - initial[name]).abs().max().item()  # what the two steps moved this parameter by
        error = (b - a).abs().max().item()
        assert error <= 1e-4 * update + 1e-7, (name, error, update)  # float rounding of the summed gradients
        moved += update > 0
    assert moved == len(initial)  # every parameter was updated


def test_micro_batch_sizes_of_both_updates(monkeypatch):
    """accumulate=2, batch 8, 6 generated images per G step with uniform labels: D scores 4 + 4 real and 4 + 4 fake
    images per step, G's step 3 + 3."""
    seen: list[int] = []
    original = ProjectionD.forward
    monkeypatch.setattr(ProjectionD, "forward", lambda self, x, y: (seen.append(x.shape[0]), original(self, x, y))[1])
    _fit(2, "linear", monkeypatch, steps_=2, fake_labels="uniform", g_batch_size=6)
    assert seen == [4, 4, 4, 4, 3, 3]


def test_micro_batches_and_errors():
    assert steps.micro_batches(8, 1) == [(1.0, slice(0, 8))]
    assert steps.micro_batches(8, 3) == [(3 / 8, slice(0, 3)), (3 / 8, slice(3, 6)), (2 / 8, slice(6, 8))]
    with pytest.raises(ValueError, match=r"accumulate=4 .* this batch has 3 images: lower --model.accumulate"):
        steps.micro_batches(3, 4)
    with pytest.raises(ValueError, match="accumulate .* must be an integer >= 1"):
        ANGAN(generator=LinearG(), discriminator=ProjectionD(), accumulate=0)
