"""What :class:`an_gan.evaluation.GenerationEvaluator` needs from the real data, and the eval-mode context it runs the
generator in (Wang et al., CVPR 2020, Section 5: the metrics compare generated images with real ones of a split).

Both are re-exported by :mod:`an_gan.evaluation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from torch import nn

__all__ = ["ReferenceData", "eval_mode"]


class ReferenceData(Protocol):
    """What the evaluator needs from the real data (``common.data.class_images.ClassImageDataModule`` has it)."""

    num_classes: int
    class_names: list[str]
    resolution: int

    def reference_dataloader(self, split: str, classes=None, num_samples=None, seed=0, batch_size=None, shard=None):
        """Real batches ``{"image": (B, 3, R, R) in [-1, 1], "label": (B,)}`` of ``split`` in a fixed order."""

    def reference_indices(self, split: str, classes=None, num_samples=None, seed=0):
        """Indices of those images in the split."""

    def reference_key(self, split: str, num_samples=None, seed=0) -> str:
        """Cache key of those images."""


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode inside the block and restore its previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
