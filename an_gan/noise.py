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

An evaluation walks the images class by class (class ``c``'s images ``0 .. n_c - 1``, then the next class) and
cuts that sequence into full batches (:func:`pack_batches`), so a batch may span several classes: 50,000 images
of 1,000 classes at batch 100 are 500 batches of 100, not 1,000 batches of 50. :func:`batch_inputs` draws a
batch's ``(z, y)`` from the class streams, so each image is the same whatever batch it falls in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset

from common.metrics.generation.features import unit_to_uint8
from common.visualization import to_unit

__all__ = [
    "NOISE_CHUNK",
    "ClassSampleDataset",
    "Segment",
    "batch_inputs",
    "class_counts",
    "class_folders",
    "class_noise",
    "generate_batch",
    "pack_batches",
    "positions",
    "read_batch",
    "read_image",
]

#: ``(class, start, stop)``: images ``start:stop`` of one class's stream, a contiguous run of rows of a batch.
Segment = tuple[int, int, int]

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


def pack_batches(counts: Sequence[tuple[int, int]], batch_size: int) -> list[tuple[Segment, ...]]:
    """Cut the class-major sequence of images into batches of ``batch_size`` (the last one may be smaller).

    Args:
        counts: ``(class, n)`` pairs, in the order to walk them: class ``c`` contributes its images ``0 .. n - 1``.
        batch_size: images per batch (>= 1).

    Returns:
        One tuple of :data:`Segment` per batch; the segments of a batch list its rows in order. Example:
        ``pack_batches([(0, 3), (1, 2)], 4) == [((0, 0, 3), (1, 0, 1)), ((1, 1, 2),)]``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches: list[tuple[Segment, ...]] = []
    current: list[Segment] = []
    room = batch_size
    for cls, n in counts:
        if n < 0:
            raise ValueError(f"class {cls}: image count must be >= 0, got {n}")
        start = 0
        while start < n:
            stop = min(n, start + room)
            current.append((int(cls), start, stop))
            room -= stop - start
            start = stop
            if room == 0:
                batches.append(tuple(current))
                current, room = [], batch_size
    if current:
        batches.append(tuple(current))
    return batches


def batch_inputs(segments: Sequence[Segment], seed: int, z_dim: int) -> tuple[Tensor, Tensor]:
    """The generator inputs of a batch: noise ``(B, z_dim)`` float32 (:func:`class_noise`) and labels ``(B,)``
    int64, both on the CPU, ``B`` the total length of the segments."""
    z = [class_noise(seed, cls, start, stop, z_dim) for cls, start, stop in segments]
    y = [torch.full((stop - start,), cls, dtype=torch.long) for cls, start, stop in segments]
    if not z:
        return torch.zeros(0, z_dim), torch.zeros(0, dtype=torch.long)
    return torch.cat(z), torch.cat(y)


def generate_batch(generator: nn.Module, seed: int, device: torch.device, segments: Sequence[Segment]) -> Tensor:
    """The images of a batch, as ``predict`` writes them: uint8 ``(B, 3, R, R)`` on ``device``.

    ``generator`` maps ``(z (B, z_dim), y (B,))`` to images in [-1, 1] (the caller sets eval mode and no_grad).
    On CUDA the inputs go through pinned memory, so their copies do not block the host.
    """
    z, y = batch_inputs(segments, seed, generator.z_dim)
    if device.type == "cuda":
        z, y = z.pin_memory(), y.pin_memory()
    z, y = z.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return unit_to_uint8(to_unit(generator(z, y)))  # to_unit's output lies in [0, 1]: no range check needed


def read_batch(
    files: dict[int, list[Path]], resolution: int, device: torch.device, segments: Sequence[Segment]
) -> Tensor:
    """The images of a batch read from ``files[class][index]`` (:func:`read_image`): uint8 ``(B, 3, R, R)``."""
    images = torch.stack([read_image(files[c][j], resolution) for c, a, b in segments for j in range(a, b)])
    if device.type == "cuda":
        images = images.pin_memory()
    return images.to(device, non_blocking=True)


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
