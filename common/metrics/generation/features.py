"""Feature extractors for the generation metrics: TF-ported Inception-v3 (the protocol) and a random stand-in.

* :class:`InceptionFeatureExtractor`: the TensorFlow "2015-12-05" Inception-v3 weights as ported to PyTorch by
  torch-fidelity (``torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3``). Images enter as
  uint8; the extractor resizes them to 299x299 with its TF1-compatible bilinear interpolation (no antialiasing), as
  the original TF evaluation code did. FID, KID and precision/recall use the 2048-d pool features, IS the 1008
  "unbiased" logits (the final fully connected layer without its bias), the layers torch-fidelity uses.
* :class:`RandomProjectionExtractor`: a fixed random network for tests and CPU demos; not an FID backbone.

:func:`to_uint8` quantises float images in [0, 1] by rounding ``x * 255`` (what writing PNG files does), so scores
of in-memory images and of the same images written to disk agree exactly (:func:`unit_to_uint8`: the same
quantisation without the range check, for images known to lie in [0, 1]). :func:`extract` runs an extractor with
autocast disabled, so mixed-precision training does not change the protocol; :func:`strict_float32` also keeps
cuDNN from running its float32 convolutions in TF32 (the evaluator holds it around each evaluation).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = [
    "INCEPTION_WEIGHTS_URL",
    "InceptionFeatureExtractor",
    "RandomProjectionExtractor",
    "default_inception_weights_path",
    "extract",
    "extractor_name",
    "feature_dim",
    "strict_float32",
    "to_uint8",
    "unit_to_uint8",
]

#: Where torch-fidelity downloads its TF-ported Inception-v3 weights from (torch-fidelity 0.2.0+ release asset).
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
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
        "(GenerationEvaluator(inception_weights=...) / InceptionFeatureExtractor(weights_path=...))."
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
        try:  # weights are data: torch-fidelity unpickles the file (weights_only=False), so it must pass as data first
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:
            raise RuntimeError(
                f"{path} is not a plain weights file (a tensor dict loadable with torch.load(weights_only=True)): "
                f"refused ({type(error).__name__}). " + _missing_weights_message("use the original file")
            ) from error
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


def extractor_name(extractor: nn.Module) -> str:
    """The extractor's ``extractor_name`` attribute, else its class name (used to key reference caches)."""
    return str(getattr(extractor, "extractor_name", type(extractor).__name__))


def feature_dim(extractor: nn.Module) -> int:
    """The extractor's ``feature_dim`` attribute, else the width of its features on a dummy batch."""
    dim = getattr(extractor, "feature_dim", None)
    if dim is None:
        with torch.no_grad():
            features, _ = extractor(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
        dim = features.shape[1]
    return int(dim)


def to_uint8(images: Tensor) -> Tensor:
    """uint8 images (N, 3, H, W): uint8 input unchanged, float input in [0, 1] as ``round(x * 255)``.

    Raises:
        ValueError: wrong shape, a non-float non-uint8 dtype, or float values outside [0, 1] (a generator's
            [-1, 1] output must be mapped with ``(x + 1) / 2`` first).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images (N, 3, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images
    if not images.dtype.is_floating_point:
        raise ValueError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    images = images.detach().float()
    if images.numel():
        lo, hi = torch.aminmax(images)
        if float(lo) < -1e-3 or float(hi) > 1 + 1e-3:
            raise ValueError(
                f"float images must lie in [0, 1], got values in [{float(lo):.3f}, {float(hi):.3f}]; map generator "
                "output in [-1, 1] with (x + 1) / 2 first"
            )
    return unit_to_uint8(images)


def unit_to_uint8(images: Tensor) -> Tensor:
    """``round(clamp(x, 0, 1) * 255)`` as uint8, same shape: :func:`to_uint8`'s quantisation without its checks.

    For images known to lie in [0, 1] (``common.visualization.to_unit``'s output): the range check of
    :func:`to_uint8` reads values on the host, a synchronisation per batch on an accelerator.
    """
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """Inside the block, CUDA float32 convolutions and matmuls run in IEEE float32, not TF32.

    PyTorch lets cuDNN use TF32 (10-bit mantissa) for float32 convolutions by default on Ampere and later GPUs, so
    an Inception-v3 "in float32" would not be float32 there. The flags are process-wide: hold the block around a
    whole evaluation, not per batch while another thread runs other float32 work. Restored on exit.
    """
    saved = []
    for legacy, per_op in ((torch.backends.cudnn, torch.backends.cudnn.conv), (torch.backends.cuda.matmul,) * 2):
        try:
            saved.append((legacy, "allow_tf32", legacy.allow_tf32))
            legacy.allow_tf32 = False
        except RuntimeError:  # flags set through the per-operator API: the legacy getter refuses to answer
            saved.append((per_op, "fp32_precision", per_op.fp32_precision))
            per_op.fp32_precision = "ieee"
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def extract(extractor: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """(features (N, D), logits (N, K)) of ``images`` (see :func:`to_uint8`), without gradients or autocast.

    The extractor is moved to the images' device on first use.
    """
    images = to_uint8(images)
    param = next(iter(extractor.parameters()), None)
    if param is None:
        param = next(iter(extractor.buffers()), None)
    if param is not None and param.device != images.device:
        extractor.to(images.device)
    with torch.no_grad(), torch.autocast(device_type=images.device.type, enabled=False):
        features, logits = extractor(images)
    if features.dim() != 2 or features.shape[0] != images.shape[0]:
        raise ValueError(f"feature extractor returned features {tuple(features.shape)} for {images.shape[0]} images")
    return features.float(), logits.float()
