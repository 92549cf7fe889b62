"""Intra-FID (Miyato & Koyama, "cGANs with Projection Discriminator", ICLR 2018): FID within each class.

The protocol of the official code (``pfnet-research/sngan_projection``, ``evaluations/calc_ref_stats.py`` and
``evaluations/calc_intra_FID.py``), which the AN paper's Table 1 cites for its intra-FID column:

* reference of class ``c``: every *training* image of class ``c`` (about 1,300 per ImageNet class);
* generated: a fixed number of images of class ``c`` (5,000 in ``calc_intra_FID.py``);
* intra-FID: the FID of each class, averaged over the classes (all 1,000 for Table 1; the AN paper's Table 2 lists
  eight of them, :data:`PAPER_INTRA_FID_CLASSES`).

With ~1,300 reference images and 2,048-d features the reference covariance is rank-deficient, which the Frechet
distance handles (:func:`common.metrics.generation.fid.frechet_distance_to_features` works in the ``n x n`` space).
Generated statistics stream per class (:class:`ClassStatistics`), so any number of classes can be evaluated one
after the other with the memory of one class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from common.metrics.generation.fid import frechet_distance, frechet_distance_to_features, mean_cov

__all__ = ["PAPER_INTRA_FID_CLASSES", "ClassStatistics", "class_frechet_distance", "resolve_intra_fid_classes"]

#: The ImageNet classes of the AN paper's Table 2 (intra-FID): 825, 974, 979, 991, 14, 141, 247, 282.
PAPER_INTRA_FID_CLASSES: tuple[int, ...] = (825, 974, 979, 991, 14, 141, 247, 282)


def resolve_intra_fid_classes(spec: Sequence[int] | str | None, num_classes: int) -> list[int]:
    """The class list of an intra-FID setting.

    Args:
        spec: ``"all"`` (every class, the Table 1 protocol), ``"table2"`` (the paper's Table 2 classes), a list of
            class indices, or None / an empty list (no intra-FID).
        num_classes: number of classes of the generator.

    Raises:
        ValueError: an unknown name, classes outside ``[0, num_classes)`` (``"table2"`` needs 1,000 ImageNet
            classes) or duplicates.
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        if spec == "all":
            return list(range(num_classes))
        if spec != "table2":
            raise ValueError(f"intra-FID classes must be 'all', 'table2' or a list of classes, got {spec!r}")
        spec = PAPER_INTRA_FID_CLASSES
    classes = [int(c) for c in spec]
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"intra-FID classes {bad} are outside [0, num_classes={num_classes})")
    if len(set(classes)) != len(classes):
        raise ValueError(f"intra-FID classes have duplicates: {classes}")
    return classes


class ClassStatistics:
    """Streaming float64 count, sum and sum of outer products of one class's generated features.

    Args:
        feature_dim: feature size ``D`` (2048 for the Inception pool features).
        device: where the ``(D,)`` sum and the ``(D, D)`` outer-product sum live.
    """

    def __init__(self, feature_dim: int, device: torch.device | str | None = None) -> None:
        self.n = torch.zeros((), dtype=torch.float64, device=device)
        self.total = torch.zeros(feature_dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(feature_dim, feature_dim, dtype=torch.float64, device=device)

    def update(self, features: Tensor) -> None:
        """Add features (N, D)."""
        f = features.detach().to(device=self.total.device, dtype=torch.float64)
        self.n += f.shape[0]
        self.total += f.sum(dim=0)
        self.outer += f.T @ f

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        """Mean ``(D,)`` and unbiased covariance ``(D, D)``, float64; ``ValueError`` with fewer than 2 samples."""
        if float(self.n) < 2:
            raise ValueError(f"a class needs at least 2 generated samples for intra-FID, got {int(self.n)}")
        return mean_cov(self.n, self.total, self.outer)


def class_frechet_distance(real_features: Tensor, fake: ClassStatistics) -> float:
    """FID of one class: its reference features (n, D) against its generated statistics (NaN if n < 2)."""
    if real_features.shape[0] < 2:
        return math.nan
    mu_f, cov_f = fake.mean_cov()
    if real_features.shape[0] < real_features.shape[1]:
        return frechet_distance_to_features(real_features.to(mu_f.device), mu_f, cov_f)
    real = real_features.double()
    mu_r = real.mean(dim=0)
    centred = real - mu_r
    return frechet_distance(mu_r, centred.T @ centred / (real.shape[0] - 1), mu_f, cov_f)
