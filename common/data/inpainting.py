"""Inpainting DataModules: Paris StreetView and any image folder (the bundled demo is in ``inpainting_demo``).

Batches are dicts ``{"image": (B, 3, H, W) in [-1, 1], "mask": (B, 1, H, W) with 1 = missing, "name": list[str]}``.

Protocol: the test split is never used for model selection. ``validate`` and in-training validation (best
checkpoint, the plateau-based phase switch) use a **validation split held out of the training images**; ``test``
uses the test split. Evaluation images are square, at the evaluation resolution, with fixed (seeded) holes; under
DDP every evaluation image is seen by exactly one process (:func:`common.data.distributed.eval_sampler`).

* :class:`ParisStreetViewDataModule` (paper Section 5, Pathak et al. 2016's Paris StreetView): training on
  ``root/paris_train_original/*.JPG`` (14,900 images of 936x537) minus the validation images, with random 256x256
  crops (or the centre crop, or the centre square resized) and horizontal flips; validation on ``val_images`` (100)
  images of ``paris_train_original`` chosen once and for all (see :func:`paris_validation_split`), their centre
  227x227 pixels resized to 256 like the test images (``val_scale``), centre 128x128 hole; test on
  ``root/paris_eval_gt/*_im.png`` (100 images of 227x227; ``root/paris_eval/paris_eval_gt`` is accepted too) resized
  to 256, centre 128x128 hole by default (the protocol of the authors' test script) or any mask generator, e.g.
  binned free-form masks. The dataset is shared by its authors on request only, so the module cannot download it.
* :class:`ImageFolderInpaintingDataModule`: any folder of training images; validation from ``val_root`` or held out
  of the training folder (``val_split``); test from ``test_root``.

Every DataModule also predicts: ``predict_split="folder"`` inpaints ``predict_root`` with the same-named masks of
``predict_mask_root`` at any size (batch size 1; the model pads to a multiple of 8); ``"val"`` / ``"test"`` inpaint
the evaluation split as the metrics see it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from common.data.distributed import eval_sampler
from common.data.images import list_images
from common.data.inpainting_datasets import EVAL_RESIZE, EvalResize, InpaintingDataset, PredictFolderDataset
from common.data.mask_files import FolderMasks
from common.data.masks import CenterSquareMasks, MaskGenerator, RandomRectangleMasks
from common.data.resumable import resumable_train_loader

__all__ = [
    "ImageFolderInpaintingDataModule",
    "InpaintingDataModule",
    "ParisStreetViewDataModule",
    "find_paris_folders",
    "held_out_split",
    "paris_validation_split",
]

TrainTransform = Literal["random_crop", "center_crop", "resize"]
PredictSplit = Literal["folder", "val", "test"]
ValScale = Literal["test", "square"]
#: ``val_scale="test"``: the share of a training image's short side its validation crop takes, that of the 227x227
#: test images in the 537-pixel-high originals (so 227 px of a 936x537 image; inferred: they are 227 px crops).
PARIS_TEST_CROP = 227 / 537

PARIS_LAYOUT = """expected layout:
  <root>/paris_train_original/*.JPG     (14,900 training images, 936x537)
  <root>/paris_eval_gt/*_im.png         (100 evaluation images, 227x227)
     or <root>/paris_eval/paris_eval_gt/*_im.png"""

PARIS_AVAILABILITY = (
    "Paris StreetView (Pathak et al., 'Context Encoders', CVPR 2016) cannot be downloaded: its authors share it on "
    "request only (see https://github.com/pathak22/context-encoder, section 'Paris StreetView Dataset')."
)


def held_out_split(paths: list[Path], count: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """``(train, val)``: ``count`` files held out of ``paths`` for validation, the same ones on every machine.

    The files are sorted by name and permuted with ``numpy.random.default_rng(seed).permutation``; the first
    ``count`` of the permutation are the validation files (returned sorted), the rest the training files.

    Raises:
        ValueError: ``count`` is not in ``[1, len(paths) - 1]``.
    """
    paths = sorted(paths, key=lambda p: p.name)
    if not 1 <= count < len(paths):
        raise ValueError(f"cannot hold out {count} validation image(s) of {len(paths)}: need 1 <= count < {len(paths)}")
    order = np.random.default_rng(seed).permutation(len(paths))
    val = sorted(paths[i] for i in order[:count])
    held = set(val)
    return [p for p in paths if p not in held], val


def paris_validation_split(train_dir: str | Path, count: int = 100) -> tuple[list[Path], list[Path]]:
    """The Paris StreetView validation split: :func:`held_out_split` of ``paris_train_original``, seed 0."""
    return held_out_split(list_images(train_dir), count, seed=0)


def find_paris_folders(root: str | Path) -> tuple[Path, Path]:
    """Locate ``paris_train_original`` and the evaluation folder under ``root``.

    Raises:
        FileNotFoundError: With the expected layout and how to obtain the dataset when a folder is missing.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"Paris StreetView root {str(root)!r} does not exist. {PARIS_AVAILABILITY}\n{PARIS_LAYOUT}"
        )
    train = root / "paris_train_original"
    candidates = [root / "paris_eval_gt", root / "paris_eval" / "paris_eval_gt"]
    evaluation = next((c for c in candidates if c.is_dir()), None)
    missing = [str(p) for p, ok in ((train, train.is_dir()), (candidates[0], evaluation is not None)) if not ok]
    if missing:
        raise FileNotFoundError(
            f"Paris StreetView root {str(root)!r} has the wrong layout: missing {', '.join(missing)}. "
            f"{PARIS_AVAILABILITY}\n{PARIS_LAYOUT}"
        )
    return train, evaluation


class InpaintingDataModule(pl.LightningDataModule, ABC):
    """Shared loaders, evaluation sharding and prediction of the inpainting DataModules.

    Subclasses fill ``train_set``, ``val_set`` and ``test_set`` in :meth:`setup_splits`. Batches are dicts
    ``{"image": (B, 3, R, R) in [-1, 1], "mask": (B, 1, R, R) with 1 = missing, "name": [str]}``.

    Args:
        resolution: Training crop and evaluation size ``R`` (a multiple of 8).
        batch_size: Training batch size.
        num_workers: DataLoader workers.
        predict_root: Folder of images to inpaint with ``predict`` (``predict_split="folder"``).
        predict_mask_root: Folder of their masks (same file stems).
        val_batch_size: Evaluation batch size (default: ``batch_size``).
        predict_split: What ``predict`` inpaints: ``"folder"``, ``"val"`` or ``"test"``.
        eval_resize: Filter resizing evaluation images to ``resolution`` (``"bilinear"`` or ``"lanczos"``).
    """

    def __init__(
        self,
        resolution: int,
        batch_size: int,
        num_workers: int,
        predict_root: str | None = None,
        predict_mask_root: str | None = None,
        val_batch_size: int | None = None,
        predict_split: PredictSplit = "folder",
        eval_resize: EvalResize = "bilinear",
    ) -> None:
        super().__init__()
        if resolution % 8:
            raise ValueError(f"resolution must be divisible by 8, got {resolution}")
        if predict_split not in ("folder", "val", "test"):
            raise ValueError(f"predict_split must be 'folder', 'val' or 'test', got {predict_split!r}")
        if eval_resize not in EVAL_RESIZE:
            raise ValueError(f"eval_resize must be one of {EVAL_RESIZE}, got {eval_resize!r}")
        self.resolution = resolution
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.predict_root = predict_root
        self.predict_mask_root = predict_mask_root
        self.predict_split = predict_split
        self.eval_resize = eval_resize
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.predict_set: Dataset | None = None

    @abstractmethod
    def setup_splits(self, stage: str | None) -> None:
        """Fill ``train_set`` (for ``fit``), ``val_set`` and ``test_set`` (what ``stage`` needs)."""

    def setup(self, stage: str | None = None) -> None:
        """Build the splits of ``stage`` (:meth:`setup_splits`); ``predict`` uses the folder pair or the val / test
        split.

        Raises:
            ValueError: ``predict_split='folder'`` without ``predict_root`` and ``predict_mask_root``.
        """
        if stage == "predict":
            if self.predict_split == "folder":
                if self.predict_root is None or self.predict_mask_root is None:
                    raise ValueError(
                        "predict needs --data.predict_root (images) and --data.predict_mask_root (masks), or "
                        "--data.predict_split val|test"
                    )
                self.predict_set = PredictFolderDataset(self.predict_root, self.predict_mask_root)
            else:
                self.setup_splits(self.predict_split)
                self.predict_set = self.val_set if self.predict_split == "val" else self.test_set
            return
        self.setup_splits(stage)

    def _loader(self, dataset: Dataset | None, batch_size: int) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=eval_sampler(dataset),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches whose order, crops, flips and masks survive a resume exactly
        (:func:`common.data.resumable.resumable_train_loader`); under DDP each rank takes its share of every epoch."""
        if self.train_set is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return resumable_train_loader(
            self,
            self.train_set,
            self.batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        """Validation batches ``{'image': (B, 3, R, R) in [-1, 1], 'mask': (B, 1, R, R) in {0, 1}, 'name': [str]}`` with
        fixed masks, in order.
        """
        return self._loader(self.val_set, self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        """Test batches (same format as :meth:`val_dataloader`); raises ``ValueError`` when no test split is
        configured.
        """
        if self.test_set is None:
            raise ValueError(f"{type(self).__name__} has no test split configured (see its test_* arguments)")
        return self._loader(self.test_set, self.val_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """Prediction batches: one image per batch from the folders (any size), else the val / test split's batches."""
        return self._loader(self.predict_set, 1 if self.predict_split == "folder" else self.val_batch_size)

    def _eval_set(
        self, paths: list[Path], masks: MaskGenerator, folder: FolderMasks | None = None, crop: float | None = None
    ) -> Dataset:
        return InpaintingDataset(
            paths, self.resolution, "resize", masks=masks, mask_folder=folder, fixed_masks=True,
            resize=self.eval_resize, crop=crop,
        )  # fmt: skip


class ParisStreetViewDataModule(InpaintingDataModule):
    """Paris StreetView at the paper's setting (Section 5.3: 256x256, centre 128x128 hole for evaluation).

    Args:
        root: Folder holding ``paris_train_original/`` and ``paris_eval_gt/`` (or ``paris_eval/paris_eval_gt/``).
        resolution: Training crop size and evaluation size (paper: 256).
        batch_size: Training batch size (paper: 16).
        num_workers: DataLoader workers.
        train_transform: ``"random_crop"`` (random ``resolution`` crops of the 936x537 images; DeepFill v1),
            ``"center_crop"`` (their centre ``resolution`` crop, what the AN authors' code trains on, with
            ``flip=False``) or ``"resize"`` (centre square resized to ``resolution``).
        train_masks: Training mask generator (default ``RandomRectangleMasks()``, DeepFill's random boxes).
        val_masks: Validation mask generator (default ``CenterSquareMasks(0.5)``: the centre 128x128 hole).
        test_masks: Test mask generator (default ``CenterSquareMasks(0.5)``; e.g. ``AreaBinnedMasks()`` for the
            binned free-form evaluation).
        val_images: Images of ``paris_train_original`` held out for validation (:func:`paris_validation_split`).
        flip: Random horizontal flips for training (ours; neither DeepFill v1 nor the authors' code flips).
        val_batch_size: Evaluation batch size (default: ``batch_size``).
        eval_resize: Filter resizing evaluation images to ``resolution``: ``"bilinear"`` (OpenCV, the authors' test
            script; default) or ``"lanczos"``.
        predict_root: Folder of images to inpaint with ``predict`` (``predict_split="folder"``).
        predict_mask_root: Folder of their masks (same file stems).
        predict_split: What ``predict`` inpaints: ``"folder"``, ``"val"`` or ``"test"``.
        val_scale: ``"test"`` (default): validation images are the native-scale centre square of each held-out image
            that a test image is of the originals (227 of 537 pixels, :data:`PARIS_TEST_CROP`), resized to
            ``resolution`` with ``eval_resize``: selection and test see one scale and one pipeline (227 -> 256
            upsampling, as the authors' test script does to the test images). ``"square"``: the whole 537x537 centre
            square resized (a 2.1x downscale, unlike both the native-scale training crops and the test images).
    """

    def __init__(
        self,
        root: str,
        resolution: int = 256,
        batch_size: int = 16,
        num_workers: int = 8,
        train_transform: TrainTransform = "random_crop",
        train_masks: MaskGenerator | None = None,
        val_masks: MaskGenerator | None = None,
        test_masks: MaskGenerator | None = None,
        val_images: int = 100,
        flip: bool = True,
        val_batch_size: int | None = None,
        eval_resize: EvalResize = "bilinear",
        predict_root: str | None = None,
        predict_mask_root: str | None = None,
        predict_split: PredictSplit = "folder",
        val_scale: ValScale = "test",
    ) -> None:
        super().__init__(
            resolution, batch_size, num_workers, predict_root, predict_mask_root, val_batch_size, predict_split,
            eval_resize,
        )  # fmt: skip
        self.root = root
        if val_scale not in ("test", "square"):
            raise ValueError(f"val_scale must be 'test' or 'square', got {val_scale!r}")
        self.val_scale = val_scale
        self.train_transform = train_transform
        self.train_masks = train_masks if train_masks is not None else RandomRectangleMasks()
        self.val_masks = val_masks if val_masks is not None else CenterSquareMasks(0.5)
        self.test_masks = test_masks if test_masks is not None else CenterSquareMasks(0.5)
        self.val_images = val_images
        self.flip = flip

    def setup_splits(self, stage: str | None) -> None:
        """Train / val from ``root/paris_train_original`` (``val_images`` of them held out, seed 0), test from the 100
        ``root/paris_eval_gt/*_im.png`` images.

        Raises:
            ValueError: no ``*_im.png`` images in the evaluation folder (the error shows the expected layout).
        """
        train_dir, eval_dir = find_paris_folders(self.root)
        train, val = paris_validation_split(train_dir, self.val_images)
        if stage in (None, "fit"):
            self.train_set = InpaintingDataset(
                train, self.resolution, self.train_transform, flip=self.flip, masks=self.train_masks
            )
        crop = PARIS_TEST_CROP if self.val_scale == "test" else None
        self.val_set = self._eval_set(val, self.val_masks, crop=crop)
        if stage in (None, "test"):
            test = sorted(eval_dir.glob("*_im.png"))
            if not test:
                raise ValueError(
                    f"no evaluation images named '*_im.png' in {str(eval_dir)!r} (the ground-truth files of Paris "
                    f"StreetView are 001_im.png ... 100_im.png).\n{PARIS_LAYOUT}"
                )
            self.test_set = self._eval_set(test, self.test_masks)


class ImageFolderInpaintingDataModule(InpaintingDataModule):
    """Inpainting on any folder of images.

    Args:
        train_root: Folder of training images.
        val_root: Folder of validation images; without it, ``val_split`` images are held out of ``train_root``.
        test_root: Folder of test images (``test`` only).
        val_split: Training images held out for validation when ``val_root`` is not given (:func:`held_out_split`,
            seed 0).
        resolution: Image size (divisible by 8).
        batch_size: Training batch size.
        num_workers: DataLoader workers.
        train_transform: ``"random_crop"``, ``"center_crop"`` or ``"resize"`` (centre square resized).
        train_masks: Training mask generator (default ``RandomRectangleMasks()``).
        val_masks: Validation mask generator, drawn with a fixed seed per image (default ``CenterSquareMasks(0.5)``).
        test_masks: Test mask generator (default ``CenterSquareMasks(0.5)``).
        val_mask_root: Folder of validation masks matched by file stem (overrides ``val_masks``).
        recursive: Search the image folders recursively.
        flip: Random horizontal flips for training.
        val_batch_size: Evaluation batch size (default: ``batch_size``).
        eval_resize: Filter resizing evaluation images: ``"bilinear"`` (default) or ``"lanczos"``.
        predict_root: Folder of images to inpaint with ``predict``.
        predict_mask_root: Folder of their masks (same file stems).
        predict_split: What ``predict`` inpaints: ``"folder"``, ``"val"`` or ``"test"``.
    """

    def __init__(
        self,
        train_root: str,
        val_root: str | None = None,
        test_root: str | None = None,
        val_split: int = 0,
        resolution: int = 256,
        batch_size: int = 16,
        num_workers: int = 4,
        train_transform: TrainTransform = "random_crop",
        train_masks: MaskGenerator | None = None,
        val_masks: MaskGenerator | None = None,
        test_masks: MaskGenerator | None = None,
        val_mask_root: str | None = None,
        recursive: bool = False,
        flip: bool = True,
        val_batch_size: int | None = None,
        eval_resize: EvalResize = "bilinear",
        predict_root: str | None = None,
        predict_mask_root: str | None = None,
        predict_split: PredictSplit = "folder",
    ) -> None:
        super().__init__(
            resolution, batch_size, num_workers, predict_root, predict_mask_root, val_batch_size, predict_split,
            eval_resize,
        )  # fmt: skip
        if (val_root is None) == (val_split == 0):
            raise ValueError("give either val_root (a validation folder) or val_split > 0 (held out of train_root)")
        if val_split < 0:
            raise ValueError(f"val_split must be >= 0, got {val_split}")
        self.train_root = train_root
        self.val_root = val_root
        self.test_root = test_root
        self.val_split = val_split
        self.train_transform = train_transform
        self.train_masks = train_masks if train_masks is not None else RandomRectangleMasks()
        self.val_masks = val_masks if val_masks is not None else CenterSquareMasks(0.5)
        self.test_masks = test_masks if test_masks is not None else CenterSquareMasks(0.5)
        self.val_mask_root = val_mask_root
        self.recursive = recursive
        self.flip = flip

    def _val_folder_masks(self, val: list[Path]) -> FolderMasks | None:
        if self.val_mask_root is None:
            return None
        stems = {p.stem for p in list_images(self.val_mask_root)}
        missing = [p.name for p in val if p.stem not in stems]
        if missing:
            raise ValueError(
                f"{len(missing)} validation image(s) have no mask of the same name in {self.val_mask_root!r}: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            )
        return FolderMasks(self.val_mask_root)

    def setup_splits(self, stage: str | None) -> None:
        """Train from ``train_root``, val from ``val_root`` or a held-out fraction of the training images, test from
        ``test_root`` when given.
        """
        train = list_images(self.train_root, recursive=self.recursive)
        if self.val_root is None:
            train, val = held_out_split(train, self.val_split)
        else:
            val = list_images(self.val_root, recursive=self.recursive)
        if stage in (None, "fit"):
            self.train_set = InpaintingDataset(
                train, self.resolution, self.train_transform, flip=self.flip, masks=self.train_masks
            )
        self.val_set = self._eval_set(val, self.val_masks, self._val_folder_masks(val))
        if stage in (None, "test") and self.test_root is not None:
            self.test_set = self._eval_set(list_images(self.test_root, recursive=self.recursive), self.test_masks)
