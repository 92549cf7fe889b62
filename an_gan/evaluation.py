"""``GenerationEvaluator``: the evaluation protocol of the class-conditional GAN, usable with or without a Trainer.

What is computed (Wang et al., CVPR 2020, Section 5, "Evaluation Metrics": "FID, intra FID, and IS are computed on
50k randomly generated images"; the protocols of the works its Table 1 cites are named per item):

* **Generated set**: ``num_samples`` images, class-balanced, image ``j`` of class ``c`` from that class's noise
  stream for ``seed`` (:mod:`an_gan.noise`), from the generator the caller hands over, in eval mode.
* **FID** (Heusel et al. 2017) against ``reference_num_samples`` images (None: all) of the datamodule's
  ``reference_split``: the default ``"train"`` follows the documented ImageNet protocols of the baselines
  (BigGAN-PyTorch's ``I128_inception_moments`` and StudioGAN's ImageNet protocol use the training set).
* **IS** (Salimans et al. 2016) with ``is_splits`` splits on the generated set (torch-fidelity's computation).
* **KID** and **improved precision / recall** (torch-fidelity, on the same Inception pool features) on a seeded random
  subset of ``kid_prc_num_samples`` images of each side (:class:`common.metrics.generation.GenerationMetrics`: the
  smallest pseudo-random keys of the images' positions), never the first ones: ImageNet's training set is sorted
  by class, so its first 10,000 images are classes 0-7.
* **Intra-FID** as in the SN-GAN projection code (``pfnet-research/sngan_projection``,
  ``evaluations/calc_intra_FID.py``): per class, ``intra_fid_num_per_class`` generated images (5,000 there) against
  every image of that class in ``intra_fid_split`` (their ``calc_ref_stats.py``: the class's training images),
  averaged over ``intra_fid_classes`` (``"all"``: every class, Table 1; ``"table2"``: the paper's Table 2 classes).
  The first images of a class's stream serve both the FID set and its intra-FID set.
* Features: TF-ported Inception-v3 (``common.metrics.generation.features``) unless another extractor is given, in
  float32 (autocast off; on CUDA TF32 off for the whole evaluation, the generator included).

Reference statistics are cached on disk (``reference_cache_dir``, :mod:`common.metrics.generation.cache`) and in
memory, so only the first evaluation of a run pays for them. Under DDP each process generates the classes
``rank, rank + world, ...`` and computes its share of the references; statistics are summed across processes and
every sample counts exactly once, so scores do not depend on the number of processes. The generated set is walked
class by class in full batches of ``batch_size`` (:func:`an_gan.noise.pack_batches`); with ``overlap`` the next
batch is made in a background thread while Inception (float32) extracts the current one
(:mod:`common.training.prefetch`).

:meth:`GenerationEvaluator.evaluate` scores a generator, :meth:`GenerationEvaluator.score_folder` a folder of images
in class sub-folders (``predict``'s output or any other method's), with the same code: the same images give the
same numbers (tested).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from an_gan.noise import class_counts, class_folders, generate_batch, pack_batches, positions, read_batch
from an_gan.reference_data import ReferenceData, ReferenceStatistics, eval_mode
from common.data.images import list_images
from common.metrics.generation import (
    ClassStatistics,
    GenerationMetrics,
    InceptionFeatureExtractor,
    class_frechet_distance,
    extract,
    extractor_name,
    feature_dim,
    resolve_intra_fid_classes,
    strict_float32,
)
from common.training.prefetch import prefetch

__all__ = ["FolderTooSmallError", "GenerationEvaluator", "ReferenceData", "eval_mode"]

_MAX_LOGGED_CLASSES = 20  # per-class intra-FID values returned as keys (all are in ``last_intra_fid``)
_PREFETCH_DEPTH = 2  # batches made ahead when overlapping (uint8 images: 4.9 MB per 100 images at 128 px)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class FolderTooSmallError(ValueError):
    """A class folder holds fewer images than the protocol needs (:meth:`GenerationEvaluator.score_folder`).

    Attributes:
        cls, folder, have: the class, its folder and its number of images.
        fid_count, intra_count: the images it needs for FID / IS / KID / PR and for intra-FID.
    """

    def __init__(self, cls: int, folder: Path, have: int, fid_count: int, intra_count: int, protocol: str) -> None:
        self.cls, self.folder, self.have, self.fid_count, self.intra_count = cls, folder, have, fid_count, intra_count
        super().__init__(
            f"class {cls} needs {max(fid_count, intra_count)} images but {folder} holds {have}: {fid_count} for "
            f"FID / IS / KID / PR and {intra_count} for intra-FID ({protocol})"
        )


class GenerationEvaluator(ReferenceStatistics):
    """FID / IS / KID / precision-recall / intra-FID of a class-conditional generator (module docstring).

    Args:
        num_samples: generated images for FID, IS, KID, precision / recall (paper: 50,000), class-balanced; 0: none
            of these, intra-FID only (e.g. a folder with a few classes; needs ``intra_fid_classes``).
        seed: seed of the generated set (use different seeds for model selection and for reported scores).
        batch_size: generation and feature-extraction batch size.
        reference_split: split of the FID / KID / precision-recall reference (``"train"``, ``"val"``, ``"test"``).
        reference_num_samples: reference images (a seeded random subset of the split); None: all of them.
        intra_fid_classes: ``"all"``, ``"table2"``, a list of classes, or None (no intra-FID).
        intra_fid_num_per_class: generated images per class for intra-FID (SN-GAN projection: 5,000).
        intra_fid_split: split whose images of each class are that class's reference (SN-GAN projection: train).
        is_splits: Inception Score splits (10).
        kid_prc_num_samples: images per side for KID and precision / recall, a seeded random subset of each side
            (0: not computed).
        feature_extractor: module mapping uint8 images to (features, logits); None: TF-ported Inception-v3, loaded
            on first use. ``common.metrics.generation.RandomProjectionExtractor`` is a CPU stand-in (not FID).
        inception_weights: local Inception weights file (offline machines); None: torch-fidelity's cache/download.
        reference_cache_dir: folder for cached reference statistics; None: keep them in memory only.
        overlap: make the next batch (generate it, or read its files) in a background thread, on CUDA on its own
            stream, while the extractor processes the current one (:mod:`common.training.prefetch`); False: one after
            the other. The same batches in the same order either way: identical images and scores (tested).
    """

    def __init__(
        self,
        num_samples: int = 50000,
        seed: int = 0,
        batch_size: int = 100,
        reference_split: str = "train",
        reference_num_samples: int | None = None,
        intra_fid_classes: list[int] | str | None = "all",
        intra_fid_num_per_class: int = 5000,
        intra_fid_split: str = "train",
        is_splits: int = 10,
        kid_prc_num_samples: int = 10000,
        feature_extractor: nn.Module | None = None,
        inception_weights: str | None = None,
        reference_cache_dir: str | None = "runs/fid_refs",
        overlap: bool = True,
    ) -> None:
        if not isinstance(overlap, bool):
            raise TypeError(f"overlap must be True or False, got {overlap!r}")
        self.num_samples, self.seed, self.batch_size = num_samples, seed, batch_size
        self.reference_split, self.reference_num_samples = reference_split, reference_num_samples
        self.intra_fid_classes, self.intra_fid_num_per_class = intra_fid_classes, intra_fid_num_per_class
        self.intra_fid_split, self.is_splits, self.kid_prc_num_samples = intra_fid_split, is_splits, kid_prc_num_samples
        self.inception_weights = inception_weights
        self.reference_cache_dir, self.overlap = reference_cache_dir, overlap
        self._extractor = feature_extractor
        self._metrics: GenerationMetrics | None = None
        self._pooled_key: str | None = None
        self._class_refs: dict[int, Tensor] = {}
        self._class_key: str | None = None
        self.last_intra_fid: dict[int, float] = {}
        self.check()

    def check(self) -> None:
        """Validate the protocol's counts (called by the constructor; again after changing them, as ``evaluate``
        does for its ``--num_per_class`` / ``--intra_fid_*`` flags).

        Raises:
            ValueError: a count out of range, or nothing to compute.
        """
        n, batch, intra, kid = self.num_samples, self.batch_size, self.intra_fid_num_per_class, self.kid_prc_num_samples
        if n < 0 or n == 1 or batch < 1 or intra < 2 or kid < 0:
            raise ValueError(
                "need num_samples 0 or >= 2, batch_size >= 1, intra_fid_num_per_class >= 2 and kid_prc_num_samples "
                f">= 0, got {n}, {batch}, {intra}, {kid}"
            )
        if 0 < n < self.is_splits:
            raise ValueError(f"num_samples ({n}) must be at least is_splits ({self.is_splits})")
        if n == 0 and self.intra_fid_classes is None:
            raise ValueError("num_samples 0 (no FID / IS / KID / PR) and no intra_fid_classes: nothing to compute")

    # ------------------------------------------------------------------------------------------------- parts
    @property
    def feature_extractor(self) -> nn.Module:
        """The extractor (TF-ported Inception-v3 created on first access when none was given)."""
        if self._extractor is None:
            self._extractor = InceptionFeatureExtractor(self.inception_weights)
        return self._extractor

    @property
    def extractor_name(self) -> str:
        """Name of the extractor (part of every cache key)."""
        if self._extractor is None:
            return InceptionFeatureExtractor.extractor_name
        return extractor_name(self._extractor)

    def _feature_dim(self) -> int:
        if self._extractor is None:
            return InceptionFeatureExtractor.feature_dim
        return feature_dim(self._extractor)

    def _num_logits(self) -> int:
        k = getattr(self._extractor, "num_logits", None)
        if k is None:
            with torch.no_grad():
                _, logits = self._extractor(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
            k = logits.shape[1]
        return int(k)

    def metrics(self, device: torch.device | str = "cpu") -> GenerationMetrics:
        """The pooled metric object (holds the reference statistics between evaluations)."""
        if self._metrics is None:
            k = InceptionFeatureExtractor.num_logits if self._extractor is None else self._num_logits()
            self._metrics = GenerationMetrics(self._feature_dim(), self.is_splits, self.kid_prc_num_samples, k)
        return self._metrics.to(device)

    def classes(self, num_classes: int) -> list[int]:
        """The intra-FID classes for a generator of ``num_classes`` classes."""
        return resolve_intra_fid_classes(self.intra_fid_classes, num_classes)

    def plan(self, num_classes: int) -> list[tuple[int, int, int]]:
        """``(class, FID-set images, intra-FID images)`` per class: what :meth:`run` generates."""
        fid_counts = class_counts(self.num_samples, num_classes)
        intra = set(self.classes(num_classes))
        return [(c, fid_counts[c], self.intra_fid_num_per_class if c in intra else 0) for c in range(num_classes)]

    # ------------------------------------------------------------------------------------------------ scoring
    def _score(self, batches, produce, counts, reference: ReferenceData, device, desc: str, quiet: bool) -> dict:
        """Feature-extract the batches that ``produce`` makes and route them to the metrics; per-class intra-FID.

        Args:
            batches: :func:`an_gan.noise.pack_batches` output; ``produce(segments)`` makes the batch's images,
                uint8 (B, 3, R, R) on ``device`` (in a background thread when overlapping,
                :mod:`common.training.prefetch`).
            counts: ``{class: (FID-set images, intra-FID images)}`` of the classes in ``batches``.

        Returns:
            ``{class: intra-FID}`` of the intra-FID classes in ``batches``.
        """
        stats: dict[int, ClassStatistics] = {}  # the classes whose intra-FID images are under way
        intra_values: dict[int, float] = {}
        made = prefetch(produce, batches, overlap=self.overlap, depth=_PREFETCH_DEPTH, device=device)
        with contextlib.closing(made):  # an error below stops the producer thread at once
            for segments, images in tqdm(made, desc=desc, total=len(batches), disable=quiet, leave=False):
                features, logits = extract(self.feature_extractor, images)
                self._route(segments, features, logits, counts, stats, intra_values, reference, device)
        return intra_values

    def _route(self, segments, features, logits, counts, stats, intra_values, reference, device) -> None:
        """Send a batch's features (B, D) and logits (B, K) to the pooled metrics and the per-class statistics."""
        k = reference.num_classes
        rows, pos, offset = [], [], 0
        for cls, start, stop in segments:
            fid_count, intra_count = counts[cls]
            in_fid = max(0, min(stop, fid_count) - start)
            if in_fid:
                rows.append(torch.arange(offset, offset + in_fid))
                pos.append(positions(cls, start, start + in_fid, k))
            in_intra = max(0, min(stop, intra_count) - start)
            if in_intra:
                if cls not in stats:
                    stats[cls] = ClassStatistics(self._feature_dim(), device)
                stats[cls].update(features[offset : offset + in_intra])
            if stop == max(fid_count, intra_count) and cls in stats:  # the class's last images
                intra_values[cls] = class_frechet_distance(self.class_reference(reference, cls, device), stats.pop(cls))
            offset += stop - start
        if rows:
            rows = torch.cat(rows)  # the rows of the FID set (all of them unless intra-FID needs more)
            if rows.shape[0] < features.shape[0]:
                index = rows.to(features.device, non_blocking=True)
                features, logits = features.index_select(0, index), logits.index_select(0, index)
            self._metrics.update(features, logits, torch.cat(pos), real=False)  # CPU positions: no host sync

    def _finish(self, reference: ReferenceData, intra_values: dict[int, float], device) -> dict[str, float]:
        classes = self.classes(reference.num_classes)
        values = torch.zeros(len(classes), dtype=torch.float64, device=device)
        seen = torch.zeros(len(classes), dtype=torch.float64, device=device)
        for i, c in enumerate(classes):
            if c in intra_values:
                values[i], seen[i] = intra_values[c], 1.0
        if _distributed():
            torch.distributed.all_reduce(values)
            torch.distributed.all_reduce(seen)
        scores = {k: float(v) for k, v in self._metrics.compute().items()} if self.num_samples else {}
        self._metrics.reset()
        self.last_intra_fid = {c: float(values[i] / seen[i]) if seen[i] else math.nan for i, c in enumerate(classes)}
        if classes:
            finite = [v for v in self.last_intra_fid.values() if math.isfinite(v)]
            scores["intra_fid"] = float(np.mean(finite)) if finite else math.nan
            if len(classes) <= _MAX_LOGGED_CLASSES:
                scores.update({f"intra_fid/{c}": v for c, v in self.last_intra_fid.items()})
        return scores

    @torch.no_grad()
    @strict_float32()
    def run(
        self,
        generator: nn.Module,
        reference: ReferenceData,
        device: torch.device | str | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> dict[str, float]:
        """Generate this process's share of the evaluation set with ``generator`` (eval mode) and score it.

        :meth:`prepare` must have run. Returns the scores (identical on every process).
        """
        device = torch.device(device) if device is not None else next(generator.parameters()).device
        k = generator.num_classes
        if k != reference.num_classes:
            raise ValueError(f"the generator has {k} classes but the reference data {reference.num_classes}")
        self.metrics(device).reset()
        mine = {c: (f, i) for c, f, i in self.plan(k) if c % world == rank}
        batches = pack_batches([(c, max(n)) for c, n in mine.items()], self.batch_size)
        with eval_mode(generator):
            produce = functools.partial(generate_batch, generator, self.seed, device)
            intra_values = self._score(batches, produce, mine, reference, device, "generating", rank != 0)
        return self._finish(reference, intra_values, device)

    def evaluate(self, generator: nn.Module, reference: ReferenceData, device=None) -> dict[str, float]:
        """Score ``generator`` against ``reference`` in this process (no Trainer, no DDP)."""
        device = torch.device(device) if device is not None else next(generator.parameters()).device
        self.prepare(reference, device)
        return self.run(generator, reference, device)

    @torch.no_grad()
    @strict_float32()
    def score_folder(self, samples: str | Path, reference: ReferenceData, device=None) -> dict[str, float]:
        """Score a folder of generated images in class sub-folders against ``reference``.

        Sub-folders are named by class index (``0003``, as ``predict`` writes them) or by the reference's class
        names; inside, files sorted by name are images ``0, 1, ...`` of that class. The same subsets are used as for
        a generator: the first ``N // K (+1)`` images of each class for FID / IS / KID / PR, the first
        ``intra_fid_num_per_class`` for intra-FID. Files are read in a background thread when overlapping.

        Raises:
            FolderTooSmallError: too few images in a class folder (or no folder for a class the protocol needs).
            FileNotFoundError / ValueError: a missing folder, unknown class folders, or images whose size differs
                from the reference resolution.
        """
        device = torch.device(device or "cpu")
        folders = class_folders(Path(samples), reference.class_names, reference.num_classes)
        k = reference.num_classes
        counts = {c: (f, i) for c, f, i in self.plan(k) if max(f, i) > 0}
        files: dict[int, list[Path]] = {}
        for cls, (fid_count, intra_count) in counts.items():
            files[cls] = list_images(folders[cls]) if cls in folders else []
            if len(files[cls]) < max(fid_count, intra_count):
                protocol = (
                    f"num_samples {self.num_samples} over {k} classes, intra_fid_num_per_class "
                    f"{self.intra_fid_num_per_class} for intra_fid_classes {self.intra_fid_classes!r}"
                )
                folder = folders.get(cls, Path(samples) / f"{cls:04d}")
                raise FolderTooSmallError(cls, folder, len(files[cls]), fid_count, intra_count, protocol)
        self.prepare(reference, device)
        self.metrics(device).reset()
        batches = pack_batches([(c, max(n)) for c, n in counts.items()], self.batch_size)
        produce = functools.partial(read_batch, files, reference.resolution, device)
        intra_values = self._score(batches, produce, counts, reference, device, "scoring", False)
        return self._finish(reference, intra_values, device)

    def describe(self, num_classes: int) -> dict[str, Any]:
        """The protocol as a dict (for JSON reports)."""
        classes: Sequence[int] = self.classes(num_classes)
        return {
            "num_samples": self.num_samples,
            "seed": self.seed,
            "reference_split": self.reference_split,
            "reference_num_samples": self.reference_num_samples,
            "intra_fid_classes": self.intra_fid_classes if isinstance(self.intra_fid_classes, str) else list(classes),
            "intra_fid_num_per_class": self.intra_fid_num_per_class,
            "intra_fid_split": self.intra_fid_split,
            "is_splits": self.is_splits,
            "kid_prc_num_samples": self.kid_prc_num_samples,
            "feature_extractor": self.extractor_name,
        }
