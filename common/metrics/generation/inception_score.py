"""Inception Score (Salimans et al., 2016) as torch-fidelity's ``isc_features_to_metric`` computes it.

The generated logits are permuted with ``numpy.random.RandomState(2020).permutation`` (so class-sorted generation
does not bias the splits), cut into ``splits`` contiguous chunks ``[i * N // s, (i + 1) * N // s)``, and per chunk
``exp(mean_x KL(p(y|x) || p(y)))`` is computed in float64. Reported: mean and population standard deviation
(``ddof=0``, as torch-fidelity's ``np.std``; torchmetrics instead uses Bessel's correction).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["inception_score"]

_IS_SHUFFLE_SEED = 2020  # torch-fidelity's default rng_seed for the IS split permutation


def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score of logits (N, K), computed as torch-fidelity's ``isc_features_to_metric``.

    The rows are permuted with ``numpy.random.RandomState(2020).permutation(N)``, cut into ``splits`` contiguous
    chunks ``[i * N // splits, (i + 1) * N // splits)``; per chunk ``exp(mean KL(p(y|x) || mean p(y)))`` in float64.

    Args:
        logits: Classifier logits (N, K) of generated images.
        splits: Number of chunks; N must be at least ``splits``.

    Returns:
        (mean, std) over the chunks; std is the population standard deviation (ddof=0).
    """
    n = logits.shape[0]
    if logits.dim() != 2 or n < splits or splits < 1:
        raise ValueError(f"Inception Score needs logits (N, K) with N >= splits={splits}, got {tuple(logits.shape)}")
    perm = torch.from_numpy(np.random.RandomState(_IS_SHUFFLE_SEED).permutation(n)).to(logits.device)
    logits = logits.detach()[perm].double()
    p, log_p = logits.softmax(dim=1), logits.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        p_chunk, log_p_chunk = p[lo:hi], log_p[lo:hi]
        log_q = p_chunk.mean(dim=0, keepdim=True).log()
        kl = (p_chunk * (log_p_chunk - log_q)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
