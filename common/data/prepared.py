"""DataModules that stream prepared data (:mod:`common.data.prepare`) with LitData, batch for batch like the raw ones.

:class:`PreparedImageNetDataModule` and :class:`PreparedParisStreetViewDataModule` read a prepared folder or URL
(``--data.init_args.root /data/imagenet128`` or ``s3://bucket/imagenet128``) and give the same batch dicts as
:class:`~common.data.imagenet.ImageNetDataModule` and :class:`~common.data.inpainting.ParisStreetViewDataModule`:
the same keys, dtypes, value ranges, class indices and names, and the same samples in the same order. The random
augmentation (flips; Paris: random crops and training masks) is the raw DataModules' own code
(:func:`~common.data.class_datasets.class_item`, :func:`~common.data.inpainting_datasets.inpainting_item`) applied
to the stored images, so with a lossless encoding a prepared run sees exactly the batches of a raw run with the same
seed. Everything else is inherited from the raw DataModules' bases: the exactly resumable training loader
(:func:`common.data.resumable.resumable_train_loader`: the order and every sample's augmentation follow from the
seed, the epoch and the index), the reference loaders of FID, and evaluation under DDP that sees every sample once
(:func:`common.data.distributed.eval_sampler`).

Samples are read by index from ``litdata.StreamingDataset`` (:class:`common.data.streaming.StreamedItems`); a
remote location is fetched by LitData, item by item, into its cache (``cache_dir``). Each DataModule checks the
folder's manifest against its own settings when it is built and refuses a folder prepared differently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from common.data.class_datasets import class_item
from common.data.class_images import ClassImageDataModule
from common.data.inpainting import InpaintingDataModule, PredictSplit, TrainTransform
from common.data.inpainting_datasets import EvalResize, inpainting_item
from common.data.masks import CenterSquareMasks, MaskGenerator, RandomRectangleMasks
from common.data.streaming import StreamedItems, decode_image, join_location, labels_from_runs, load_manifest

__all__ = [
    "PreparedClassDataset",
    "PreparedImageNetDataModule",
    "PreparedInpaintingDataset",
    "PreparedParisStreetViewDataModule",
]


def _split_items(dm: Any, split: str) -> StreamedItems:
    count = dm.manifest["splits"][split]["count"]
    return StreamedItems(join_location(dm.root, split), count, dm.cache_dir, dm.storage_options)


class PreparedClassDataset(Dataset):
    """A prepared class-conditional split: items ``{"image": float32 (3, R, R) in [-1, 1], "label": int64}`` as
    :class:`~common.data.class_datasets.ImageFileDataset` gives them (flips drawn by the same code).

    Args:
        items: The split's stored samples.
        labels: The label of every sample (from the manifest; each read checks the stored one).
        encoding: How the images are stored (:data:`common.data.streaming.ENCODINGS`).
        hflip: Random horizontal flips.
    """

    def __init__(self, items: StreamedItems, labels: np.ndarray, encoding: str, hflip: bool) -> None:
        if len(labels) != len(items):
            raise ValueError(f"{len(labels)} labels for {len(items)} samples of {items.location}")
        self.items, self.labels, self.encoding, self.hflip = items, np.asarray(labels, np.int64), encoding, hflip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        if int(item["label"]) != int(self.labels[index]):
            raise ValueError(
                f"{self.items.location}: sample {int(index)} is stored with label {int(item['label'])} but the "
                f"manifest says {int(self.labels[index])}; prepare the data again"
            )
        return class_item(decode_image(item["image"], self.encoding), self.labels[index], self.hflip, index)


class PreparedImageNetDataModule(ClassImageDataModule):
    """ImageNet prepared by ``python -m common.data.prepare imagenet`` (or ``python -m an_gan prepare``).

    The same splits, class indices (``class_names``: the wnids in train-folder order), images and flips as
    :class:`~common.data.imagenet.ImageNetDataModule` on the raw folders it was prepared from; ``test`` is the
    validation split, as there.

    Args:
        root: The prepared folder or a URL LitData streams from (``s3://...``, ``gs://...``, ``local:/path`` ...).
        resolution: Side length of the images; must be the prepared resolution (checked).
        batch_size: Images per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        hflip: Random horizontal flips for training.
        cache_dir: LitData's chunk cache for a remote ``root`` (default: LitData's, ``~/.lightning/chunks``).
        storage_options: Passed to LitData (credentials, an S3-compatible endpoint, ...).
    """

    def __init__(
        self,
        root: str,
        resolution: int = 128,
        batch_size: int = 256,
        num_workers: int = 8,
        hflip: bool = True,
        cache_dir: str | None = None,
        storage_options: dict | None = None,
    ) -> None:
        super().__init__(resolution, batch_size, num_workers, hflip)
        self.save_hyperparameters()
        self.root, self.cache_dir, self.storage_options = root, cache_dir, storage_options
        self.manifest = load_manifest(root, "imagenet", {"resolution": resolution}, storage_options)
        self.class_names = list(self.manifest["class_names"])
        self.num_classes = len(self.class_names)
        self.dataset_name = "imagenet"

    def _split(self, split: str) -> str:
        return self.manifest.get("aliases", {}).get(split, split)

    def _identity(self, split: str) -> str:
        split, m = self._split(split), self.manifest
        source = m["source"]["identity"][split]
        return f"prepared|{source}|{m['encoding']}|{m['jpeg_quality']}|{m['splits'][split]['count']}"

    def _build_datasets(self) -> dict[str, Dataset]:
        datasets = {}
        for split in ("train", "val"):
            labels = labels_from_runs(self.manifest["splits"][split]["labels"])
            hflip = self.hflip if split == "train" else False
            datasets[split] = PreparedClassDataset(_split_items(self, split), labels, self.manifest["encoding"], hflip)
        datasets["test"] = datasets[self._split("test")]
        return datasets


class PreparedInpaintingDataset(Dataset):
    """A prepared inpainting split with the random part of :class:`~common.data.inpainting_datasets.InpaintingDataset`
    (random crop, flip, mask; :func:`~common.data.inpainting_datasets.inpainting_item`): items ``{"image": (3, R, R)
    in [-1, 1], "mask": (1, R, R), "name": str}``.

    Args:
        items: The split's stored samples.
        encoding: How the images are stored.
        resolution: Output side.
        transform: ``"random_crop"`` (the stored images are whole) or ``"resize"`` (stored at ``resolution``).
        flip: Random horizontal flips.
        masks: Mask generator.
        fixed_masks: Mask ``i`` drawn with seed ``seed + i`` (evaluation).
        seed: Base seed of the fixed masks.
    """

    def __init__(
        self,
        items: StreamedItems,
        encoding: str,
        resolution: int,
        transform: TrainTransform,
        flip: bool,
        masks: MaskGenerator,
        fixed_masks: bool = False,
        seed: int = 0,
    ) -> None:
        self.items, self.encoding, self.resolution, self.transform = items, encoding, resolution, transform
        self.flip, self.masks, self.fixed_masks, self.seed = flip, masks, fixed_masks, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        return inpainting_item(self, decode_image(item["image"], self.encoding), index, str(item["name"]))


class PreparedParisStreetViewDataModule(InpaintingDataModule):
    """Paris StreetView prepared by ``python -m common.data.prepare paris`` (or ``python -m an_inpaint prepare``).

    The same splits (training images minus the held-out validation ones, validation, test), images, names, crops,
    flips and masks as :class:`~common.data.inpainting.ParisStreetViewDataModule`, whose arguments it takes;
    ``resolution``, ``train_transform``, ``eval_resize`` and ``val_images`` must be the prepared ones (checked).

    Args:
        root: The prepared folder or a URL LitData streams from.
        resolution: Training crop size and evaluation size (paper: 256).
        batch_size: Training batch size (paper: 16).
        num_workers: DataLoader workers.
        train_transform: ``"random_crop"``, ``"center_crop"`` or ``"resize"``, as prepared.
        train_masks: Training mask generator (default ``RandomRectangleMasks()``).
        val_masks: Validation mask generator (default ``CenterSquareMasks(0.5)``).
        test_masks: Test mask generator (default ``CenterSquareMasks(0.5)``).
        val_images: Images held out for validation, as prepared.
        flip: Random horizontal flips for training.
        val_batch_size: Evaluation batch size (default: ``batch_size``).
        eval_resize: Filter of the evaluation images, as prepared.
        val_scale: Scale of the validation images, as prepared (``"test"`` or ``"square"``, as the raw module's).
        predict_root: Folder of images to inpaint with ``predict`` (``predict_split="folder"``).
        predict_mask_root: Folder of their masks.
        predict_split: What ``predict`` inpaints: ``"folder"``, ``"val"`` or ``"test"``.
        cache_dir: LitData's chunk cache for a remote ``root``.
        storage_options: Passed to LitData.
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
        cache_dir: str | None = None,
        storage_options: dict | None = None,
        val_scale: str = "test",
    ) -> None:
        super().__init__(
            resolution, batch_size, num_workers, predict_root, predict_mask_root, val_batch_size, predict_split,
            eval_resize,
        )  # fmt: skip
        self.root, self.cache_dir, self.storage_options = root, cache_dir, storage_options
        self.train_transform, self.flip = train_transform, flip
        self.train_masks = train_masks if train_masks is not None else RandomRectangleMasks()
        self.val_masks = val_masks if val_masks is not None else CenterSquareMasks(0.5)
        self.test_masks = test_masks if test_masks is not None else CenterSquareMasks(0.5)
        settings = {"resolution": resolution, "train_transform": train_transform, "eval_resize": eval_resize,
                    "val_images": val_images, "val_scale": val_scale}  # fmt: skip
        self.manifest = load_manifest(root, "paris", settings, storage_options)

    def _prepared(self, split: str, transform: str, flip: bool, masks: MaskGenerator, fixed: bool):
        items, encoding = _split_items(self, split), self.manifest["encoding"]
        return PreparedInpaintingDataset(items, encoding, self.resolution, transform, flip, masks, fixed)

    def setup_splits(self, stage: str | None) -> None:
        """Build the prepared train (``fit``), val and test (``test``) datasets from the streamed chunks."""
        if stage in (None, "fit"):
            self.train_set = self._prepared("train", self.train_transform, self.flip, self.train_masks, False)
        self.val_set = self._prepared("val", "resize", False, self.val_masks, True)
        if stage in (None, "test"):
            self.test_set = self._prepared("test", "resize", False, self.test_masks, True)
