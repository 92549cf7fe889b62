"""Which images an evaluation (or ``predict``) generates: per-class noise streams and class-balanced counts.

Every class ``c`` has its own infinite noise stream for a given seed: image ``j`` of class ``c`` is
``G(z_c[j], c)``, where ``z_c`` is drawn in chunks of :data:`NOISE_CHUNK` rows, each from a ``torch.Generator``
seeded by ``numpy.random.SeedSequence([seed, c, chunk])``. So image ``(c, j)`` is the same however many images are
drawn, in whatever batches, on however many processes, and whether it is generated for in-training validation,
for ``predict`` (written as ``<class:04d>/<j:06d>.png``) or read back by ``evaluate``.

An evaluation of ``N`` images is class-balanced: class ``c`` contributes the first
``N // K + (c < N % K)`` images of its stream (:func:`class_counts`), and the canonical order of the set is
``position = j * K + c`` (:func:`positions`), i.e. labels cycling through the classes. The Inception Score splits
and the KID / precision-recall subsets follow that order, so they do not depend on batching or sharding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "NOISE_CHUNK",
    "ClassSampleDataset",
    "class_counts",
    "class_folders",
    "class_noise",
    "positions",
    "read_image",
]

#: Rows of noise drawn per seeded generator (fixed, so a stream's values never depend on how much is drawn).
NOISE_CHUNK = 64


def _chunk_seed(seed: int, cls: int, chunk: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(cls), int(chunk)]).generate_state(1, dtype=np.uint64)[0])


def class_noise(seed: int, cls: int, start: int, stop: int, z_dim: int) -> Tensor:
    """Rows ``start:stop`` of class ``cls``'s noise stream for ``seed``: float32 ``(stop - start, z_dim)``, CPU."""
    if not 0 <= start <= stop:
        raise ValueError(f"need 0 <= start <= stop, got {start}, {stop}")
    rows = []
    for chunk in range(start // NOISE_CHUNK, (stop + NOISE_CHUNK - 1) // NOISE_CHUNK):
        gen = torch.Generator().manual_seed(_chunk_seed(seed, cls, chunk))
        block = torch.randn(NOISE_CHUNK, z_dim, generator=gen)
        lo = max(start - chunk * NOISE_CHUNK, 0)
        hi = min(stop - chunk * NOISE_CHUNK, NOISE_CHUNK)
        rows.append(block[lo:hi])
    return torch.cat(rows) if rows else torch.zeros(0, z_dim)


def class_counts(num_samples: int, num_classes: int) -> list[int]:
    """Images per class in a class-balanced set of ``num_samples``: ``N // K + (c < N % K)``."""
    if num_samples < 0 or num_classes < 1:
        raise ValueError(f"need num_samples >= 0 and num_classes >= 1, got {num_samples}, {num_classes}")
    base, extra = divmod(num_samples, num_classes)
    return [base + (c < extra) for c in range(num_classes)]


def positions(cls: int, start: int, stop: int, num_classes: int) -> Tensor:
    """Canonical positions ``j * K + c`` of images ``start:stop`` of class ``cls``: int64 ``(stop - start,)``."""
    return torch.arange(start, stop, dtype=torch.long) * num_classes + cls


class ClassSampleDataset(Dataset):
    """Items ``(z (z_dim,), class (int64), index (int64))``: images ``0 .. num_per_class - 1`` of each class's stream.

    Item order is class-major. The noise is drawn at construction (:func:`class_noise`), so the same arguments
    always give the same items, however they are batched or split across DDP ranks.

    Args:
        classes: the classes to generate.
        num_per_class: items per class.
        z_dim: noise dimension.
        seed: noise seed.
        num_classes: when given, classes are checked to lie in ``[0, num_classes)``.
    """

    def __init__(
        self, classes: Sequence[int], num_per_class: int, z_dim: int, seed: int = 0, num_classes: int | None = None
    ) -> None:
        classes = [int(c) for c in classes]
        if not classes or num_per_class < 1:
            raise ValueError(f"need at least one class and num_per_class >= 1, got {classes}, {num_per_class}")
        if num_classes is not None and any(not 0 <= c < num_classes for c in classes):
            raise ValueError(f"classes must lie in [0, {num_classes}), got {classes}")
        self.labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(num_per_class)
        self.indices = torch.arange(num_per_class).repeat(len(classes))
        self.z = torch.cat([class_noise(seed, c, 0, num_per_class, z_dim) for c in classes])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.z[i], self.labels[i], self.indices[i]


def class_folders(samples: Path, class_names: Sequence[str], num_classes: int) -> dict[int, Path]:
    """The class sub-folders of a samples folder: ``{class index: folder}``.

    A folder is named by its class index (``0003``, as ``predict`` writes it) or by one of ``class_names``.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: a sub-folder that names no class, or no sub-folders at all.
    """
    if not samples.is_dir():
        raise FileNotFoundError(f"samples folder not found: {samples}")
    folders: dict[int, Path] = {}
    for sub in sorted(p for p in samples.iterdir() if p.is_dir()):
        if sub.name in class_names:
            folders[list(class_names).index(sub.name)] = sub
        elif sub.name.isdigit() and int(sub.name) < num_classes:
            folders[int(sub.name)] = sub
        else:
            raise ValueError(
                f"{sub} is neither a class index below {num_classes} nor a class name of the reference "
                f"({', '.join(list(class_names)[:3])}, ...)"
            )
    if not folders:
        raise ValueError(f"no class sub-folders in {samples} (expected <class>/<index>.png)")
    return folders


def read_image(path: Path, resolution: int) -> Tensor:
    """An image file as uint8 ``(3, R, R)``; its size must be ``resolution`` (the reference's)."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if array.shape[:2] != (resolution, resolution):
        raise ValueError(f"{path} is {array.shape[1]}x{array.shape[0]}, the reference is {resolution}x{resolution}")
    return torch.from_numpy(array.copy()).permute(2, 0, 1)
