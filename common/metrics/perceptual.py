"""Perceptual inpainting metrics: LPIPS (the ``lpips`` package) and FID (torchmetrics / torch-fidelity).

Neither is written here: :class:`LPIPSMetric` wraps ``lpips.LPIPS`` (Zhang et al., CVPR 2018) and
:class:`FIDMetric` wraps ``torchmetrics.image.fid.FrechetInceptionDistance`` (Heusel et al., 2017), whose default
feature extractor is torch-fidelity's Inception-v3 port. Both need pretrained weights that are downloaded once on
first use (LPIPS: torchvision's backbone into ``$TORCH_HOME``; FID: torch-fidelity's Inception weights, or
``weights_path`` to a local copy); tests use their stand-in options (``pretrained=False``, ``feature=<module>``),
as torchmetrics' own tests do.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from common.metrics.inpainting import _check_pair, _check_unit_range, quantize_8bit

__all__ = ["FIDMetric", "LPIPSMetric"]


class LPIPSMetric(Metric):
    """LPIPS (Zhang et al., CVPR 2018) through the ``lpips`` package, averaged over images; lower is better.

    The network is built lazily on the first ``update``. With ``pretrained=True`` the package loads its bundled
    linear-layer weights and torchvision downloads the backbone's ImageNet weights on first use (into
    ``$TORCH_HOME``); ``pretrained=False`` builds a randomly initialised network without any download (for tests
    only: its values are not LPIPS).

    Args:
        net: Backbone: ``"alex"`` (default, the package's recommendation), ``"vgg"`` or ``"squeeze"``.
        pretrained: Use the trained LPIPS weights (needs the backbone download once).
        **kwargs: Passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, net: str = "alex", pretrained: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if net not in ("alex", "vgg", "squeeze"):
            raise ValueError(f"LPIPS net must be 'alex', 'vgg' or 'squeeze', got {net!r}")
        self.net = net
        self.pretrained = pretrained
        self._holder: list[torch.nn.Module] = []  # not a registered submodule: kept out of state_dict
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def _network(self, device: torch.device) -> torch.nn.Module:
        if not self._holder:
            import lpips

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    model = lpips.LPIPS(
                        pretrained=self.pretrained, net=self.net, pnet_rand=not self.pretrained, verbose=False
                    )
            except (OSError, RuntimeError) as err:  # URLError is an OSError
                raise RuntimeError(
                    f"LPIPS could not load the torchvision {self.net} backbone weights (they are downloaded on first "
                    f"use into $TORCH_HOME; no network?): {err}"
                ) from err
            self._holder.append(model.eval().requires_grad_(False))
        model = self._holder[0]
        return model.to(device)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of ``(B, 3, H, W)`` images in [0, 1]."""
        _check_pair(pred, target, None)
        _check_unit_range("pred", pred)
        _check_unit_range("target", target)
        model = self._network(pred.device)
        with torch.no_grad():
            value = model(pred.float().clamp(0, 1), target.float().clamp(0, 1), normalize=True).flatten()
        self.total += value.double().sum()
        self.count += value.numel()
        self.values.append(value)

    def compute(self) -> Tensor:
        """Mean LPIPS over all images seen (0-dim tensor; lower is closer)."""
        if int(self.count) == 0:
            raise ValueError("LPIPSMetric.compute() called before any update()")
        return (self.total / self.count).float()

    def per_image(self) -> Tensor:
        """Per-image values ``(N,)`` in update order."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            return dim_zero_cat(self.values).float() if len(self.values) else torch.zeros(0)


class FIDMetric(Metric):
    """FID between the inpainted images and their ground truth: torchmetrics' ``FrechetInceptionDistance``.

    The torchmetrics metric (and so its Inception network) is built lazily on the first ``update``, so that
    building a model never downloads; it accumulates feature sums (reduced by ``sum`` across processes). Inputs
    are images in [0, 1] (``normalize=True``).

    Args:
        feature: Inception feature layer (64, 192, 768 or 2048, the default) or an ``nn.Module`` mapping uint8
            images ``(B, 3, H, W)`` to features ``(B, D)`` (a stand-in, as in torchmetrics' own tests).
        weights_path: Local copy of torch-fidelity's ``pt_inception-2015-12-05`` weights (offline machines).
        **kwargs: Passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, feature: int | nn.Module = 2048, weights_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feature = feature
        self.weights_path = weights_path
        self._holder: list[Metric] = []  # built lazily; not a registered child (kept out of state_dict)

    def _metric(self, device: torch.device) -> Metric:
        if not self._holder:
            from torchmetrics.image.fid import FrechetInceptionDistance

            self._holder.append(
                FrechetInceptionDistance(
                    feature=self.feature, normalize=True, feature_extractor_weights_path=self.weights_path
                )
            )
        return self._holder[0].to(device)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of ``(B, 3, H, W)`` images in [0, 1] (quantised to 8 bits first)."""
        _check_pair(pred, target, None)
        _check_unit_range("pred", pred)
        _check_unit_range("target", target)
        metric = self._metric(pred.device)
        metric.update(quantize_8bit(target.float()), real=True)
        metric.update(quantize_8bit(pred.float()), real=False)

    def compute(self) -> Tensor:
        """FID of all images seen, a 0-dim tensor (gathered over processes by torchmetrics)."""
        if not self._holder:
            raise ValueError("FIDMetric.compute() called before any update()")
        return self._holder[0].compute().float()

    def reset(self) -> None:
        """Reset this metric and the wrapped torchmetrics FID (its feature sums)."""
        super().reset()
        if self._holder:
            self._holder[0].reset()
