"""Training-speed options of both tasks: channels-last memory format and ``torch.compile`` of the networks.

Exposed on the command line as ``--speed.channels_last true`` and ``--speed.compile true`` (with
``--speed.compile_mode`` / ``--speed.compile_backend``), next to Lightning's ``--trainer.precision bf16-mixed``.
Both leave the maths unchanged (tested against the plain run, step for step, on the CPU):

* ``channels_last``: every 4-D parameter and buffer of the module in NHWC layout (``Module.to(memory_format=...)``);
  convolutions then keep their activations channels-last, which is what tensor cores and oneDNN prefer. The AN
  layer reads NHWC inputs without a copy (:mod:`common.layers.attentive_norm_fused`).
* ``compile``: ``nn.Module.compile`` of each network in place (the module's ``state_dict`` keys, hence its
  checkpoints, stay those of the plain run). AN uses its reference implementation under ``torch.compile`` (the
  fused CPU / Triton paths are custom autograd functions that the compiler would only call, not fuse).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

__all__ = ["SpeedOptions"]


class SpeedOptions(pl.Callback):
    """Apply the speed options to the LightningModule's networks when a run starts.

    Args:
        channels_last: NHWC memory format for the module's parameters and buffers.
        compile: ``torch.compile`` each network (``nn.Module.compile``, in place).
        compile_mode: ``torch.compile`` mode (``None``, ``"default"``, ``"reduce-overhead"``, ``"max-autotune"``).
        compile_backend: ``torch.compile`` backend (``"inductor"``; ``"aot_eager"`` traces without generating code).
        networks: names of the module's sub-networks to compile (default: every child module with parameters).
    """

    def __init__(
        self,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
        compile_backend: str = "inductor",
        networks: list[str] | None = None,
    ) -> None:
        self.channels_last = channels_last
        self.compile = compile
        self.compile_mode = compile_mode
        self.compile_backend = compile_backend
        self.networks = networks
        self._applied: set[int] = set()

    def _networks(self, pl_module: pl.LightningModule) -> dict[str, nn.Module]:
        children = dict(pl_module.named_children())
        if self.networks is not None:
            unknown = [n for n in self.networks if n not in children]
            if unknown:
                raise ValueError(f"speed.networks: {unknown} are not sub-modules of {type(pl_module).__name__} "
                                 f"(it has {sorted(children)})")  # fmt: skip
            return {n: children[n] for n in self.networks}
        return {n: m for n, m in children.items() if any(True for _ in m.parameters())}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Apply channels-last and ``torch.compile`` to the module's networks, once per module."""
        if id(pl_module) in self._applied:
            return
        self._applied.add(id(pl_module))
        if self.channels_last:
            pl_module.to(memory_format=torch.channels_last)
        if self.compile:
            for net in self._networks(pl_module).values():
                net.compile(mode=self.compile_mode, backend=self.compile_backend)
