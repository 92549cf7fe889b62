"""The benchmarked layers and passes of ``benchmarks.layers`` (shared with its memory subprocesses)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from common.layers import AttentiveNorm2d, SelfAttention2d

__all__ = ["LAYERS", "MODES", "build_layer", "case_function"]

#: ``an``: the default layer (``implementation="auto"``); ``an_ref`` / ``an_fused`` / ``an_triton``: one
#: implementation forced (``an_triton`` needs CUDA).
LAYERS: tuple[str, ...] = ("in", "an", "an_ref", "an_fused", "an_triton", "sa")
MODES: dict[str, tuple[str, ...]] = {
    "in": ("fwd", "fwdbwd"),
    "an": ("fwd", "train_fwd", "fwdbwd"),
    "an_ref": ("fwd", "train_fwd", "fwdbwd"),
    "an_fused": ("fwd", "train_fwd", "fwdbwd"),
    "an_triton": ("fwd", "train_fwd", "fwdbwd"),
    "sa": ("fwd", "fwdbwd"),
}
_IMPLEMENTATIONS = {"an": "auto", "an_ref": "reference", "an_fused": "fused", "an_triton": "triton"}


def build_layer(name: str, channels: int, entities: int) -> nn.Module:
    """The benchmarked module for ``name`` in :data:`LAYERS`."""
    if name == "in":
        return nn.InstanceNorm2d(channels, affine=True)
    if name == "sa":
        return SelfAttention2d(channels)
    if name in _IMPLEMENTATIONS:
        return AttentiveNorm2d(channels, num_entities=entities, implementation=_IMPLEMENTATIONS[name])
    raise ValueError(f"unknown layer {name!r}; choose from {LAYERS}")


def case_function(layer: nn.Module, mode: str, x: Tensor, x_grad: Tensor, grad_out: Tensor):
    """A no-argument callable that runs one pass of ``mode`` ("fwd", "train_fwd" or "fwdbwd")."""

    def forward() -> None:
        layer.train(mode == "train_fwd")
        with torch.no_grad():
            layer(x)

    def forward_backward() -> None:
        layer.train()
        layer.zero_grad(set_to_none=True)
        x_grad.grad = None
        layer(x_grad).backward(grad_out)

    return forward_backward if mode == "fwdbwd" else forward
