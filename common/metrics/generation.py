"""Generation metrics for class-conditional GANs: FID, Inception Score and intra-FID under one frozen protocol.

The paper (Wang et al., "Attentive Normalization", CVPR 2020, Sec. 5.1, Tables 1, 2) reports FID, Inception Score
(IS) and intra-FID of class-conditional ImageNet 128x128 generators. This module fixes one protocol for all three:

* Backbone: the TensorFlow "2015-12-05" Inception-v3 weights as ported to PyTorch by torch-fidelity
  (``torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3``). Images enter as uint8; the
  extractor resizes them to 299x299 with its TF1-compatible bilinear interpolation (no antialiasing), as the
  original TF evaluation code did. FID uses the 2048-d pool features, IS the 1008 "unbiased" logits (the final
  fully connected layer without its bias), exactly the layers torch-fidelity uses for these metrics.
* Float images in [0, 1] are quantised to uint8 by rounding ``x * 255`` (what writing PNG files does).
* FID (Heusel et al., 2017): Frechet distance between Gaussians fitted to real and generated features; means and
  unbiased covariances (``N - 1``) from float64 running sums (count, sum, sum of outer products), so statistics
  stream, reduce across DDP ranks by summation, and can be cached on disk.
* IS (Salimans et al., 2016): as torch-fidelity's ``isc_features_to_metric``: the generated logits are permuted
  with ``numpy.random.RandomState(2020).permutation`` (so class-sorted generation does not bias the splits), cut
  into ``is_splits`` contiguous chunks ``[i * N // s, (i + 1) * N // s)``, and per chunk
  ``exp(mean_x KL(p(y|x) || p(y)))`` is computed in float64. Reported: mean and population standard deviation
  (``ddof=0``, as torch-fidelity's ``np.std``; torchmetrics instead uses Bessel's correction).
* intra-FID (Miyato & Koyama, 2018, used in the paper's Table 2): FID between one class's real and generated
  images, averaged over a class list (default: the eight classes of the paper's Table 2).

The Frechet distance uses ``tr sqrtm(S1 S2) = tr sqrt(S1^1/2 S2 S1^1/2) = ||S1^1/2 S2^1/2||_*`` (nuclear norm)
with symmetric eigendecompositions, which stays real, finite and accurate for positive semi-definite inputs
(pytorch-fid's ``scipy.linalg.sqrtm`` route can return complex values and needs an ``eps * I`` retry; here
``eps * I`` is only a fallback when a decomposition fails). Tests check it against ``scipy.linalg.sqrtm``.

All extraction and accumulation run with autocast disabled, so mixed-precision training does not change the
protocol.

We do not use torch-fidelity's class-conditional generator path (it samples labels with ``np.int``, removed in
NumPy 1.24); the generator is driven by the caller and images are fed to :meth:`GenerationMetrics.update`.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "INCEPTION_WEIGHTS_URL",
    "PAPER_INTRA_FID_CLASSES",
    "GenerationMetrics",
    "InceptionFeatureExtractor",
    "RandomProjectionExtractor",
    "default_inception_weights_path",
    "frechet_distance",
    "inception_score",
    "reference_cache_path",
]

#: Where torch-fidelity downloads its TF-ported Inception-v3 weights from (torch-fidelity 0.2.0+ release asset).
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
#: The ImageNet classes of the paper's Table 2 (intra-FID): 825, 974, 979, 991, 14, 141, 247, 282.
PAPER_INTRA_FID_CLASSES: tuple[int, ...] = (825, 974, 979, 991, 14, 141, 247, 282)

_REFERENCE_FORMAT = "attentive-norm/generation-reference/v1"
_IS_SHUFFLE_SEED = 2020  # torch-fidelity's default rng_seed for the IS split permutation
_DOWNLOAD_TIMEOUT_S = 20.0


def default_inception_weights_path() -> Path:
    """Where torch-fidelity (through ``torch.hub.load_state_dict_from_url``) caches the Inception weights.

    Returns:
        ``<torch.hub.get_dir()>/checkpoints/weights-inception-2015-12-05-6726825d.pth`` (``$TORCH_HOME/hub/...``).
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_URL.rsplit("/", 1)[-1]


def _missing_weights_message(reason: str) -> str:
    target = default_inception_weights_path()
    return (
        f"Inception-v3 weights for FID/IS are not available: {reason}.\n"
        f"Fetch {INCEPTION_WEIGHTS_URL}\n"
        f"and either put it at {target}\n"
        "(torch-fidelity's torch hub cache; set TORCH_HOME to move it), or pass its path as `weights_path` "
        "(GenerationMetrics(weights_path=...) / InceptionFeatureExtractor(weights_path=...))."
    )


def _resolve_inception_weights(weights_path: str | os.PathLike | None) -> Path:
    """Return a local weights file, downloading into the torch hub cache when none is given and none is cached."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise RuntimeError(_missing_weights_message(f"weights_path {str(path)!r} does not exist"))
        return path
    target = default_inception_weights_path()
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)  # an offline machine must fail fast, not hang on connect
    try:
        torch.hub.download_url_to_file(INCEPTION_WEIGHTS_URL, str(target), progress=True)
    except Exception as error:  # URLError, timeouts, HTTP errors: all mean "no weights"
        raise RuntimeError(_missing_weights_message(f"download failed ({type(error).__name__}: {error})")) from error
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return target


class InceptionFeatureExtractor(nn.Module):
    """TF-ported Inception-v3 (torch-fidelity) returning FID pool features and IS logits.

    The network always stays in eval mode with frozen weights. Input: uint8 images (N, 3, H, W) of any size; the
    torch-fidelity module resizes them to 299x299 with TF1-compatible bilinear interpolation (no antialiasing).

    Args:
        weights_path: Local copy of ``weights-inception-2015-12-05-6726825d.pth``. None: use torch-fidelity's torch
            hub cache (``default_inception_weights_path()``), downloading it there if absent. Raises RuntimeError
            naming the URL and the expected location when the file is missing and cannot be downloaded.
    """

    extractor_name = "inception-v3-tf-2015-12-05"
    feature_dim = 2048
    num_logits = 1008

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = _resolve_inception_weights(weights_path)
        try:
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
            )
        except Exception as error:
            raise RuntimeError(_missing_weights_message(f"{path} could not be loaded ({error})")) from error
        self.net.eval()

    def train(self, mode: bool = True) -> InceptionFeatureExtractor:
        """Keep the backbone in eval mode (its batch norms use the TF statistics) whatever ``mode`` is."""
        super().train(mode)
        self.net.eval()
        return self

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Map uint8 images (N, 3, H, W) to (features (N, 2048), logits (N, 1008)), both float32."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        features, logits = self.net(images)
        return features, logits


class RandomProjectionExtractor(nn.Module):
    """Fixed random features for smoke tests and CPU demos. NOT a valid FID/IS backbone.

    A deterministic (seeded) random network: average-pool to 16x16, a fixed random 5x5 convolution with ReLU,
    average-pool to 4x4, a fixed random linear map to ``feature_dim`` features, and a fixed random linear map of
    the features to ``num_logits`` logits (scaled so that, at the defaults, the 1,797 real scikit-learn digits score
    an IS of about 1.6 and uniform noise about 1.1). It has no trained weights, so scores computed with it are only
    comparable with other scores computed with the same extractor; they say nothing about ImageNet FID/IS.

    Args:
        feature_dim: Number of features (D).
        num_logits: Number of logits (K).
        seed: Seed of the random weights; the same seed always gives the same extractor.
    """

    def __init__(self, feature_dim: int = 16, num_logits: int = 10, seed: int = 0) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.num_logits = num_logits
        self.extractor_name = f"random-projection-d{feature_dim}-k{num_logits}-seed{seed}"
        gen = torch.Generator().manual_seed(seed)
        channels = 16
        self.register_buffer("conv_weight", torch.randn(channels, 3, 5, 5, generator=gen) / math.sqrt(75.0))
        self.register_buffer("conv_bias", 0.1 * torch.randn(channels, generator=gen))
        fan_in = channels * 16
        self.register_buffer("proj", torch.randn(fan_in, feature_dim, generator=gen) / math.sqrt(fan_in))
        self.register_buffer("head", torch.randn(feature_dim, num_logits, generator=gen) / math.sqrt(feature_dim))

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Map uint8 images (N, 3, H, W) to (features (N, feature_dim), logits (N, num_logits)), float32."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        x = images.float() / 127.5 - 1.0
        x = nn.functional.adaptive_avg_pool2d(x, 16)
        x = torch.relu(nn.functional.conv2d(x, self.conv_weight, self.conv_bias, padding=2))
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        features = x @ self.proj
        logits = 16.0 * features @ self.head
        return features, logits


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

    def psd_sqrt(s: Tensor) -> Tensor:
        w, v = torch.linalg.eigh((s + s.T) / 2)
        return (v * w.clamp_min(0).sqrt()) @ v.T

    def trace_sqrt_product(s1: Tensor, s2: Tensor) -> Tensor:
        # tr sqrt(S1^1/2 S2 S1^1/2) = sum of singular values of S1^1/2 S2^1/2 (no squared condition number)
        return torch.linalg.svdvals(psd_sqrt(s1) @ psd_sqrt(s2)).sum()

    try:
        tr_covmean = trace_sqrt_product(sigma1, sigma2)
    except torch.linalg.LinAlgError:
        offset = eps * torch.eye(sigma1.shape[0], dtype=torch.float64)
        tr_covmean = trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_covmean)


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


def reference_cache_path(cache_dir: str | os.PathLike, key: str, extractor_name: str) -> Path:
    """File holding cached reference statistics: ``<cache_dir>/<key>__<extractor_name>.pt``.

    Characters other than letters, digits, ``.``, ``_``, ``-`` and ``=`` in ``key`` and ``extractor_name`` are
    replaced by ``_`` so the name is filesystem-safe.
    """

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._=-]", "_", text)

    return Path(cache_dir) / f"{safe(key)}__{safe(extractor_name)}.pt"


def _mean_cov(n: Tensor, total: Tensor, outer: Tensor) -> tuple[Tensor, Tensor]:
    mean = total / n
    cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
    return mean, cov


def _is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class GenerationMetrics(Metric):
    """FID, Inception Score and intra-FID of a class-conditional generator (protocol in the module docstring).

    Feed real images with ``update(images, labels, real=True)`` (or ``load_reference`` a cached file) and generated
    images with ``update(images, labels, real=False)``; ``compute()`` returns a dict with ``"fid"``,
    ``"is_mean"``, ``"is_std"``, ``"intra_fid"`` (mean over the intra-FID classes having at least 2 real and 2
    generated samples; NaN if none has) and ``"intra_fid/<class>"`` per class (NaN when too few samples).

    State: float64 sums (count, sum, sum of outer products) overall and per intra-FID class, for real and
    generated features, reduced across DDP ranks by summation; generated logits for IS, concatenated across ranks.
    Memory: two D x D float64 matrices per intra-FID class and side (32 MiB each at D = 2048).

    ``reset()`` and ``reset_fake()`` clear the generated-image states only; the reference statistics stay (like
    torchmetrics' ``reset_real_features=False``). ``reset_reference()`` clears everything. Calling the metric
    (``forward``) is the same as ``update`` and returns None: scores need the whole set.

    Args:
        feature_extractor: Module mapping uint8 images (N, 3, H, W) to (features (N, D), logits (N, K)). None:
            :class:`InceptionFeatureExtractor` (TF-ported Inception-v3), created on the first ``update`` so that
            building the metric on an offline machine only fails when it is used. Its optional attributes
            ``extractor_name``, ``feature_dim`` and ``num_logits`` are used when present (otherwise the class name
            and a probe on a dummy batch). The extractor is not registered as a submodule, so its weights never
            enter checkpoints; it follows the device of the images given to ``update``.
        num_classes: Number of classes of the generator; labels must lie in ``[0, num_classes)``.
        intra_fid_classes: Classes for intra-FID. None: the paper's Table 2 classes (825, 974, 979, 991, 14, 141,
            247, 282) that are ``< num_classes``; if none of them is (small datasets), all classes.
        is_splits: Number of Inception Score splits.
        weights_path: Local Inception weights file for the default extractor (see InceptionFeatureExtractor).
        **kwargs: Passed to ``torchmetrics.Metric`` (e.g. ``sync_on_compute``, ``process_group``).
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        num_classes: int = 1000,
        intra_fid_classes: Sequence[int] | None = None,
        is_splits: int = 10,
        weights_path: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if is_splits < 1:
            raise ValueError(f"is_splits must be >= 1, got {is_splits}")
        if intra_fid_classes is None:
            classes = [c for c in PAPER_INTRA_FID_CLASSES if c < num_classes] or list(range(num_classes))
        else:
            classes = [int(c) for c in intra_fid_classes]
            bad = [c for c in classes if not 0 <= c < num_classes]
            if bad:
                raise ValueError(f"intra_fid_classes {bad} are outside [0, num_classes={num_classes})")
            if len(set(classes)) != len(classes):
                raise ValueError(f"intra_fid_classes has duplicates: {classes}")
        self.num_classes = num_classes
        self.intra_fid_classes = classes
        self.is_splits = is_splits
        self.weights_path = weights_path
        self.__dict__["_extractor"] = feature_extractor  # deliberately not a submodule (see class docstring)
        self.__dict__["_extractor_device"] = None
        self._reference_loaded = False

        if feature_extractor is None:
            self.extractor_name = InceptionFeatureExtractor.extractor_name
            dim = InceptionFeatureExtractor.feature_dim
        else:
            self.extractor_name = str(getattr(feature_extractor, "extractor_name", type(feature_extractor).__name__))
            dim = getattr(feature_extractor, "feature_dim", None)
            if dim is None:
                with torch.no_grad():
                    features, _ = feature_extractor(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
                dim = features.shape[1]
        self.feature_dim = int(dim)

        lookup = torch.full((num_classes,), -1, dtype=torch.long)
        lookup[torch.tensor(classes, dtype=torch.long)] = torch.arange(len(classes))
        self.register_buffer("_intra_lookup", lookup, persistent=False)

        d, c, f64 = self.feature_dim, len(classes), torch.float64
        for side in ("real", "fake"):
            self.add_state(f"{side}_n", torch.zeros((), dtype=f64), dist_reduce_fx="sum")
            self.add_state(f"{side}_sum", torch.zeros(d, dtype=f64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(d, d, dtype=f64), dist_reduce_fx="sum")
            self.add_state(f"{side}_cls_n", torch.zeros(c, dtype=f64), dist_reduce_fx="sum")
            self.add_state(f"{side}_cls_sum", torch.zeros(c, d, dtype=f64), dist_reduce_fx="sum")
            self.add_state(f"{side}_cls_outer", torch.zeros(c, d, d, dtype=f64), dist_reduce_fx="sum")
        self.add_state("fake_logits", [], dist_reduce_fx="cat")

    _REAL_STATES = ("real_n", "real_sum", "real_outer", "real_cls_n", "real_cls_sum", "real_cls_outer")

    @property
    def feature_extractor(self) -> nn.Module:
        """The feature extractor (created on first access when none was given)."""
        if self._extractor is None:
            self.__dict__["_extractor"] = InceptionFeatureExtractor(self.weights_path)
        return self._extractor

    def _extract(self, images: Tensor) -> tuple[Tensor, Tensor]:
        extractor = self.feature_extractor
        if self._extractor_device != images.device:
            extractor.to(images.device)
            self.__dict__["_extractor_device"] = images.device
        # Mixed-precision training must not change the protocol: the extractor and the float64 sums run without
        # autocast.
        with torch.no_grad(), torch.autocast(device_type=images.device.type, enabled=False):
            features, logits = extractor(images)
        if features.dim() != 2 or features.shape != (images.shape[0], self.feature_dim):
            raise ValueError(
                f"feature extractor returned features {tuple(features.shape)}, expected ({images.shape[0]}, "
                f"{self.feature_dim})"
            )
        return features, logits

    def forward(self, images: Tensor, labels: Tensor, real: bool) -> None:
        """Same as :meth:`update`; returns None (scores are only defined on the whole set)."""
        self.update(images, labels, real)

    def update(self, images: Tensor, labels: Tensor, real: bool) -> None:
        """Accumulate a batch of real or generated images.

        Args:
            images: (N, 3, H, W), float in [0, 1] (quantised with ``round(x * 255)``) or uint8.
            labels: (N,) integer class labels in ``[0, num_classes)``.
            real: True for dataset images (reference), False for generated ones.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],) or labels.dtype.is_floating_point:
            raise ValueError(
                f"expected integer labels of shape ({images.shape[0]},), got {labels.dtype} {tuple(labels.shape)}"
            )
        if images.shape[0] == 0:
            return
        if images.dtype != torch.uint8:
            if not images.dtype.is_floating_point:
                raise ValueError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
            images = images.detach().float()
            lo, hi = float(images.min()), float(images.max())
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise ValueError(
                    f"float images must lie in [0, 1], got values in [{lo:.3f}, {hi:.3f}]; map generator "
                    "output in [-1, 1] with (x + 1) / 2 first"
                )
            images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        labels = labels.to(device=self._intra_lookup.device, dtype=torch.long)
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise ValueError(
                f"labels must lie in [0, num_classes={self.num_classes}), got [{int(labels.min())}, "
                f"{int(labels.max())}]"
            )

        features, logits = self._extract(images)
        with torch.autocast(device_type=self.real_sum.device.type, enabled=False):
            self._accumulate(features, logits, labels, real)

    def _accumulate(self, features: Tensor, logits: Tensor, labels: Tensor, real: bool) -> None:
        features = features.to(device=self.real_sum.device, dtype=torch.float64)
        side = "real" if real else "fake"
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + features.shape[0])
        getattr(self, f"{side}_sum").add_(features.sum(dim=0))
        getattr(self, f"{side}_outer").add_(features.T @ features)

        slots = self._intra_lookup[labels]
        cls_n, cls_sum, cls_outer = (getattr(self, f"{side}_cls_{name}") for name in ("n", "sum", "outer"))
        for slot in slots[slots >= 0].unique().tolist():
            selected = features[slots == slot]
            cls_n[slot] += selected.shape[0]
            cls_sum[slot].add_(selected.sum(dim=0))
            cls_outer[slot].add_(selected.T @ selected)
        if not real:
            self.fake_logits.append(logits.detach().float())

    def has_reference(self) -> bool:
        """True when reference (real-image) statistics were accumulated or loaded."""
        return self._reference_loaded or float(self.real_n) > 0

    def compute(self) -> dict[str, Tensor]:
        """FID, IS (mean, std) and intra-FID; see the class docstring for the keys."""
        if float(self.real_n) < 2:
            raise RuntimeError(
                "GenerationMetrics has no reference statistics (fewer than 2 real images): call "
                "update(images, labels, real=True) on dataset images or load_reference(path) first"
            )
        if float(self.fake_n) < 2:
            raise RuntimeError("GenerationMetrics needs at least 2 generated images: call update(..., real=False)")
        mu_r, cov_r = _mean_cov(self.real_n, self.real_sum, self.real_outer)
        mu_f, cov_f = _mean_cov(self.fake_n, self.fake_sum, self.fake_outer)
        out = {"fid": frechet_distance(mu_r, cov_r, mu_f, cov_f)}
        out["is_mean"], out["is_std"] = inception_score(dim_zero_cat(self.fake_logits), self.is_splits)

        per_class = []
        for slot, cls in enumerate(self.intra_fid_classes):
            n_r, n_f = self.real_cls_n[slot], self.fake_cls_n[slot]
            value = math.nan
            if float(n_r) >= 2 and float(n_f) >= 2:
                mu_rc, cov_rc = _mean_cov(n_r, self.real_cls_sum[slot], self.real_cls_outer[slot])
                mu_fc, cov_fc = _mean_cov(n_f, self.fake_cls_sum[slot], self.fake_cls_outer[slot])
                value = frechet_distance(mu_rc, cov_rc, mu_fc, cov_fc)
                per_class.append(value)
            out[f"intra_fid/{cls}"] = value
        out["intra_fid"] = float(np.mean(per_class)) if per_class else math.nan
        order = ["fid", "is_mean", "is_std", "intra_fid"] + [f"intra_fid/{c}" for c in self.intra_fid_classes]
        return {key: torch.tensor(out[key], dtype=torch.float32, device=self.device) for key in order}

    def reset(self) -> None:
        """Clear the generated-image states; the reference statistics stay."""
        kept = {name: getattr(self, name).clone() for name in self._REAL_STATES}
        super().reset()
        for name, value in kept.items():
            setattr(self, name, value)

    def reset_fake(self) -> None:
        """Clear the generated-image states only (the same as :meth:`reset`)."""
        self.reset()

    def reset_reference(self) -> None:
        """Clear everything, the reference statistics included."""
        super().reset()
        self._reference_loaded = False

    def _metadata(self) -> dict:
        return {
            "extractor_name": self.extractor_name,
            "feature_dim": self.feature_dim,
            "num_classes": self.num_classes,
            "intra_fid_classes": list(self.intra_fid_classes),
        }

    def save_reference(self, path: str | os.PathLike) -> Path:
        """Save the reference statistics (summed over DDP ranks) with their metadata to ``path`` (torch file).

        Call it on every rank under DDP (the statistics are gathered); only rank 0 writes. The file is written
        to a temporary name first and renamed, so an interrupted run never leaves a truncated cache.

        Returns:
            The path.
        """
        path = Path(path)
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            if float(self.real_n) < 2:
                raise RuntimeError("no reference statistics to save: call update(..., real=True) first")
            payload = {"format": _REFERENCE_FORMAT, **self._metadata()}
            payload.update({name: getattr(self, name).detach().cpu().clone() for name in self._REAL_STATES})
        if not _is_distributed() or torch.distributed.get_rank() == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            torch.save(payload, tmp)
            os.replace(tmp, path)
        return path

    def load_reference(self, path: str | os.PathLike) -> bool:
        """Load reference statistics saved by :meth:`save_reference`, replacing the current ones.

        Under DDP every rank loads the file; rank 0 holds the sums and the other ranks zeros, so the summed
        statistics equal the file's.

        Returns:
            False if ``path`` does not exist, True once loaded.

        Raises:
            ValueError: the file is not a reference file, or was made with another feature extractor, feature
                dimension, number of classes or intra-FID class list.
        """
        path = Path(path)
        if not path.is_file():
            return False
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _REFERENCE_FORMAT:
            raise ValueError(f"{path} is not a GenerationMetrics reference file ({_REFERENCE_FORMAT})")
        mismatches = [
            f"{key}: file has {payload.get(key)!r}, this metric has {expected!r}"
            for key, expected in self._metadata().items()
            if payload.get(key) != expected
        ]
        if mismatches:
            raise ValueError(
                f"reference statistics {path} do not match this metric ({'; '.join(mismatches)}). Delete the file "
                "or point the cache elsewhere to recompute them."
            )
        keep = not _is_distributed() or torch.distributed.get_rank() == 0
        for name in self._REAL_STATES:
            value = payload[name].to(device=self.real_sum.device, dtype=torch.float64)
            setattr(self, name, value if keep else torch.zeros_like(value))
        self._reference_loaded = True
        self._computed = None
        return True
