"""The real side of :class:`an_gan.evaluation.GenerationEvaluator` (Wang et al., CVPR 2020, Section 5: the metrics
compare generated images with real ones of a split): what it needs from the data (:class:`ReferenceData`), its
reference statistics (:class:`ReferenceStatistics`, loaded from the on-disk cache or computed once), and the eval-mode
context it runs the generator in.

``ReferenceData`` and ``eval_mode`` are re-exported by :mod:`an_gan.evaluation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from common.metrics.generation import (
    class_reference_path,
    extract,
    load_payload,
    reference_cache_path,
    save_payload,
    strict_float32,
)
from common.visualization import to_unit

__all__ = ["ReferenceData", "ReferenceStatistics", "eval_mode"]

_MAX_CLASSES_IN_MEMORY = 64  # per-class reference features kept in memory (beyond that: read from the cache)


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


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class ReferenceStatistics:
    """The reference statistics of :class:`an_gan.evaluation.GenerationEvaluator` (a base class of it; it provides
    the protocol's settings, ``metrics()``, the feature extractor and the in-memory caches these methods use).

    Pooled statistics (FID / KID / precision-recall) of ``reference_split`` and per-class features (intra-FID) of
    ``intra_fid_split`` come from the on-disk cache (``reference_cache_dir``, :mod:`common.metrics.generation.cache`)
    or are computed once and cached there; under DDP each process computes its shard of the pooled statistics. The
    ranks agree on the pooled cache: unless every rank finds the file (a relative ``reference_cache_dir`` resolves
    against each process's working folder, and nodes may not share it), all of them compute the statistics, so no
    rank waits in a collective the others never join.
    """

    @strict_float32()
    def prepare(
        self, reference: ReferenceData, device: torch.device | str = "cpu", rank: int = 0, world: int = 1
    ) -> None:
        """Load or compute the reference statistics (pooled, unless ``num_samples`` is 0, and this process's intra-FID
        classes)."""
        metrics = self.metrics(device)
        key = reference.reference_key(self.reference_split, self.reference_num_samples, 0)
        if self.num_samples > 0 and (key != self._pooled_key or not metrics.has_reference()):
            metrics.reset_reference()
            meta = {"extractor_name": self.extractor_name, "key": key}
            path = None
            if self.reference_cache_dir is not None:
                path = reference_cache_path(self.reference_cache_dir, key, self.extractor_name)
            loaded = path is not None and metrics.load_reference(path, meta)
            if _distributed():  # every rank must take the same path (save_reference gathers across ranks)
                flag = torch.tensor([int(loaded)], device=device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
                if loaded and not int(flag.item()):  # another rank's cache is cold (another folder or node)
                    metrics.reset_reference()
                    loaded = False
            if not loaded:
                loader = reference.reference_dataloader(
                    self.reference_split, None, self.reference_num_samples, 0, self.batch_size, (rank, world)
                )
                total = len(reference.reference_indices(self.reference_split, None, self.reference_num_samples, 0))
                offset = rank * total // world  # position of this shard's first image in the reference order
                for batch in tqdm(loader, desc="reference features", disable=rank != 0, leave=False):
                    features, _ = extract(self.feature_extractor, to_unit(batch["image"].to(device)))
                    pos = torch.arange(offset, offset + features.shape[0])
                    metrics.update(features, None, pos, real=True)
                    offset += features.shape[0]
                if path is not None:
                    metrics.save_reference(path, meta)
            self._pooled_key = key
        class_key = reference.reference_key(self.intra_fid_split)
        if class_key != self._class_key:
            self._class_refs, self._class_key = {}, class_key

    @strict_float32()
    def class_reference(self, reference: ReferenceData, cls: int, device: torch.device | str = "cpu") -> Tensor:
        """Features (n_c, D) of class ``cls``'s images of ``intra_fid_split`` (cached on disk and/or in memory)."""
        if cls in self._class_refs:
            return self._class_refs[cls]
        key = reference.reference_key(self.intra_fid_split)
        meta = {
            "extractor_name": self.extractor_name,
            "key": key,
            "class": int(cls),
            "feature_dim": self._feature_dim(),
        }
        path = None
        payload = None
        if self.reference_cache_dir is not None:
            path = class_reference_path(self.reference_cache_dir, key, self.extractor_name, cls)
            payload = load_payload(path, meta)
        if payload is not None:
            features = payload["features"]
        else:
            loader = reference.reference_dataloader(self.intra_fid_split, [cls], None, 0, self.batch_size)
            chunks = [self._real_features(batch["image"], device) for batch in loader]
            features = torch.cat(chunks)
            if path is not None:
                save_payload(path, meta, {"features": features})
        if path is None or len(self.classes(reference.num_classes)) <= _MAX_CLASSES_IN_MEMORY:
            self._class_refs[cls] = features
        return features

    def _real_features(self, images: Tensor, device) -> Tensor:
        return extract(self.feature_extractor, to_unit(images.to(device)))[0].cpu()


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode inside the block and restore its previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
