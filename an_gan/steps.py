"""The two updates of an :class:`an_gan.module.ANGAN` training step, each over ``accumulate`` micro-batches.

Losses (Wang et al., CVPR 2020, Section 4): the D step scores the real batch and as many generated images (labels
``y ~ P_data``, eq. 7-8, or uniform as SN-GAN's and SA-GAN's code) with the hinge loss (eq. 8), the G step scores
generated images (eq. 7); each adds AN's orthogonal term (eq. 1) of the network it updates.

Gradient accumulation: the paper trains with batch 256 (Section 5.1), and fewer or smaller GPUs cannot hold its
activations. With ``accumulate = k`` a step's real batch (this process's share of the global batch) is cut into
``k`` contiguous micro-batches (:func:`micro_batches`); each update runs the forward and backward pass of one
micro-batch at a time, its loss weighted by its share ``n_i / n`` of the batch, and steps its optimiser once
(:func:`common.training.optimization.accumulated_step`). The hinge losses and the orthogonal term are means over
the batch, so the summed gradients are those of the whole batch: for networks without batch statistics the update
is the single pass's (tested to float tolerance); the generator's conditional BN normalises each micro-batch by its
own statistics, as in BigGAN-PyTorch (``train_fns.GAN_training_function``: ``num_D_accumulations`` /
``num_G_accumulations`` micro-batches of ``batch_size``, each loss divided by their number; its SA-GAN script
``launch_SAGAN_bs128x2_ema.sh`` runs 128 x 2). The G step's micro-batches use the labels of the D step's
micro-batches (``fake_labels="data"``) or split the ``g_batch_size`` generated images. Every step is whole (no
accumulation state outlives a training step), so checkpoints and resumes are exact with any ``accumulate``.
Activation memory is that of one micro-batch; the real batch itself stays in memory whole (256 images of
128 x 128 px: 50 MB).
"""

from __future__ import annotations

import functools
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from an_gan.losses import discriminator_loss, generator_loss, orthogonal_regulariser
from common.training.optimization import accumulated_step

__all__ = ["d_loss", "discriminator_update", "g_loss", "generator_update", "micro_batches", "noise"]


def micro_batches(n: int, parts: int) -> list[tuple[float, slice]]:
    """``(weight, rows)`` of the ``parts`` contiguous micro-batches of a batch of ``n``: ``n // parts`` rows each,
    one more for the first ``n % parts``, weighted by their share ``n_i / n``.

    Raises:
        ValueError: ``parts < 1`` or fewer rows than parts (the message names ``accumulate``).
    """
    if parts < 1 or n < parts:
        raise ValueError(
            f"accumulate={parts} splits each batch into {parts} micro-batches, but this batch has {n} images: lower "
            "--model.accumulate or raise the per-device batch size (--data.init_args.batch_size)"
        )
    out, start = [], 0
    for i in range(parts):
        stop = start + n // parts + (i < n % parts)
        out.append(((stop - start) / n, slice(start, stop)))
        start = stop
    return out


def noise(module: pl.LightningModule, size: int) -> Tensor:
    """Training noise ``z``: standard normal ``(size, z_dim)`` on the module's device."""
    return torch.randn(size, module.generator.z_dim, device=module.device)


def _fake_labels(module: pl.LightningModule, real_labels: Tensor, size: int) -> Tensor:
    if module.fake_labels == "data":
        return real_labels
    return torch.randint(0, module.generator.num_classes, (size,), device=real_labels.device)


def d_loss(module: pl.LightningModule, real: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 8 on ``real`` (B, 3, R, R) with ``labels`` (B,) and B generated images, plus D's orthogonal term."""
    with torch.no_grad():
        y = _fake_labels(module, labels, real.shape[0])
        fake = module.generator(noise(module, y.shape[0]), y)
    if module.d_batch == "joint":
        scores = module.discriminator(torch.cat([real, fake.to(real.dtype)]), torch.cat([labels, y]))
        real_scores, fake_scores = scores.split([real.shape[0], fake.shape[0]])
    else:
        real_scores, fake_scores = module.discriminator(real, labels), module.discriminator(fake, y)
    loss, logs = discriminator_loss(real_scores, fake_scores)
    orth, orth_logs = orthogonal_regulariser(module.discriminator, module.orthogonal_weight, "d")
    return loss + orth, {"d_loss": (loss + orth).detach(), **logs, **orth_logs}


def g_loss(module: pl.LightningModule, labels: Tensor, size: int) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 7 on ``size`` generated images (labels: ``labels`` or uniform), plus G's orthogonal term."""
    y = _fake_labels(module, labels, size)
    fake = module.generator(noise(module, y.shape[0]), y)
    loss, logs = generator_loss(module.discriminator(fake, y))
    orth, orth_logs = orthogonal_regulariser(module.generator, module.orthogonal_weight, "g")
    return loss + orth, {"g_loss": (loss + orth).detach(), **logs, **orth_logs}


def discriminator_update(module: pl.LightningModule, optimizer: Any, real: Tensor, labels: Tensor) -> dict:
    """One D step on the real batch in ``module.accumulate`` micro-batches; returns the batch's logged values."""
    parts = [
        (weight, functools.partial(d_loss, module, real[rows], labels[rows]))
        for weight, rows in micro_batches(real.shape[0], module.accumulate)
    ]
    return accumulated_step(module, optimizer, parts, name="discriminator")[1]


def generator_update(module: pl.LightningModule, optimizer: Any, labels: Tensor) -> dict:
    """One G step in ``module.accumulate`` micro-batches: the real batch's labels split as the D step splits them
    (``fake_labels="data"``), or ``g_batch_size`` (default: the real batch size) uniform labels split the same way."""
    data = module.fake_labels == "data"
    size = labels.shape[0] if data else module.g_batch_size or labels.shape[0]
    parts = [
        (weight, functools.partial(g_loss, module, labels[rows] if data else labels, rows.stop - rows.start))
        for weight, rows in micro_batches(size, module.accumulate)
    ]
    return accumulated_step(module, optimizer, parts, name="generator")[1]
