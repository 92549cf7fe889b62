"""Class-conditional image DataModules: the shared base, any ``root/<class>/*`` tree, and the bundled digits demo.

Every DataModule here has three splits, ``train``, ``val`` and ``test``, and two kinds of loaders:

* :meth:`ClassImageDataModule.train_dataloader`: shuffled (flipped if ``hflip``) training batches, dicts
  ``{"image": float32 (B, 3, R, R) in [-1, 1], "label": int64 (B,)}``;
* :meth:`ClassImageDataModule.reference_dataloader`: the real images of a split in a fixed order, without flips,
  optionally restricted to some classes or to a seeded random subset: the reference of FID / KID / precision-recall
  and intra-FID. :meth:`ClassImageDataModule.reference_key` names such a reference for caching its statistics.

``val_dataloader`` / ``test_dataloader`` yield a single placeholder item (one per process under DDP): a GAN is
evaluated on images it generates, and the reference statistics are computed once and cached, so the evaluation
(``an_gan.evaluation``) runs as one step and asks for the reference images only when its cache misses. Iterating
tens of thousands of real images at every validation only to ignore them would cost minutes.

ImageNet lives in :mod:`common.data.imagenet`.
The bundled demo, :class:`DigitsDataModule`, uses ``sklearn.datasets.load_digits()``, which ships inside
scikit-learn (no download): 1,797 real 8x8 grey-level scans of handwritten digits (UCI "Optical Recognition of
Handwritten Digits", 10 classes, pixel values 0..16), scaled to [0, 1], upsampled bilinearly to the demo resolution,
replicated to 3 channels and mapped to [-1, 1].
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from common.data.class_datasets import (
    ImageFileDataset,
    TensorImageDataset,
    dataset_labels,
    list_class_images,
    safe_name,
    scan_class_folders,
    short_hash,
)
from common.data.images import IMAGE_EXTENSIONS
from common.data.resumable import resumable_train_loader

__all__ = [
    "SPLITS",
    "ClassFolderDataModule",
    "ClassImageDataModule",
    "DigitsDataModule",
    "ImageFileDataset",
    "TensorImageDataset",
    "load_digit_images",
    "scan_class_folders",
]

#: The splits of every class-conditional DataModule.
SPLITS: tuple[str, ...] = ("train", "val", "test")


class ClassImageDataModule(pl.LightningDataModule, ABC):
    """Base of the class-conditional DataModules (module docstring: splits and loaders).

    Subclasses set ``num_classes``, ``resolution``, ``class_names`` and ``dataset_name`` in ``__init__`` (LightningCLI
    links them to the model right after instantiation) and build the datasets in :meth:`_build_datasets`.

    Args:
        resolution: Side length of the square images.
        batch_size: Images per training batch (per process under DDP); also the reference loaders' batch size.
        num_workers: DataLoader worker processes.
        hflip: Random horizontal flips for training.
    """

    num_classes: int
    class_names: list[str]
    dataset_name: str

    def __init__(self, resolution: int, batch_size: int, num_workers: int, hflip: bool) -> None:
        super().__init__()
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.resolution = resolution
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.hflip = hflip
        self._datasets: dict[str, Dataset] | None = None

    @abstractmethod
    def _build_datasets(self) -> dict[str, Dataset]:
        """Return ``{"train", "val", "test"}`` datasets; train flips when ``hflip`` is set, the others never."""

    @abstractmethod
    def _identity(self, split: str) -> str:
        """Text that identifies the images of ``split`` (root path, split parameters) for :meth:`reference_key`."""

    def setup(self, stage: str | None = None) -> None:
        """Scan the data (once) and build the datasets."""
        if self._datasets is None:
            self._datasets = self._build_datasets()

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (train flips when ``hflip`` is set)."""
        self._check_split(split)
        self.setup()
        return self._datasets[split]

    def _loader(self, dataset: Dataset, train: bool, batch_size: int | None = None) -> DataLoader:
        # Its own seeded generator: a DataLoader without one draws its workers' base seed from the global torch RNG
        # each time it is iterated, and the reference loaders run only when the reference cache misses, so the
        # training stream of a seeded run would depend on the state of the cache.
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=train and self.num_workers > 0,
            generator=torch.Generator().manual_seed(0),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, flipped (if ``hflip``) training batches; the last partial batch is dropped.

        The order and the flips come from the run's seed and survive a resume exactly
        (:func:`common.data.resumable.resumable_train_loader`); under DDP each rank takes its share of every epoch.
        """
        dataset = self.dataset("train")
        if len(dataset) < self.batch_size:
            raise ValueError(
                f"{self.dataset_name}: the training split has {len(dataset)} images, fewer than batch_size="
                f"{self.batch_size}; with drop_last there would be no batch at all. Lower batch_size."
            )
        return resumable_train_loader(
            self,
            dataset,
            self.batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        """One placeholder item: validation is one evaluation step (see the module docstring)."""
        return DataLoader([0], batch_size=1)

    def test_dataloader(self) -> DataLoader:
        """One placeholder item, like :meth:`val_dataloader`."""
        return DataLoader([0], batch_size=1)

    def reference_indices(
        self, split: str, classes: Sequence[int] | None = None, num_samples: int | None = None, seed: int = 0
    ) -> np.ndarray:
        """Indices (in dataset order) of the reference images: the items of ``classes`` (all when None), then a
        random subset of ``num_samples`` of them (``torch.randperm`` seeded with ``seed``, kept in dataset order).

        Raises:
            ValueError: ``num_samples`` larger than the number of images available.
        """
        labels = dataset_labels(self.dataset(split))
        indices = np.arange(len(labels))
        if classes is not None:
            indices = indices[np.isin(labels, np.asarray(list(classes), dtype=np.int64))]
        if num_samples is not None:
            if not 0 < num_samples <= len(indices):
                raise ValueError(
                    f"{self.dataset_name} {split}: num_samples={num_samples} but only {len(indices)} images are there"
                )
            pick = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))[:num_samples]
            indices = indices[np.sort(pick.numpy())]
        return indices

    def reference_dataloader(
        self,
        split: str = "val",
        classes: Sequence[int] | None = None,
        num_samples: int | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        shard: tuple[int, int] | None = None,
    ) -> DataLoader:
        """The reference images of ``split`` (:meth:`reference_indices`) in a fixed order without flips.

        ``shard=(rank, world)`` keeps the contiguous slice ``[rank * M // world, (rank + 1) * M // world)`` of the
        ``M`` reference images (one process's share under DDP).
        """
        dataset = self.dataset(split)
        if getattr(dataset, "hflip", False):
            dataset = copy.copy(dataset)
            dataset.hflip = False
        indices = self.reference_indices(split, classes, num_samples, seed)
        if shard is not None:
            rank, world = shard
            indices = indices[rank * len(indices) // world : (rank + 1) * len(indices) // world]
        if classes is not None or num_samples is not None or shard is not None:
            dataset = Subset(dataset, indices.tolist())
        return self._loader(dataset, train=False, batch_size=batch_size)

    def reference_key(self, split: str, num_samples: int | None = None, seed: int = 0) -> str:
        """Filesystem-safe name of a reference (split, resolution, subset), for caching its statistics.

        ``<dataset_name>_<split>[_n<num_samples>s<seed>]_r<resolution>_<hash>``, the hash covering the data's identity
        (resolved root path, labels file, split fractions and seeds, ...).
        """
        self._check_split(split)
        subset = "" if num_samples is None else f"_n{num_samples}s{seed}"
        identity = short_hash(self._identity(split), num_samples, seed)
        return f"{safe_name(self.dataset_name)}_{split}{subset}_r{self.resolution}_{identity}"


class ClassFolderDataModule(ClassImageDataModule):
    """Any ``root/<class>/*.{jpg,jpeg,png,...}`` tree (e.g. an ImageNet subset); classes in sorted folder order.

    Validation comes from ``val_root`` (same class folder names) or, without it, from a deterministic stratified
    split of ``root``: in every class, the files are permuted with a generator seeded by ``split_seed`` and the first
    ``ceil(val_fraction * n)`` (at least one when the class has two or more images) go to validation. ``test`` is the
    validation images too. ``ClassFolderDataModule(root, val_root=root)`` makes every split the whole tree (a folder
    of real images used as an evaluation reference).

    Args:
        root: Folder of class folders.
        resolution: Side length of the square images (centre crop on the long side, Lanczos resize).
        batch_size: Images per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        val_root: Separate validation folder of class folders; None: split ``root``.
        val_fraction: Fraction of each class held out for validation when ``val_root`` is None (0 < f < 1).
        hflip: Random horizontal flips for training.
        min_classes: Fewest class folders accepted (guards against a wrong folder depth).
        extensions: File suffixes to use (case-insensitive, with the dot); None: every supported image type.
        split_seed: Seed of the train/validation split.
    """

    def __init__(
        self,
        root: str,
        resolution: int = 64,
        batch_size: int = 64,
        num_workers: int = 2,
        val_root: str | None = None,
        val_fraction: float = 0.05,
        hflip: bool = True,
        min_classes: int = 2,
        extensions: list[str] | None = None,
        split_seed: int = 0,
    ) -> None:
        super().__init__(resolution, batch_size, num_workers, hflip)
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"class-folder root not found: {self.root}; expected layout: {self.root}/<class>/*.jpg"
            )
        if val_root is None and not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1) when val_root is None, got {val_fraction}")
        exts = (
            IMAGE_EXTENSIONS
            if extensions is None
            else frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        )
        unsupported = sorted(exts - IMAGE_EXTENSIONS)
        if unsupported or not exts:
            raise ValueError(
                f"unsupported extensions {unsupported or extensions}; supported: {sorted(IMAGE_EXTENSIONS)}"
            )
        self.extensions = exts
        self.class_names = scan_class_folders(self.root, min_classes, "<class>/*.jpg")
        self.num_classes = len(self.class_names)
        self.dataset_name = safe_name(self.root.resolve().name)
        self.val_root = Path(val_root).expanduser() if val_root is not None else None
        if self.val_root is not None and not self.val_root.is_dir():
            raise FileNotFoundError(
                f"val_root not found: {self.val_root}; expected layout: {self.val_root}/<class>/*.jpg"
            )
        self.val_fraction = val_fraction
        self.split_seed = split_seed

    def _identity(self, split: str) -> str:
        exts = ",".join(sorted(self.extensions))
        split = "val" if split == "test" else split
        if self.val_root is not None:
            folder = self.root if split == "train" else self.val_root
            return f"{folder.resolve()}|{exts}"
        return f"{self.root.resolve()}|{exts}|{split}|{self.val_fraction}|{self.split_seed}"

    def _build_datasets(self) -> dict[str, Dataset]:
        splits: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "val": ([], [])}
        for label, name in enumerate(self.class_names):
            files = list_class_images(self.root / name, self.extensions)
            if self.val_root is None:
                order = torch.randperm(len(files), generator=torch.Generator().manual_seed(self.split_seed + label))
                n_val = min(max(math.ceil(self.val_fraction * len(files)), 1), len(files) - 1) if len(files) > 1 else 0
                held = set(order[:n_val].tolist())
                for i, path in enumerate(files):
                    split = "val" if i in held else "train"
                    splits[split][0].append(path.resolve())
                    splits[split][1].append(label)
            else:
                splits["train"][0].extend(p.resolve() for p in files)
                splits["train"][1].extend([label] * len(files))
        if self.val_root is not None:
            val_classes = scan_class_folders(self.val_root, 1, "<class>/*.jpg")
            unknown = [c for c in val_classes if c not in self.class_names]
            if unknown:
                raise ValueError(
                    f"val_root {self.val_root} has class folders that are not in {self.root}: {unknown[:5]}"
                )
            for name in val_classes:
                files = list_class_images(self.val_root / name, self.extensions)
                splits["val"][0].extend(p.resolve() for p in files)
                splits["val"][1].extend([self.class_names.index(name)] * len(files))
        if not splits["val"][0]:
            raise ValueError(f"no validation images: every class of {self.root} has a single image; pass val_root")
        val = ImageFileDataset(Path("/"), *splits["val"], self.resolution, hflip=False)
        return {
            "train": ImageFileDataset(Path("/"), *splits["train"], self.resolution, self.hflip),
            "val": val,
            "test": val,
        }


def load_digit_images(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as images (N, 3, resolution, resolution) float32 in [-1, 1] and labels (N,) int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    if resolution != images.shape[-1]:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 2 - 1).expand(-1, 3, -1, -1).contiguous()
    return images, torch.from_numpy(digits.target).long()


class DigitsDataModule(ClassImageDataModule):
    """scikit-learn's 1,797 handwritten digits (10 classes) upsampled to ``resolution``: the bundled demo.

    The images are preprocessed once (in memory, a few MB) and split at random (permutation seeded by ``seed``):
    the first ``val_fraction`` of the permuted images are ``val`` (model selection), the next ``test_fraction`` are
    ``test`` (reported scores and the demo's held-out judge), the rest ``train``.

    Args:
        resolution: Side length of the square images (the 8x8 digits are upsampled bilinearly).
        batch_size: Images per batch.
        num_workers: DataLoader worker processes (0 is fastest for in-memory data).
        val_fraction: Fraction of the images held out for validation.
        test_fraction: Fraction of the images held out for testing (``val_fraction + test_fraction < 1``).
        hflip: Random horizontal flips for training (off by default: digits are not mirror-symmetric).
        seed: Seed of the split.
    """

    def __init__(
        self,
        resolution: int = 32,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(resolution, batch_size, num_workers, hflip)
        self.save_hyperparameters()
        if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
            raise ValueError(
                f"val_fraction and test_fraction must lie in (0, 1) with a sum below 1, got {val_fraction}, "
                f"{test_fraction}"
            )
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.num_classes = 10
        self.class_names = [str(d) for d in range(10)]
        self.dataset_name = "digits"

    def _identity(self, split: str) -> str:
        return f"sklearn-digits|{split}|{self.val_fraction}|{self.test_fraction}|{self.seed}"

    def _build_datasets(self) -> dict[str, Dataset]:
        images, labels = load_digit_images(self.resolution)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed))
        n_val = max(1, round(self.val_fraction * len(labels)))
        n_test = max(1, round(self.test_fraction * len(labels)))
        val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
        return {
            "train": TensorImageDataset(images[train], labels[train], self.hflip),
            "val": TensorImageDataset(images[val], labels[val], hflip=False),
            "test": TensorImageDataset(images[test], labels[test], hflip=False),
        }
