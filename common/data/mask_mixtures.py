"""Mask mixtures: several generators at once (training) and area-binned free-form masks (evaluation).

* :class:`MixedMasks`: one of several generators per mask, drawn with given probabilities (training on rectangles
  and free-form holes at once, as LaMa's mixed mask generator).
* :class:`AreaBinnedMasks`: free-form evaluation masks whose hole area falls in a given bin (mask ``i`` in bin
  ``i % n_bins``), seeded per image: the fixed, binned free-form evaluation set of the inpainting literature (e.g.
  LaMa's evaluation by mask area).

Same convention as :mod:`common.data.masks`: ``(1, H, W)`` float32, 1 = missing.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor

from common.data.masks import FreeFormMasks, MaskGenerator

__all__ = ["AreaBinnedMasks", "MixedMasks"]


class MixedMasks(MaskGenerator):
    """A mask from one of ``generators``, chosen at random with ``probabilities`` (normalised to sum to 1).

    Args:
        generators: The mask generators.
        probabilities: One non-negative weight per generator (default: equal).
    """

    def __init__(self, generators: list[MaskGenerator], probabilities: list[float] | None = None) -> None:
        if not generators:
            raise ValueError("MixedMasks needs at least one generator")
        weights = list(probabilities) if probabilities is not None else [1.0] * len(generators)
        if len(weights) != len(generators) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"MixedMasks needs one non-negative probability per generator (not all 0), got {probabilities} for "
                f"{len(generators)} generator(s)"
            )
        self.generators = list(generators)
        self.probabilities = [w / sum(weights) for w in weights]

    def __call__(self, height: int, width: int, generator: torch.Generator | None = None) -> Tensor:
        weights = torch.tensor(self.probabilities, dtype=torch.float64)
        index = int(torch.multinomial(weights, 1, generator=generator))
        return self.generators[index](height, width, generator)


class AreaBinnedMasks(MaskGenerator):
    """Free-form masks whose hole fraction lies in a bin: mask ``i`` of an evaluation set falls in bin ``i % n``.

    Called with an ``index`` (the sample's position in the evaluation set, see
    :class:`common.data.inpainting_datasets.InpaintingDataset`), it draws strokes from ``strokes`` with the given
    ``generator`` and unites them until the hole fraction reaches the bin's lower edge; a union that overshoots the
    upper edge is discarded and drawing starts again (so a seeded generator gives the same mask every time). The
    evaluation then reports every metric per bin (``InpaintingMetrics(area_bins=...)``).

    Args:
        bins: Increasing hole fractions; bin ``k`` is ``[bins[k], bins[k + 1])`` (default 10-20% ... 50-60%).
        strokes: The stroke generator (default ``FreeFormMasks()``, DeepFill v2's brush strokes).
        max_tries: Draws allowed before giving up with an error.
    """

    def __init__(
        self,
        bins: list[float] | None = None,
        strokes: MaskGenerator | None = None,
        max_tries: int = 1000,
    ) -> None:
        edges = [float(b) for b in (bins if bins is not None else [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])]
        if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)) or edges[0] < 0 or edges[-1] >= 1:
            raise ValueError(f"bins must be >= 2 increasing fractions in [0, 1), got {bins}")
        self.bins = edges
        self.strokes = strokes if strokes is not None else FreeFormMasks()
        self.max_tries = max_tries

    def bin_of(self, index: int) -> tuple[float, float]:
        """The area bin of evaluation mask ``index``."""
        k = index % (len(self.bins) - 1)
        return self.bins[k], self.bins[k + 1]

    def __call__(self, height: int, width: int, generator: torch.Generator | None = None, index: int = 0) -> Tensor:
        low, high = self.bin_of(index)
        mask = torch.zeros(1, height, width)
        for _ in range(self.max_tries):
            candidate = torch.maximum(mask, self.strokes(height, width, generator))
            area = float(candidate.mean())
            if area > high:
                mask = torch.zeros(1, height, width)  # overshoot: start again
            elif area >= low:
                return candidate
            else:
                mask = candidate
        raise ValueError(f"no mask with a hole fraction in [{low}, {high}) after {self.max_tries} draws")
