"""Class-labelled image datasets and the folder-layout checks shared by the class-conditional DataModules.

Folder layouts are checked up front, because a wrong folder depth silently gives every image label 0
(BigGAN-PyTorch issues #22 and #26): images lying directly in the class root, a single class folder, or one folder
that holds all class folders are errors whose message says what was found and what is expected.

Images are preprocessed as StudioGAN and BigGAN-PyTorch do for ImageNet: a square centre crop on the long side, an
antialiased (Lanczos) resize to the resolution, and (training only) a random horizontal flip. Items are
dicts ``{"image": float32 (3, R, R) in [-1, 1], "label": int64 scalar}`` (batches: ``(B, 3, R, R)``, ``(B,)``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.images import IMAGE_EXTENSIONS, center_crop_long_side, list_images, load_rgb, resize
from common.data.resumable import augmentation_generator

__all__ = [
    "ImageFileDataset",
    "TensorImageDataset",
    "class_item",
    "dataset_labels",
    "layout_hint",
    "list_class_images",
    "safe_name",
    "scan_class_folders",
    "short_hash",
    "square_image",
]


def short_hash(*parts: object) -> str:
    """First 8 hex digits of the SHA-1 of the parts joined by ``|``: a short, stable cache-file key."""
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:8]


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_`` (``'data'`` if empty): a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "data"


def layout_hint(root: Path, expected: str) -> str:
    """The line ``expected layout: ROOT/EXPECTED`` appended to data-layout error messages."""
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
        raise FileNotFoundError(f"folder not found: {folder} ({layout_hint(folder.parent, expected)})")
    entries = sorted(folder.iterdir())
    classes = sorted(p.name for p in entries if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if loose and not classes:
        raise ValueError(
            f"found {len(loose)} image files directly in {folder} and no class sub-folders; every image would get "
            f"label 0. Put each class in its own sub-folder ({layout_hint(folder.parent, expected)})"
        )
    if loose:
        raise ValueError(
            f"{folder} mixes {len(loose)} loose image files (e.g. {loose[0].name}) with {len(classes)} class "
            f"folders; move the loose images into class folders ({layout_hint(folder.parent, expected)})"
        )
    if not classes:
        raise ValueError(f"no class folders in {folder} ({layout_hint(folder.parent, expected)})")
    if len(classes) == 1:
        inner = folder / classes[0]
        nested = sorted(p.name for p in inner.iterdir() if p.is_dir())
        if nested:
            raise ValueError(
                f"{folder} holds a single folder {classes[0]!r} that itself holds {len(nested)} folders "
                f"({', '.join(nested[:3])}{', ...' if len(nested) > 3 else ''}): one directory level too deep, "
                f"every image would get label 0. Point the data root one level lower "
                f"({layout_hint(folder.parent, expected)})"
            )
    if len(classes) < min_classes:
        raise ValueError(
            f"found {len(classes)} class folder(s) in {folder} ({', '.join(classes[:5])}), at least {min_classes} "
            f"expected: a class-conditional model needs one folder per class ({layout_hint(folder.parent, expected)})"
        )
    return classes


def list_class_images(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """The image files of one class folder with one of ``extensions`` (lower-case, with the dot).

    Raises:
        ValueError: the folder holds no images, or none with those extensions.
    """
    fix = (
        f"every sub-folder of {folder.parent} is a class, and a class without images cannot be trained or "
        "evaluated: put its images in it or remove the folder (the classes are renumbered)"
    )
    try:
        files = list_images(folder)
    except ValueError as err:
        raise ValueError(f"class folder {folder} holds no images ({err}); {fix}") from err
    files = [p for p in files if p.suffix.lower() in extensions]
    if not files:
        raise ValueError(f"class folder {folder} holds no images with extensions {sorted(extensions)}; {fix}")
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

    def path(self, index: int) -> Path:
        """The image file of item ``index``."""
        return self.root / self.paths[index].decode()

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return class_item(square_image(self.path(index), self.resolution), self.labels[index], self.hflip, index)


def square_image(path: str | Path, resolution: int) -> np.ndarray:
    """The deterministic part of the class-conditional preprocessing: the image file decoded as RGB, its centre
    square (side: the short side) resized to ``resolution`` with PIL's Lanczos filter; ``(R, R, 3)`` uint8.

    What :func:`common.data.prepare` stores once, so that prepared data gives the same pixels."""
    img = resize(center_crop_long_side(load_rgb(path)), resolution, antialias=True)
    return np.asarray(img, dtype=np.uint8)


def class_item(image: np.ndarray, label: int, hflip: bool, index: int) -> dict[str, torch.Tensor]:
    """A training / reference item from a square ``(R, R, 3)`` uint8 image: ``{"image": float32 (3, R, R) in
    [-1, 1], "label": int64}``, flipped horizontally with probability 1/2 when ``hflip`` (drawn from
    :func:`common.data.resumable.augmentation_generator` of ``index``). Shared by the image-file and prepared
    datasets, so both draw their flips the same way."""
    array = np.asarray(image, dtype=np.uint8)
    if hflip and torch.rand((), generator=augmentation_generator(index)) < 0.5:
        array = array[:, ::-1]  # flipped before the conversion: one copy, a contiguous (3, R, R) result
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float() / 127.5 - 1.0
    return {"image": tensor, "label": torch.tensor(label, dtype=torch.long)}


class TensorImageDataset(Dataset):
    """In-memory images (N, 3, R, R) in [-1, 1] and labels (N,), with an optional random horizontal flip.

    With ``hflip`` each item is flipped with probability 1/2, drawn from
    :func:`common.data.resumable.augmentation_generator` (seeded per sample under the resumable training loader).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, hflip: bool) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if labels.dim() != 1 or (labels.numel() and int(labels.min()) < 0):
            raise ValueError(f"labels must be a 1-D tensor of class indices >= 0, got {tuple(labels.shape)}")
        self.images, self.labels, self.hflip = images, labels.long(), hflip

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.images[index]
        if self.hflip and torch.rand((), generator=augmentation_generator(index)) < 0.5:
            image = image.flip(-1)
        return {"image": image, "label": self.labels[index]}


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """The int64 label of every item of an :class:`ImageFileDataset` or :class:`TensorImageDataset`."""
    labels = dataset.labels
    return labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels, dtype=np.int64)
