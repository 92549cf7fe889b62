"""Exponential moving average (EMA) of a network's weights, as used for GAN generators.

Karras et al. ("Progressive Growing of GANs", ICLR 2018), Yazici et al. ("The Unusual Effectiveness of Averaging
in GAN Training", ICLR 2019) and BigGAN (Brock et al., ICLR 2019) sample and evaluate with an exponential moving
average of the generator's weights; StudioGAN and BigGAN-PyTorch do the same with a decay of 0.9999 and a start
step before which the average simply copies the weights.

:class:`ExponentialMovingAverage` is an ``nn.Module`` holding a frozen deep copy (``averaged``) of the tracked
module, so the average is part of the owner's ``state_dict`` (checkpoints, resume, DDP) with no extra code, and
can be used directly as a network (``ema.averaged(z, y)``). After each optimiser step of the tracked module call
``ema.update(module, step)``:

* parameters: ``p_ema <- p`` while ``step < start_step``, else ``p_ema <- decay * p_ema + (1 - decay) * p``;
* buffers (batch-norm running statistics, spectral-norm power-iteration vectors, counters): always copied, so the
  average is evaluated with the statistics of the current network (as StudioGAN does) unless its own statistics
  are recomputed.

The running statistics of batch norm belong to the network whose weights produced them. BigGAN (Brock et al., ICLR
2019, Appendix C: "standing statistics") recomputes them for the network actually sampled from: reset them, run
the network in training mode over a number of batches and keep the average of the batch statistics.
:func:`standing_statistics` does that for any network (the EMA copy in particular): every layer with running
statistics (``running_mean`` / ``running_var`` and a ``momentum``: ``nn.BatchNorm*``, the conditional BN of the
GAN, AN with batch statistics) gets the plain average over the batches, while every other layer stays in eval mode
(spectral norm does not run its power iteration, AN's instance layers do not sample), so the pass changes nothing
but those statistics.

The averaged copy is evaluated by one process at a time (pictures on rank 0, a checkpoint's sampler) and its standing
statistics are computed by each process on its own, so it must never synchronise its batch norms across processes:
a ``SyncBatchNorm`` in training mode is a collective, and one rank of eight running it waits forever.
``Trainer(sync_batchnorm=True)`` converts every batch norm of the LightningModule, the EMA copy included;
:class:`ExponentialMovingAverage` turns any ``SyncBatchNorm`` put into ``averaged`` back into a plain batch norm
(:func:`local_batchnorm`, sharing the same parameters and buffers), and :func:`standing_statistics` refuses to run a
``SyncBatchNorm`` in training mode while a process group is up.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from pytorch_lightning.plugins import TorchSyncBatchNorm
from torch import nn

__all__ = ["ExponentialMovingAverage", "local_batchnorm", "normalization_layers", "standing_statistics"]


def local_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.SyncBatchNorm`` replaced by a plain (per-process) batch norm.

    The replacement shares the layer's parameters and buffers (the same tensors: state-dict keys, checkpoints and DDP's
    buffer references are unchanged); Lightning's ``TorchSyncBatchNorm.revert`` does it. A module without
    ``SyncBatchNorm`` is returned as is.
    """
    if not any(isinstance(m, nn.SyncBatchNorm) for m in module.modules()):
        return module
    return TorchSyncBatchNorm().revert(module)


def normalization_layers(module: nn.Module) -> list[nn.Module]:
    """The layers of ``module`` that keep running statistics (``running_mean``, ``running_var`` and ``momentum``)."""
    return [
        m
        for m in module.modules()
        if isinstance(getattr(m, "running_mean", None), torch.Tensor)
        and isinstance(getattr(m, "running_var", None), torch.Tensor)
        and hasattr(m, "momentum")
    ]


@torch.no_grad()
def standing_statistics(module: nn.Module, batches: Iterable[Sequence[torch.Tensor]]) -> int:
    """Replace the running statistics of ``module``'s normalisation layers by their average over ``batches``.

    Each batch is passed as ``module(*batch)``. For batch ``k`` (0-based) every normalisation layer runs in training
    mode with momentum ``1 / (k + 1)``, so after ``N`` batches its running mean and variance are the plain averages
    of the ``N`` batch statistics (BigGAN's standing statistics; independent of what the buffers held before).
    All other layers run in eval mode. Modes and momenta are restored afterwards.

    Args:
        module: the network (e.g. ``ExponentialMovingAverage.averaged``).
        batches: input tuples; the caller seeds them (the result is deterministic given the batches).

    Returns:
        The number of batches used.

    Raises:
        ValueError: ``batches`` was empty (the statistics would be left reset).
        RuntimeError: ``module`` holds a ``SyncBatchNorm`` while a process group is initialised (its training-mode
            forward is a collective that every process would have to join; use :func:`local_batchnorm` first).
    """
    layers = normalization_layers(module)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and any(isinstance(m, nn.SyncBatchNorm) for m in layers):
        raise RuntimeError(
            "standing_statistics would run SyncBatchNorm layers in training mode, a collective every process must "
            "join; pass the network through common.training.ema.local_batchnorm first"
        )
    modes = {m: m.training for m in module.modules()}
    momenta = {m: m.momentum for m in layers}
    count = 0
    try:
        module.eval()
        for layer in layers:
            layer.train()
            if hasattr(layer, "num_batches_tracked"):
                layer.num_batches_tracked.zero_()
        for count, batch in enumerate(batches, start=1):  # noqa: B007 - count is returned
            for layer in layers:
                layer.momentum = 1.0 / count
            module(*batch)
    finally:
        for m, mode in modes.items():
            m.training = mode
        for layer, momentum in momenta.items():
            layer.momentum = momentum
    if count == 0:
        raise ValueError("standing_statistics needs at least one batch")
    return count


class ExponentialMovingAverage(nn.Module):
    """EMA of a module's parameters; its buffers are copied.

    Args:
        module: the network to track; a deep copy is made now (``averaged``), with ``requires_grad=False``.
        decay: EMA decay in [0, 1) (0.9999 in BigGAN / StudioGAN).
        start_step: steps before this one copy the weights instead of averaging them.

    Attributes:
        averaged: the averaged copy of ``module`` (same class, same structure), whose batch norms never synchronise
            across processes: a ``SyncBatchNorm`` assigned to it (by ``nn.SyncBatchNorm.convert_sync_batchnorm`` on
            the owner, which ``Trainer(sync_batchnorm=True)`` runs) becomes a plain batch norm
            (:func:`local_batchnorm`).
    """

    def __init__(self, module: nn.Module, decay: float = 0.9999, start_step: int = 0) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        self.decay = float(decay)
        self.start_step = int(start_step)
        self.averaged = copy.deepcopy(module)
        self.averaged.requires_grad_(False)

    def add_module(self, name: str, module: nn.Module | None) -> None:
        """Register a child; ``averaged`` with its ``SyncBatchNorm`` layers made local (``convert_sync_batchnorm``
        re-attaches converted children through this method)."""
        if name == "averaged" and module is not None:
            module = local_batchnorm(module)
        super().add_module(name, module)

    def __setattr__(self, name: str, value) -> None:
        """Attribute assignment; ``averaged`` goes through :func:`local_batchnorm` as in :meth:`add_module`."""
        if name == "averaged" and isinstance(value, nn.Module):
            value = local_batchnorm(value)
        super().__setattr__(name, value)

    def _pairs(self, module: nn.Module, kind: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        mine = dict(getattr(self.averaged, f"named_{kind}")())
        theirs = dict(getattr(module, f"named_{kind}")())
        if mine.keys() != theirs.keys():
            missing, extra = sorted(mine.keys() - theirs.keys()), sorted(theirs.keys() - mine.keys())
            raise ValueError(
                f"module does not match the averaged copy: {kind} missing {missing[:5]}, unexpected {extra[:5]}"
            )
        return [(mine[name], theirs[name]) for name in mine]

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        """Fold the current weights of ``module`` into the average (copy while ``step < start_step``).

        Args:
            module: the tracked network (same structure as ``averaged``).
            step: the number of optimiser steps taken by ``module`` so far (decides copy vs. average).
        """
        copy_weights = step < self.start_step
        for ema_p, p in self._pairs(module, "parameters"):
            if copy_weights:
                ema_p.copy_(p.detach())
            else:
                ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - self.decay)
        for ema_b, b in self._pairs(module, "buffers"):
            ema_b.copy_(b)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Write the averaged parameters and buffers into ``module`` (e.g. to export the EMA weights)."""
        for ema_p, p in self._pairs(module, "parameters"):
            p.copy_(ema_p)
        for ema_b, b in self._pairs(module, "buffers"):
            b.copy_(ema_b)

    def extra_repr(self) -> str:
        """``decay`` and ``start_step`` for ``repr``."""
        return f"decay={self.decay}, start_step={self.start_step}"

    def forward(self, *args, **kwargs):
        """Run the averaged network."""
        return self.averaged(*args, **kwargs)
