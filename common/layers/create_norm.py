"""Name -> module factory for the normalisation / attention slots of the networks.

Configs name the layer that sits between a convolution and its activation with a short string (paper Section 4
places AN there): ``"none"``, ``"bn"``, ``"in"``, ``"an"``, ``"an_bn"`` (the "AN w BN" ablation of the AN paper's
Table 4, Wang et al. CVPR 2020) and ``"sa"`` (the SA-GAN self-attention baseline, Zhang et al. 2019). Both tasks
build their norm layers through :func:`create_norm`, so the names mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from common.layers.attentive_norm import AttentiveNorm2d
from common.layers.self_attention import SelfAttention2d

__all__ = ["NORM_NAMES", "create_norm"]


def _identity(num_features: int, **kwargs: Any) -> nn.Module:
    # "none" keeps the slot empty; options meant for other norms are ignored on purpose.
    return nn.Identity()


def _batch_norm(num_features: int, **kwargs: Any) -> nn.Module:
    return nn.BatchNorm2d(num_features, **kwargs)


def _instance_norm(num_features: int, **kwargs: Any) -> nn.Module:
    return nn.InstanceNorm2d(num_features, **{"affine": True, **kwargs})


def _attentive_norm(num_features: int, **kwargs: Any) -> nn.Module:
    return AttentiveNorm2d(num_features, **kwargs)


def _attentive_norm_batch(num_features: int, **kwargs: Any) -> nn.Module:
    if kwargs.get("stats", "batch") != "batch":
        raise ValueError(f"norm 'an_bn' means AttentiveNorm2d(stats='batch'); got stats={kwargs['stats']!r}")
    return AttentiveNorm2d(num_features, **{**kwargs, "stats": "batch"})


def _self_attention(num_features: int, **kwargs: Any) -> nn.Module:
    return SelfAttention2d(num_features, **kwargs)


_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "none": _identity,
    "bn": _batch_norm,
    "in": _instance_norm,
    "an": _attentive_norm,
    "an_bn": _attentive_norm_batch,
    "sa": _self_attention,
}

NORM_NAMES: tuple[str, ...] = tuple(_FACTORIES)
"""The valid names for :func:`create_norm`."""


def create_norm(name: str, num_features: int, **kwargs: Any) -> nn.Module:
    """Build the normalisation or attention layer called ``name`` for ``num_features`` channels.

    Args:
        name: one of :data:`NORM_NAMES`: ``"none"`` (``nn.Identity``, kwargs ignored), ``"bn"``
            (``nn.BatchNorm2d``), ``"in"`` (``nn.InstanceNorm2d`` with ``affine=True`` unless overridden),
            ``"an"`` (``AttentiveNorm2d``), ``"an_bn"`` (``AttentiveNorm2d(stats="batch")``) or ``"sa"``
            (``SelfAttention2d``).
        num_features: number of channels C of the (B, C, H, W) input.
        **kwargs: passed on to the layer's constructor (e.g. ``num_entities``, ``self_sampling`` for AN).

    Returns:
        The new module.

    Raises:
        ValueError: ``name`` is not one of :data:`NORM_NAMES`.
    """
    try:
        factory = _FACTORIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown norm name {name!r}; valid names are {', '.join(NORM_NAMES)}") from None
    return factory(num_features, **kwargs)
