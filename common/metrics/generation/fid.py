"""Frechet distance (FID, Heusel et al. 2017) and kernel distance (KID, Binkowski et al. 2018) of feature sets.

* :func:`frechet_distance`: between two Gaussians given by mean and covariance; ``tr sqrtm(S1 S2)`` is computed as
  ``tr sqrt(S1^1/2 S2 S1^1/2) = ||S1^1/2 S2^1/2||_*`` (nuclear norm) with symmetric eigendecompositions, which
  stays real, finite and accurate for positive semi-definite inputs (pytorch-fid's ``scipy.linalg.sqrtm`` route can
  return complex values and needs an ``eps * I`` retry; here ``eps * I`` is only a fallback when a decomposition
  fails). Tests check it against ``scipy.linalg.sqrtm``.
* :func:`frechet_distance_to_features`: the same distance when one side is a small sample (``n < D``, e.g. the
  ~1,300 training images of one ImageNet class for intra-FID): with ``A`` the centred features,
  ``S1 = A^T A / (n - 1)`` and the non-zero eigenvalues of ``S1 S2`` are those of the ``n x n`` matrix
  ``A S2 A^T / (n - 1)``, so one small symmetric eigendecomposition replaces two ``D x D`` ones. Exact, not an
  approximation.
* :func:`mean_cov`: mean and unbiased (``N - 1``) covariance from float64 running sums (count, sum, sum of outer
  products), so statistics stream, reduce across DDP ranks by summation, and can be cached on disk.
* :func:`kernel_inception_distance`: torch-fidelity's ``kid_features_to_metric`` (cubic polynomial kernel,
  unbiased MMD^2, ``subsets`` random subsets of ``subset_size`` per side, ``numpy.random.RandomState(seed)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["frechet_distance", "frechet_distance_to_features", "kernel_inception_distance", "mean_cov"]


def mean_cov(n: Tensor, total: Tensor, outer: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D) from a count, a sum (D,) and a sum of outer products (D, D)."""
    mean = total / n
    cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
    return mean, cov


def _psd_sqrt(s: Tensor) -> Tensor:
    w, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1^1/2 S2 S1^1/2)`` in float64 on the CPU, where the last trace
    is the sum of the singular values of ``S1^1/2 S2^1/2`` (square roots by symmetric eigendecomposition, negative
    round-off eigenvalues clipped to 0). If a decomposition does not converge, ``eps * I`` is added to both
    covariances and it is retried (pytorch-fid's fallback).

    Args:
        mu1: Mean (D,).
        sigma1: Covariance (D, D).
        mu2: Mean (D,).
        sigma2: Covariance (D, D).
        eps: Diagonal offset for the retry.

    Returns:
        The distance as a Python float.
    """
    mu1, mu2 = mu1.detach().cpu().double(), mu2.detach().cpu().double()
    sigma1, sigma2 = sigma1.detach().cpu().double(), sigma2.detach().cpu().double()
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(
            f"incompatible statistics: mu {tuple(mu1.shape)}/{tuple(mu2.shape)}, "
            f"sigma {tuple(sigma1.shape)}/{tuple(sigma2.shape)}"
        )

    def trace_sqrt_product(s1: Tensor, s2: Tensor) -> Tensor:
        # tr sqrt(S1^1/2 S2 S1^1/2) = sum of singular values of S1^1/2 S2^1/2 (no squared condition number)
        return torch.linalg.svdvals(_psd_sqrt(s1) @ _psd_sqrt(s2)).sum()

    try:
        tr_covmean = trace_sqrt_product(sigma1, sigma2)
    except torch.linalg.LinAlgError:
        offset = eps * torch.eye(sigma1.shape[0], dtype=torch.float64)
        tr_covmean = trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_covmean)


def frechet_distance_to_features(features: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Frechet distance between the Gaussian fitted to ``features`` (n, D) and N(mu2, sigma2), in float64.

    Uses the ``n x n`` form of ``tr sqrt(S1 S2)`` described in the module docstring (fast when ``n < D``); the
    result equals ``frechet_distance(mean(features), cov(features), mu2, sigma2)``.

    Args:
        features: (n, D) samples of the first distribution, n >= 2.
        mu2: Mean (D,) of the second.
        sigma2: Covariance (D, D) of the second.
    """
    x = features.detach().double()
    mu2, sigma2 = mu2.detach().double().to(x.device), sigma2.detach().double().to(x.device)
    n, d = x.shape
    if n < 2 or mu2.shape != (d,) or sigma2.shape != (d, d):
        raise ValueError(
            f"incompatible inputs: features {tuple(x.shape)}, mu {tuple(mu2.shape)}, sigma {tuple(sigma2.shape)}"
        )
    mu1 = x.mean(dim=0)
    centred = x - mu1
    small = centred @ ((sigma2 + sigma2.T) / 2) @ centred.T / (n - 1)  # (n, n), PSD
    tr_covmean = torch.linalg.eigvalsh((small + small.T) / 2).clamp_min(0).sqrt().sum()
    tr_sigma1 = (centred * centred).sum() / (n - 1)
    diff = mu1 - mu2
    return float(diff @ diff + tr_sigma1 + torch.trace(sigma2) - 2 * tr_covmean)


def kernel_inception_distance(
    real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 2020
) -> tuple[float, float]:
    """KID (mean, std over subsets) of real and generated features, by torch-fidelity's ``kid_features_to_metric``.

    ``subset_size`` is capped at the smaller sample; both need at least 2 samples.
    """
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 features per side, got {real.shape[0]} real and {fake.shape[0]} fake")
    out = kid_features_to_metric(
        real.detach().double().cpu(),
        fake.detach().double().cpu(),
        kid_subsets=subsets,
        kid_subset_size=size,
        rng_seed=seed,
        verbose=False,
    )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])
