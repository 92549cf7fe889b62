"""Class-conditional image DataModules: ImageNet, any ``root/<class>/*`` tree, and the bundled digits demo.

The paper (Wang et al., "Attentive Normalization", CVPR 2020, Sec. 5.1) trains class-conditional GANs on
ImageNet at 128x128. Preprocessing follows the common practice of StudioGAN and BigGAN-PyTorch (see
``shared/reference/gan-anchors.md``): a square centre crop on the long side, an antialiased (Lanczos) resize to the
resolution, and a random horizontal flip for training. Batches are ``(images, labels)`` with images float32
(B, 3, R, R) in [-1, 1] and labels int64 (B,).

Folder layouts are checked up front, because a wrong folder depth silently gives every image label 0
(BigGAN-PyTorch issues #22 and #26): images lying directly in ``train/``, a single class folder, or one folder
that holds all class folders are errors whose message says what was found and what is expected.

ImageNet validation labels come from class folders (``val/<wnid>/*.JPEG``) or, for the flat official layout
(``val/ILSVRC2012_val_00000001.JPEG`` ...), from a labels file:

* a CSV ``filename,wnid`` such as Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first token
  of the second column is the wnid; a header row is skipped), matched to the image file names without extension;
* or the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (one 1-based ILSVRC2012_ID per line, in file-name
  order) together with ``val_synsets_file``: the devkit's ``data/meta.mat`` (read with SciPy) or a text file with
  one wnid per line in ILSVRC2012_ID order. ILSVRC2012_ID order is NOT alphabetical wnid order, so an alphabetical
  list such as ``LOC_synset_mapping.txt`` is refused for the ground-truth file.

The bundled demo, :class:`DigitsDataModule`, uses ``sklearn.datasets.load_digits()``, which ships inside
scikit-learn (no download): 1,797 real 8x8 grey-level scans of handwritten digits (UCI "Optical Recognition of
Handwritten Digits", 10 classes, pixel values 0..16), scaled to [0, 1], upsampled bilinearly to the demo resolution,
replicated to 3 channels and mapped to [-1, 1].
"""

from __future__ import annotations

import copy
import csv
import hashlib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from common.data.images import IMAGE_EXTENSIONS, center_crop_long_side, list_images, load_rgb, resize

__all__ = [
    "ClassFolderDataModule",
    "ClassImageDataModule",
    "DigitsDataModule",
    "ImageFileDataset",
    "ImageNetDataModule",
    "TensorImageDataset",
    "load_digit_images",
    "scan_class_folders",
]

_WNID = re.compile(r"^n\d{8}$")


def _short_hash(*parts: object) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:8]


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "data"


def _layout_hint(root: Path, expected: str) -> str:
    return f"expected layout: {root}/{expected}"


def scan_class_folders(folder: Path, min_classes: int, expected: str) -> list[str]:
    """Sorted class sub-folder names of ``folder``, after checking that the layout really has classes.

    Args:
        folder: The folder whose sub-folders are the classes.
        min_classes: Fewest classes accepted.
        expected: Layout description for error messages, e.g. ``"train/<wnid>/*.JPEG"``.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: images directly in ``folder``, one folder holding the class folders, or fewer than
            ``min_classes`` classes; the message says what was found.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder} ({_layout_hint(folder.parent, expected)})")
    entries = sorted(folder.iterdir())
    classes = sorted(p.name for p in entries if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if loose and not classes:
        raise ValueError(
            f"found {len(loose)} image files directly in {folder} and no class sub-folders; every image would get "
            f"label 0. Put each class in its own sub-folder ({_layout_hint(folder.parent, expected)})"
        )
    if loose:
        raise ValueError(
            f"{folder} mixes {len(loose)} loose image files (e.g. {loose[0].name}) with {len(classes)} class "
            f"folders; move the loose images into class folders ({_layout_hint(folder.parent, expected)})"
        )
    if not classes:
        raise ValueError(f"no class folders in {folder} ({_layout_hint(folder.parent, expected)})")
    if len(classes) == 1:
        inner = folder / classes[0]
        nested = sorted(p.name for p in inner.iterdir() if p.is_dir())
        if nested:
            raise ValueError(
                f"{folder} holds a single folder {classes[0]!r} that itself holds {len(nested)} folders "
                f"({', '.join(nested[:3])}{', ...' if len(nested) > 3 else ''}): one directory level too deep, "
                f"every image would get label 0. Point the data root one level lower "
                f"({_layout_hint(folder.parent, expected)})"
            )
    if len(classes) < min_classes:
        raise ValueError(
            f"found {len(classes)} class folder(s) in {folder} ({', '.join(classes[:5])}), at least {min_classes} "
            f"expected: a class-conditional model needs one folder per class ({_layout_hint(folder.parent, expected)})"
        )
    return classes


def _list_class_images(folder: Path, extensions: frozenset[str]) -> list[Path]:
    try:
        files = list_images(folder)
    except ValueError as err:
        raise ValueError(f"class folder {folder} holds no images: {err}") from err
    files = [p for p in files if p.suffix.lower() in extensions]
    if not files:
        raise ValueError(f"class folder {folder} holds no images with extensions {sorted(extensions)}")
    return files


class ImageFileDataset(Dataset):
    """Image files with class labels: centre crop on the long side, antialiased resize, optional random flip.

    Paths are stored as one NumPy byte-string array (not Python objects), so DataLoader workers do not copy
    the file list through reference counting.

    Args:
        root: Folder the paths are relative to.
        paths: Relative paths of the image files.
        labels: Class index per file.
        resolution: Output side length.
        hflip: Flip each image horizontally with probability 1/2 (torch RNG, seeded per worker).
    """

    def __init__(self, root: Path, paths: Sequence[str], labels: Sequence[int], resolution: int, hflip: bool) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.root = Path(root)
        self.paths = np.array([str(p).encode() for p in paths], dtype=np.bytes_)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.resolution = resolution
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.root / self.paths[index].decode()
        img = resize(center_crop_long_side(load_rgb(path)), self.resolution, antialias=True)
        image = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 127.5 - 1.0
        if self.hflip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, torch.tensor(self.labels[index], dtype=torch.long)


class TensorImageDataset(Dataset):
    """In-memory images (N, 3, R, R) in [-1, 1] and labels (N,), with an optional random horizontal flip."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, hflip: bool) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels, self.hflip = images, labels.long(), hflip

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.hflip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, self.labels[index]


class ClassImageDataModule(pl.LightningDataModule, ABC):
    """Base of the class-conditional DataModules.

    Subclasses set ``num_classes``, ``resolution``, ``class_names`` and ``dataset_name`` in ``__init__`` (LightningCLI
    links them to the model right after instantiation) and build the datasets in :meth:`_build_datasets`.
    Batches: ``(images, labels)``; images float32 (B, 3, R, R) in [-1, 1], labels int64 (B,). ``train_dataloader``
    shuffles, drops the last partial batch and flips at random (if ``hflip``); ``val_dataloader`` and
    ``test_dataloader`` give the validation images in a fixed order without flips.

    Args:
        resolution: Side length of the square images.
        batch_size: Images per batch (per process under DDP).
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
        """Return ``{"train": ..., "val": ...}``; the train dataset flips when ``hflip`` is set, the val one never."""

    @abstractmethod
    def _identity(self, split: str) -> str:
        """Text that identifies the images of ``split`` (root path, split parameters) for :meth:`reference_key`."""

    def setup(self, stage: str | None = None) -> None:
        """Scan the data (once) and build the datasets."""
        if self._datasets is None:
            self._datasets = self._build_datasets()

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` ("train" or "val"); train flips when ``hflip`` is set."""
        self.setup()
        if split not in self._datasets:
            raise ValueError(f"unknown split {split!r}; available: {sorted(self._datasets)}")
        return self._datasets[split]

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, flipped (if ``hflip``) training batches; the last partial batch is dropped."""
        dataset = self.dataset("train")
        if len(dataset) < self.batch_size:
            raise ValueError(
                f"{self.dataset_name}: the training split has {len(dataset)} images, fewer than batch_size="
                f"{self.batch_size}; with drop_last there would be no batch at all. Lower batch_size."
            )
        return self._loader(dataset, train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order, no flips."""
        return self._loader(self.dataset("val"), train=False)

    def test_dataloader(self) -> DataLoader:
        """The validation data (there is no separate test split)."""
        return self.val_dataloader()

    def reference_dataloader(self, split: str = "val") -> DataLoader:
        """All images of ``split`` ("train" or "val") in a fixed order without flips, for reference statistics."""
        dataset = self.dataset(split)
        if getattr(dataset, "hflip", False):
            dataset = copy.copy(dataset)
            dataset.hflip = False
        return self._loader(dataset, train=False)

    def reference_key(self, split: str) -> str:
        """Filesystem-safe key of the images of ``split`` at this resolution, for caching reference statistics.

        ``<dataset_name>_<split>_r<resolution>_<hash>``, the hash covering the data's identity (resolved root path,
        labels file, split fraction and seed, ...).
        """
        if split not in ("train", "val"):
            raise ValueError(f"unknown split {split!r}; use 'train' or 'val'")
        return f"{_safe_name(self.dataset_name)}_{split}_r{self.resolution}_{_short_hash(self._identity(split))}"


class ImageNetDataModule(ClassImageDataModule):
    """ImageNet (ILSVRC2012) from JPEG folders, as in the paper's ImageNet 128x128 experiments.

    Layout: ``root/train/<wnid>/*.JPEG``; validation either ``root/<val_split>/<wnid>/*.JPEG`` or flat
    ``root/<val_split>/*.JPEG`` with ``val_labels_file`` (see the module docstring for the accepted formats).
    Class index = position of the wnid in the sorted list of train folders; ``class_names`` are the wnids. Subsets
    of ImageNet work (any number >= 2 of wnid folders); validation images of classes absent from ``train`` are
    skipped with a warning.

    Args:
        root: ImageNet folder holding ``train/`` and the validation folder.
        resolution: Side length of the square images (centre crop on the long side, Lanczos resize).
        batch_size: Images per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        val_labels_file: Labels of a flat validation folder: a ``filename,wnid`` CSV (e.g. ``LOC_val_solution.csv``)
            or the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (then ``val_synsets_file`` is required).
            Ignored when the validation folder has class sub-folders.
        hflip: Random horizontal flips for training.
        val_split: Name of the validation folder under ``root``.
        val_synsets_file: ILSVRC2012_ID -> wnid mapping for the devkit ground-truth file: the devkit's
            ``data/meta.mat`` or a text file with one wnid per line (first token) in ILSVRC2012_ID order.
    """

    def __init__(
        self,
        root: str,
        resolution: int = 128,
        batch_size: int = 256,
        num_workers: int = 8,
        val_labels_file: str | None = None,
        hflip: bool = True,
        val_split: str = "val",
        val_synsets_file: str | None = None,
    ) -> None:
        super().__init__(resolution, batch_size, num_workers, hflip)
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        expected = "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (or a flat val/ plus val_labels_file)"
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageNet root not found: {self.root}; expected layout: {self.root}/{expected}")
        if not (self.root / "train").is_dir():
            raise FileNotFoundError(
                f"no train/ folder in ImageNet root {self.root} (found: "
                f"{', '.join(sorted(p.name for p in self.root.iterdir())[:8]) or 'nothing'}); "
                f"expected layout: {self.root}/{expected}"
            )
        self.class_names = scan_class_folders(self.root / "train", 2, "train/<wnid>/*.JPEG")
        odd = [c for c in self.class_names if not _WNID.match(c)]
        if odd:
            rank_zero_warn(
                f"{len(odd)} train folders of {self.root} are not ImageNet wnids (e.g. {odd[0]!r}); they are used "
                "as classes anyway. ClassFolderDataModule is meant for non-ImageNet trees."
            )
        self.num_classes = len(self.class_names)
        self.dataset_name = "imagenet"
        self.val_split = val_split
        self.val_labels_file = val_labels_file
        self.val_synsets_file = val_synsets_file

    def _identity(self, split: str) -> str:
        root = self.root.resolve()
        if split == "train":
            return f"{root}|train"
        labels, synsets = (Path(f).resolve() if f else None for f in (self.val_labels_file, self.val_synsets_file))
        return f"{root}|{self.val_split}|{labels}|{synsets}"

    def _build_datasets(self) -> dict[str, Dataset]:
        index = {name: i for i, name in enumerate(self.class_names)}
        train_paths, train_labels = [], []
        for name in self.class_names:
            for path in _list_class_images(self.root / "train" / name, IMAGE_EXTENSIONS):
                train_paths.append(path.relative_to(self.root))
                train_labels.append(index[name])
        datasets = {"train": ImageFileDataset(self.root, train_paths, train_labels, self.resolution, self.hflip)}
        val_paths, val_labels = self._scan_val(index)
        datasets["val"] = ImageFileDataset(self.root, val_paths, val_labels, self.resolution, hflip=False)
        return datasets

    def _scan_val(self, index: dict[str, int]) -> tuple[list[Path], list[int]]:
        val_dir = self.root / self.val_split
        if not val_dir.is_dir():
            raise FileNotFoundError(
                f"validation folder not found: {val_dir}; expected {val_dir}/<wnid>/*.JPEG or a flat {val_dir}/*.JPEG "
                "with val_labels_file"
            )
        subdirs = sorted(p for p in val_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        loose = [p for p in val_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if subdirs and loose:
            raise ValueError(
                f"{val_dir} mixes {len(loose)} loose images with {len(subdirs)} folders; use either class folders "
                "or a flat folder with val_labels_file"
            )
        pairs: list[tuple[Path, str]] = []
        if subdirs:
            if len(subdirs) == 1 and any(p.is_dir() for p in subdirs[0].iterdir()):
                raise ValueError(
                    f"{val_dir} holds a single folder {subdirs[0].name!r} that holds further folders: one level "
                    f"too deep; expected {val_dir}/<wnid>/*.JPEG"
                )
            for folder in subdirs:
                pairs += [(p, folder.name) for p in _list_class_images(folder, IMAGE_EXTENSIONS)]
        else:
            files = list_images(val_dir)
            if self.val_labels_file is None:
                raise ValueError(
                    f"{val_dir} is a flat folder of {len(files)} images without class folders, so its labels are "
                    "unknown: pass val_labels_file (LOC_val_solution.csv, or ILSVRC2012_validation_ground_truth.txt "
                    "with val_synsets_file) or sort the images into val/<wnid>/ folders"
                )
            pairs = list(zip(files, self._read_val_labels(files), strict=True))

        paths, labels, skipped = [], [], 0
        for path, wnid in pairs:
            if wnid in index:
                paths.append(path.relative_to(self.root))
                labels.append(index[wnid])
            else:
                skipped += 1
        if not paths:
            raise ValueError(
                f"none of the {len(pairs)} validation images in {val_dir} belongs to one of the {self.num_classes} "
                f"train classes ({', '.join(self.class_names[:3])}, ...)"
            )
        if skipped:
            rank_zero_warn(
                f"skipped {skipped} validation images of {val_dir} whose class is not among the train folders"
            )
        return paths, labels

    def _read_val_labels(self, files: list[Path]) -> list[str]:
        labels_file = Path(self.val_labels_file).expanduser()
        if not labels_file.is_file():
            raise FileNotFoundError(f"val_labels_file not found: {labels_file}")
        with labels_file.open(newline="") as handle:
            first = handle.readline()
        if labels_file.suffix.lower() == ".csv" or "," in first:
            return self._read_csv_labels(labels_file, files)
        return self._read_ground_truth(labels_file, files)

    def _read_csv_labels(self, labels_file: Path, files: list[Path]) -> list[str]:
        by_stem: dict[str, str] = {}
        with labels_file.open(newline="") as handle:
            for row_number, row in enumerate(csv.reader(handle)):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2 or not row[1].split():
                    raise ValueError(f"{labels_file} line {row_number + 1}: expected 'filename,wnid ...', got {row}")
                name, wnid = Path(row[0].strip()).stem, row[1].split()[0]
                if row_number == 0 and not _WNID.match(wnid) and wnid not in self.class_names:
                    continue  # header, e.g. "ImageId,PredictionString"
                by_stem[name] = wnid
        missing = [p.name for p in files if p.stem not in by_stem]
        if missing:
            raise ValueError(
                f"{labels_file} has no label for {len(missing)} of the {len(files)} images in "
                f"{files[0].parent} (e.g. {', '.join(missing[:3])})"
            )
        return [by_stem[p.stem] for p in files]

    def _read_ground_truth(self, labels_file: Path, files: list[Path]) -> list[str]:
        if self.val_synsets_file is None:
            raise ValueError(
                f"{labels_file} looks like the devkit's ground truth (one ILSVRC2012_ID per line); its IDs follow the "
                "devkit's synset order, not the alphabetical wnid order of the train folders. Pass val_synsets_file "
                "(the devkit's data/meta.mat, or a text file with one wnid per line in ILSVRC2012_ID order), or use a "
                "'filename,wnid' CSV such as LOC_val_solution.csv"
            )
        synsets = self._read_synsets(Path(self.val_synsets_file).expanduser())
        lines = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
        if len(lines) != len(files):
            raise ValueError(
                f"{labels_file} has {len(lines)} labels but {files[0].parent} holds {len(files)} images; the "
                "ground-truth file labels the complete validation set in file-name order"
            )
        wnids = []
        for number, line in enumerate(lines, 1):
            if not line.isdigit() or not 1 <= int(line) <= len(synsets):
                raise ValueError(
                    f"{labels_file} line {number}: expected an ILSVRC2012_ID in 1..{len(synsets)}, got {line!r}"
                )
            wnids.append(synsets[int(line) - 1])
        return wnids

    def _read_synsets(self, path: Path) -> list[str]:
        if not path.is_file():
            raise FileNotFoundError(f"val_synsets_file not found: {path}")
        if path.suffix.lower() == ".mat":
            from scipy.io import loadmat

            table = loadmat(str(path), squeeze_me=True)["synsets"]
            rows = sorted(
                (int(ids), str(wnid))
                for ids, wnid, children in zip(
                    np.atleast_1d(table["ILSVRC2012_ID"]),
                    np.atleast_1d(table["WNID"]),
                    np.atleast_1d(table["num_children"]),
                    strict=True,
                )
                if int(children) == 0
            )
            if [i for i, _ in rows] != list(range(1, len(rows) + 1)):
                raise ValueError(f"{path}: leaf synsets do not have ILSVRC2012_IDs 1..{len(rows)}")
            return [wnid for _, wnid in rows]
        wnids = [line.split()[0].rstrip(",") for line in path.read_text().splitlines() if line.strip()]
        bad = [w for w in wnids if not _WNID.match(w)]
        if bad:
            raise ValueError(f"{path}: expected one wnid (n########) per line, got {bad[0]!r}")
        if len(wnids) >= 1000 and wnids == sorted(wnids):
            raise ValueError(
                f"{path} lists the wnids in alphabetical order (like LOC_synset_mapping.txt), but the devkit's "
                "ground truth uses ILSVRC2012_ID order, which is not alphabetical: every label would be wrong. "
                "Pass the devkit's data/meta.mat instead, or a 'filename,wnid' CSV as val_labels_file"
            )
        return wnids


class ClassFolderDataModule(ClassImageDataModule):
    """Any ``root/<class>/*.{jpg,jpeg,png,...}`` tree (e.g. an ImageNet subset); classes in sorted folder order.

    Validation comes from ``val_root`` (same class folder names) or, without it, from a deterministic stratified
    split of ``root``: in every class, the files are permuted with a generator seeded by ``split_seed`` and the first
    ``ceil(val_fraction * n)`` (at least one when the class has two or more images) go to validation.

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
        self.dataset_name = _safe_name(self.root.resolve().name)
        self.val_root = Path(val_root).expanduser() if val_root is not None else None
        if self.val_root is not None and not self.val_root.is_dir():
            raise FileNotFoundError(
                f"val_root not found: {self.val_root}; expected layout: {self.val_root}/<class>/*.jpg"
            )
        self.val_fraction = val_fraction
        self.split_seed = split_seed

    def _identity(self, split: str) -> str:
        exts = ",".join(sorted(self.extensions))
        if self.val_root is not None:
            folder = self.root if split == "train" else self.val_root
            return f"{folder.resolve()}|{exts}"
        return f"{self.root.resolve()}|{exts}|{split}|{self.val_fraction}|{self.split_seed}"

    def _build_datasets(self) -> dict[str, Dataset]:
        splits: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "val": ([], [])}
        for label, name in enumerate(self.class_names):
            files = _list_class_images(self.root / name, self.extensions)
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
                files = _list_class_images(self.val_root / name, self.extensions)
                splits["val"][0].extend(p.resolve() for p in files)
                splits["val"][1].extend([self.class_names.index(name)] * len(files))
        if not splits["val"][0]:
            raise ValueError(f"no validation images: every class of {self.root} has a single image; pass val_root")
        return {
            "train": ImageFileDataset(Path("/"), *splits["train"], self.resolution, self.hflip),
            "val": ImageFileDataset(Path("/"), *splits["val"], self.resolution, hflip=False),
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

    The images are preprocessed once (in memory, a few MB) and split at random into training and validation
    (``val_fraction`` of the images, permutation seeded by ``seed``).

    Args:
        resolution: Side length of the square images (the 8x8 digits are upsampled bilinearly).
        batch_size: Images per batch.
        num_workers: DataLoader worker processes (0 is fastest for in-memory data).
        val_fraction: Fraction of the images held out for validation (0 < f < 1).
        hflip: Random horizontal flips for training (off by default: digits are not mirror-symmetric).
        seed: Seed of the train/validation split.
    """

    def __init__(
        self,
        resolution: int = 32,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(resolution, batch_size, num_workers, hflip)
        self.save_hyperparameters()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        self.val_fraction = val_fraction
        self.seed = seed
        self.num_classes = 10
        self.class_names = [str(d) for d in range(10)]
        self.dataset_name = "digits"

    def _identity(self, split: str) -> str:
        return f"sklearn-digits|{split}|{self.val_fraction}|{self.seed}"

    def _build_datasets(self) -> dict[str, Dataset]:
        images, labels = load_digit_images(self.resolution)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed))
        n_val = max(1, round(self.val_fraction * len(labels)))
        val, train = order[:n_val], order[n_val:]
        return {
            "train": TensorImageDataset(images[train], labels[train], self.hflip),
            "val": TensorImageDataset(images[val], labels[val], hflip=False),
        }
