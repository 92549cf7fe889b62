"""Procedurally generated building facades: "Paris StreetView in miniature", with long-range structure by design.

The inpainting demo's data (``configs/an_inpaint/demo.yaml``). Nothing is downloaded and nothing is written: every
facade is drawn from its own seed, on the fly. A facade is a wall (a colour, low-frequency stains, fine grain,
optional brick courses) with windows on a grid of floors and columns (period and phase drawn per facade): glass
with a sky reflection, a light frame, optional mullions, sills and shutters, a cornice band per floor, balconies
on some floors (a railing with bars, the same on every window of that floor), and on some facades a ground floor
with doors. Colours vary per facade, brightness slightly per window. What belongs in a centre hole is therefore
determined by windows far from it (the grid continues), so diffusion fills (Telea, Navier-Stokes, harmonic) smear
the wall over the hidden windows while a model that uses the distant context can continue the grid.

Splits come from disjoint seed ranges (:data:`SPLIT_SEEDS`): training draws a fresh seed per sample from its range
(through the sample's resumable generator, so a resumed run sees the same facades), validation and test facades
are the first ``num_val`` / ``num_test`` seeds of their own ranges, never used in training.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.inpainting import InpaintingDataModule, PredictSplit
from common.data.inpainting_datasets import _draw_mask
from common.data.mask_mixtures import MixedMasks
from common.data.masks import CenterSquareMasks, FreeFormMasks, MaskGenerator, RandomRectangleMasks
from common.data.resumable import augmentation_generator

__all__ = ["SPLIT_SEEDS", "FacadeDataset", "FacadeInpaintingDataModule", "facade_seed", "render_facade"]

#: Half-open seed range ``[start, stop)`` of each split: they never overlap.
SPLIT_SEEDS: dict[str, tuple[int, int]] = {
    "train": (0, 1_000_000_000),
    "val": (1_000_000_000, 1_100_000_000),
    "test": (2_000_000_000, 2_100_000_000),
}
_SUPERSAMPLE = 2  # rendered at twice the size, then box-averaged: anti-aliased edges


def _rgb(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    hue = rng.uniform(0.0, 1.0)
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value)))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Bilinear upsampling of a ``cells x cells`` grid of standard normals to ``size x size``."""
    grid = rng.standard_normal((cells + 1, cells + 1))
    t = np.linspace(0.0, cells, size, endpoint=False)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _box(u: np.ndarray, v: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return (u >= x0) & (u < x1) & (v >= y0) & (v < y1)


def render_facade(seed: int, size: int = 64) -> np.ndarray:
    """The facade of ``seed`` as a ``(size, size, 3)`` float32 array in [0, 1] (deterministic per seed and size).

    Raises:
        ValueError: ``size`` below 16 or a negative seed.
    """
    if size < 16:
        raise ValueError(f"facades need size >= 16, got {size}")
    if seed < 0:
        raise ValueError(f"facade seeds are >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    n = size * _SUPERSAMPLE
    scale = n / 64.0  # periods and sizes are drawn in units of a 64-px facade
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) + 0.5
    # Wall: colour, stains, grain, optional brick courses.
    wall = _rgb(rng, (0.05, 0.35), (0.45, 0.9))
    image = np.broadcast_to(wall, (n, n, 3)).copy()
    image *= (1 + 0.06 * _smooth_noise(rng, n, 4))[..., None]
    if rng.random() < 0.35:
        course = rng.uniform(2.0, 3.5) * scale
        image *= (1 - 0.07 * (np.mod(y, course) < 0.5 * scale))[..., None]
    # The grid: floor height, column period, phase; window box inside each cell.
    py, px = rng.uniform(12, 20) * scale, rng.uniform(9, 17) * scale
    oy, ox = rng.uniform(0, py), rng.uniform(0, px)
    v, u = np.mod(y - oy, py), np.mod(x - ox, px)
    row, col = np.floor((y - oy) / py).astype(int) + 1, np.floor((x - ox) / px).astype(int) + 1
    ww, wh = px * rng.uniform(0.38, 0.62), py * rng.uniform(0.42, 0.62)
    wx0, wy0 = (px - ww) / 2, py * rng.uniform(0.18, 0.3)
    frame = max(1.0, 0.9 * scale)
    frame_rgb = np.clip(wall + rng.choice([-0.35, 0.3]) + rng.uniform(-0.05, 0.05, 3), 0, 1)
    rows, cols = int(n / py) + 3, int(n / px) + 3
    # Cornice bands between floors.
    if rng.random() < 0.6:
        band = _box(u, v, -1, py - 1.2 * scale, px + 1, py)
        image[band] = np.clip(wall * rng.uniform(0.75, 1.2), 0, 1)
    # Ground floor (some facades): the lowest full row gets doors at a column period.
    ground = rows + 10
    door_every, door_phase = int(rng.integers(2, 4)), int(rng.integers(0, 4))
    if rng.random() < 0.45:
        ground = int(row[-1, 0]) - (1 if (n - oy) % py < 0.6 * py else 0)
    is_ground = row == ground
    is_door = is_ground & (np.mod(col + door_phase, door_every) == 0)
    window = _box(u, v, wx0, wy0, wx0 + ww, wy0 + wh) & ~is_door
    door = is_door & _box(u, v, wx0 - 0.1 * ww, wy0, wx0 + 1.1 * ww, py + 1)
    surround = (_box(u, v, wx0 - frame, wy0 - frame, wx0 + ww + frame, wy0 + wh + frame) & ~is_door) | (
        is_door & _box(u, v, wx0 - 0.1 * ww - frame, wy0 - frame, wx0 + 1.1 * ww + frame, py + 1)
    )
    # Shutters (some facades): coloured panels either side of each window.
    if rng.random() < 0.35:
        shutter_rgb = _rgb(rng, (0.3, 0.7), (0.3, 0.7))
        shutter = (_box(u, v, wx0 - frame - 0.38 * ww, wy0, wx0 - frame, wy0 + wh) |
                   _box(u, v, wx0 + ww + frame, wy0, wx0 + ww + frame + 0.38 * ww, wy0 + wh)) & ~is_ground  # fmt: skip
        image[shutter] = shutter_rgb
    image[surround] = frame_rgb
    # Glass: dark, a vertical sky reflection, brightness per window.
    glass = _rgb(rng, (0.1, 0.4), (0.12, 0.32))
    jitter = 1 + 0.25 * rng.standard_normal((rows + 12, cols + 2)).clip(-2, 2)
    shade = jitter[np.clip(row, 0, rows + 11), np.clip(col, 0, cols + 1)]
    reflection = 1 + 0.6 * np.clip(1 - (v - wy0) / max(wh, 1.0), 0, 1)
    image[window] = np.clip(glass[None] * (shade * reflection)[window][:, None], 0, 1)
    image[door] = np.clip(_rgb(rng, (0.2, 0.6), (0.15, 0.4)) * shade[door][:, None], 0, 1)
    if rng.random() < 0.5:  # mullions: a cross in each window
        bar = max(0.8, 0.6 * scale)
        cross = window & (
            (np.abs(u - (wx0 + ww / 2)) < bar / 2) | (np.abs(v - (wy0 + wh * rng.uniform(0.3, 0.45))) < bar / 2)
        )
        image[cross] = frame_rgb
    if rng.random() < 0.7:  # sills
        sill = _box(u, v, wx0 - 0.12 * ww, wy0 + wh + frame, wx0 + 1.12 * ww, wy0 + wh + frame + 1.3 * scale)
        image[sill & ~is_door] = np.clip(frame_rgb * 1.05, 0, 1)
    # Balconies on some floors: a railing over the lower part of every window of that floor.
    balcony_rows = rng.random(rows + 12) < rng.uniform(0.0, 0.6)
    on_balcony = balcony_rows[np.clip(row, 0, rows + 11)] & ~is_ground
    top = wy0 + wh * 0.62
    railing = on_balcony & _box(u, v, wx0 - 0.2 * ww, top, wx0 + 1.2 * ww, wy0 + wh + frame)
    bars = railing & ((np.mod(u - wx0, 2.2 * scale) < 0.7 * scale) | (v - top < 0.9 * scale))
    image[bars] = np.clip(_rgb(rng, (0.0, 0.3), (0.05, 0.25)), 0, 1)
    # Light from one side, grain; then the box average down to ``size``.
    image *= (1 + rng.uniform(-0.12, 0.12) * (x / n - 0.5))[..., None]
    image += 0.025 * rng.standard_normal((n, n, 3))
    image = image.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def facade_seed(split: str, index: int) -> int:
    """The seed of evaluation facade ``index`` of ``split`` (``"val"`` or ``"test"``).

    Raises:
        ValueError: An unknown split or an index outside the split's seed range.
    """
    if split not in ("val", "test"):
        raise ValueError(f"evaluation facades are 'val' or 'test', got {split!r}")
    start, stop = SPLIT_SEEDS[split]
    if not 0 <= index < stop - start:
        raise ValueError(f"{split} facade index {index} outside [0, {stop - start})")
    return start + index


class FacadeDataset(Dataset):
    """Facades with masks, as inpainting samples ``{"image": (3, R, R) in [-1, 1], "mask": (1, R, R), "name"}``.

    Args:
        split: ``"train"`` (each sample a fresh training seed drawn with the sample's resumable generator, which
            also draws its mask) or ``"val"`` / ``"test"`` (sample ``i`` is facade :func:`facade_seed` of ``i``,
            its mask drawn with seed ``mask_seed + i``).
        length: Samples (per epoch for training).
        resolution: Facade size ``R``.
        masks: Mask generator.
        mask_seed: Base seed of the evaluation masks.
    """

    def __init__(self, split: str, length: int, resolution: int, masks: MaskGenerator, mask_seed: int = 0) -> None:
        if split not in SPLIT_SEEDS:
            raise ValueError(f"split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
        if length < 1:
            raise ValueError(f"{split} needs at least one facade, got length {length}")
        if split != "train":
            facade_seed(split, length - 1)  # the split's seed range holds them all
        self.split, self.length, self.resolution, self.masks, self.mask_seed = (
            split, length, resolution, masks, mask_seed,
        )  # fmt: skip

    def __len__(self) -> int:
        return self.length

    def seed(self, index: int, generator: torch.Generator | None = None) -> int:
        """The facade seed of sample ``index`` (training: drawn with ``generator``)."""
        if self.split == "train":
            start, stop = SPLIT_SEEDS["train"]
            return start + int(torch.randint(stop - start, (), generator=generator))
        return facade_seed(self.split, index)

    def __getitem__(self, index: int) -> dict:
        if self.split == "train":
            generator = augmentation_generator(index)
        else:
            generator = torch.Generator().manual_seed(self.mask_seed + int(index))
        seed = self.seed(int(index), generator)
        image = torch.from_numpy(render_facade(seed, self.resolution)).permute(2, 0, 1).contiguous() * 2 - 1
        mask = _draw_mask(self.masks, self.resolution, generator, index)
        return {"image": image, "mask": mask, "name": f"facade{seed:010d}"}


class FacadeInpaintingDataModule(InpaintingDataModule):
    """Procedurally generated facades (module docstring): the inpainting demo's data, generated on the fly.

    Args:
        resolution: Facade size (divisible by 8).
        batch_size: Training batch size.
        num_workers: DataLoader workers (0 is fine: a 64-px facade renders in about 4 ms on one core).
        train_samples_per_epoch: Training facades per epoch (fresh seeds each time).
        num_val: Validation facades (the first seeds of the validation range).
        num_test: Test facades (the first seeds of the test range; never trained on or selected on).
        train_masks: Training mask generator (default: DeepFill's random rectangles or free-form strokes, 7:3).
        val_masks: Validation mask generator (default ``CenterSquareMasks(0.5)``, the Paris protocol's hole).
        test_masks: Test mask generator (default ``CenterSquareMasks(0.5)``).
        val_batch_size: Evaluation batch size (default: ``batch_size``).
        predict_root: Folder of images to inpaint with ``predict``.
        predict_mask_root: Folder of their masks (same file stems).
        predict_split: What ``predict`` inpaints: ``"folder"``, ``"val"`` or ``"test"``.
    """

    def __init__(
        self,
        resolution: int = 64,
        batch_size: int = 16,
        num_workers: int = 0,
        train_samples_per_epoch: int = 20000,
        num_val: int = 64,
        num_test: int = 200,
        train_masks: MaskGenerator | None = None,
        val_masks: MaskGenerator | None = None,
        test_masks: MaskGenerator | None = None,
        val_batch_size: int | None = None,
        predict_root: str | None = None,
        predict_mask_root: str | None = None,
        predict_split: PredictSplit = "folder",
    ) -> None:
        super().__init__(
            resolution, batch_size, num_workers, predict_root, predict_mask_root, val_batch_size, predict_split,
        )  # fmt: skip
        if resolution < 16:
            raise ValueError(f"facades need resolution >= 16, got {resolution}")
        self.train_samples_per_epoch = train_samples_per_epoch
        self.num_val = num_val
        self.num_test = num_test
        self.train_masks = train_masks or MixedMasks([RandomRectangleMasks(), FreeFormMasks()], [0.7, 0.3])
        self.val_masks = val_masks if val_masks is not None else CenterSquareMasks(0.5)
        self.test_masks = test_masks if test_masks is not None else CenterSquareMasks(0.5)

    def setup_splits(self, stage: str | None) -> None:
        """Fresh training facades for ``fit``; the fixed validation and test facades."""
        if stage in (None, "fit"):
            self.train_set = FacadeDataset("train", self.train_samples_per_epoch, self.resolution, self.train_masks)
        self.val_set = FacadeDataset("val", self.num_val, self.resolution, self.val_masks)
        self.test_set = FacadeDataset("test", self.num_test, self.resolution, self.test_masks)
