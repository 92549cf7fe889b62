"""Inpainting data: Paris StreetView, any image folder, and a bundled demo set.

Batches are dicts (as in LaMa): ``{"image": (B, 3, H, W) in [-1, 1], "mask": (B, 1, H, W) with 1 = missing,
"name": list[str]}`` (AN paper, Wang et al. CVPR 2020, Section 4: "missing pixels value 1 and known ones 0").

* :class:`ParisStreetViewDataModule`: the paper's benchmark (Section 5, Pathak et al. 2016's Paris StreetView).
  Training on ``root/paris_train_original/*.JPG`` (14,900 images of 936x537) with random 256x256 crops (or a
  centre square resized to 256) and horizontal flips; evaluation on ``root/paris_eval_gt/*_im.png`` (100 images of
  227x227; ``root/paris_eval/paris_eval_gt`` is accepted too) resized to 256x256 with the fixed centre 128x128 hole
  (the protocol of the authors' test script, ``shared/reference/inpainting-anchors.md`` section 2). The dataset is
  shared by its authors on request only, so the module cannot download it.
* :class:`ImageFolderInpaintingDataModule`: any folders of images, masks generated or read from a folder (matched by
  file name).
* :class:`DemoInpaintingDataModule`: real photographs that ship inside scikit-image and scikit-learn (no download):
  training crops from ``astronaut``, ``coffee``, ``rocket`` (skimage) and ``china.jpg`` (sklearn); validation crops
  from *different* photographs, ``chelsea`` (skimage) and ``flower.jpg`` (sklearn).

Every DataModule also accepts ``predict_root`` / ``predict_mask_root``: a folder of images and a folder of masks
matched by file stem, at any size (batch size 1; the model pads to a multiple of 8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from common.data.images import center_crop_long_side, list_images, load_rgb, resize
from common.data.masks import CenterSquareMasks, FolderMasks, MaskGenerator, RandomRectangleMasks, validate_mask

__all__ = [
    "DemoInpaintingDataModule",
    "ImageFolderInpaintingDataModule",
    "InpaintingDataset",
    "ParisStreetViewDataModule",
    "PredictFolderDataset",
    "TensorCropDataset",
    "find_paris_folders",
    "to_tensor",
]

TrainTransform = Literal["random_crop", "resize"]

PARIS_LAYOUT = """expected layout:
  <root>/paris_train_original/*.JPG     (14,900 training images, 936x537)
  <root>/paris_eval_gt/*_im.png         (100 evaluation images, 227x227)
     or <root>/paris_eval/paris_eval_gt/*_im.png"""

PARIS_AVAILABILITY = (
    "Paris StreetView (Pathak et al., 'Context Encoders', CVPR 2016) cannot be downloaded: its authors share it on "
    "request only (see https://github.com/pathak22/context-encoder, section 'Paris StreetView Dataset')."
)


# ----------------------------------------------------------------------------------------------------------- helpers
def to_tensor(image: Image.Image) -> Tensor:
    """PIL RGB image -> float tensor ``(3, H, W)`` in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous() / 127.5 - 1.0


def _random_crop(image: Image.Image, size: int, generator: torch.Generator | None) -> Image.Image:
    width, height = image.size
    if min(width, height) < size:
        scale = size / min(width, height)
        image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BICUBIC)
        width, height = image.size
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return image.crop((left, top, left + size, top + size))


def _square_resize(image: Image.Image, size: int) -> Image.Image:
    return resize(center_crop_long_side(image), size)


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


# ---------------------------------------------------------------------------------------------------------- datasets
class InpaintingDataset(Dataset):
    """Image files with one mask per sample.

    Args:
        paths: Image files.
        resolution: Output height and width.
        transform: ``"random_crop"`` (random ``resolution`` crop; images smaller than that are upscaled first),
            ``"resize"`` (centre square crop resized to ``resolution``; deterministic).
        flip: Random horizontal flips.
        masks: Mask generator called as ``masks(H, W, generator)``; ignored when ``mask_folder`` is given.
        mask_folder: Masks read from files matched by image stem (validated against the image size).
        fixed_masks: Draw mask ``i`` from a generator seeded with ``seed + i`` (evaluation: the same masks every
            epoch); otherwise masks come from the global RNG.
        seed: Base seed of the fixed masks.
    """

    def __init__(
        self,
        paths: list[Path],
        resolution: int,
        transform: Literal["random_crop", "resize"] = "resize",
        flip: bool = False,
        masks: MaskGenerator | None = None,
        mask_folder: FolderMasks | None = None,
        fixed_masks: bool = False,
        seed: int = 0,
    ) -> None:
        if transform not in ("random_crop", "resize"):
            raise ValueError(f"transform must be 'random_crop' or 'resize', got {transform!r}")
        if masks is None and mask_folder is None:
            raise ValueError("InpaintingDataset needs a mask generator or a mask folder")
        self.paths = list(paths)
        self.resolution = resolution
        self.transform = transform
        self.flip = flip
        self.masks = masks
        self.mask_folder = mask_folder
        if mask_folder is not None and (transform != "resize" or flip):
            raise ValueError("mask files are matched to images only with transform='resize' and flip=False")
        self.fixed_masks = fixed_masks
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        image = source = load_rgb(path)
        if self.transform == "random_crop":
            image = _random_crop(image, self.resolution, None)
        else:
            image = _square_resize(image, self.resolution)
        tensor = to_tensor(image)
        if self.flip and bool(torch.rand(()) < 0.5):
            tensor = tensor.flip(-1)
        if self.mask_folder is not None:
            # A mask file has either the image's own size (then it goes through the image's crop and resize,
            # nearest) or the working resolution (used as it is); any other size is an error.
            width, height = source.size
            res = self.resolution
            mask_size = self.mask_folder.size_of(path.stem)
            if mask_size == (width, height):
                full = self.mask_folder.by_name(path.stem, height, width, exact=True)
                side = min(height, width)
                top, left = (height - side) // 2, (width - side) // 2  # the box of center_crop_long_side
                square = full[None, :, top : top + side, left : left + side]
                mask = F.interpolate(square, size=(res, res), mode="nearest")[0]
            elif mask_size == (res, res):
                mask = self.mask_folder.by_name(path.stem, res, res, exact=True)
            else:
                raise ValueError(
                    f"mask {path.stem} is {mask_size[0]}x{mask_size[1]} but its image is {width}x{height}; a mask "
                    f"must have its image's size or the working resolution {res}x{res}"
                )
        else:
            generator = torch.Generator().manual_seed(self.seed + index) if self.fixed_masks else None
            mask = self.masks(self.resolution, self.resolution, generator)
        validate_mask(mask, tensor)
        return {"image": tensor, "mask": mask, "name": path.stem}


class TensorCropDataset(Dataset):
    """Crops of in-memory images (``(3, H, W)`` tensors in [-1, 1]) with generated masks.

    Args:
        images: Source images.
        resolution: Crop size.
        crops: Either ``None`` (random crops, ``length`` samples per epoch, random flips, masks from the global RNG)
            or a list of fixed ``(image index, top, left)`` crops (masks drawn with seed ``seed + i``).
        masks: Mask generator.
        length: Samples per epoch for random crops.
        names: Names of the source images (sample names are ``<name>_<top>_<left>``).
        seed: Base seed of the fixed masks.
    """

    def __init__(
        self,
        images: list[Tensor],
        resolution: int,
        masks: MaskGenerator,
        crops: list[tuple[int, int, int]] | None = None,
        length: int = 1024,
        names: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        for image in images:
            if min(image.shape[-2:]) < resolution:
                raise ValueError(f"image of size {tuple(image.shape[-2:])} is smaller than the crop size {resolution}")
        self.images = images
        self.resolution = resolution
        self.masks = masks
        self.crops = crops
        self.length = length if crops is None else len(crops)
        self.names = names or [f"image{i}" for i in range(len(images))]
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        size = self.resolution
        if self.crops is None:
            k = int(torch.randint(len(self.images), ()))
            height, width = self.images[k].shape[-2:]
            top = int(torch.randint(height - size + 1, ()))
            left = int(torch.randint(width - size + 1, ()))
            generator = None
        else:
            k, top, left = self.crops[index]
            generator = torch.Generator().manual_seed(self.seed + index)
        image = self.images[k][:, top : top + size, left : left + size]
        if self.crops is None and bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
        mask = self.masks(size, size, generator)
        return {"image": image.contiguous(), "mask": mask, "name": f"{self.names[k]}_{top}_{left}"}


class PredictFolderDataset(Dataset):
    """Images of any size with masks of the same size from another folder, matched by file stem.

    Args:
        image_root: Folder of images.
        mask_root: Folder of masks (white or non-zero = missing unless ``invert_masks``).
        invert_masks: Masks use 1 = known.

    Raises:
        ValueError: If an image has no mask of the same name (listing the first missing names).
    """

    def __init__(self, image_root: str | Path, mask_root: str | Path, invert_masks: bool = False) -> None:
        self.paths = list_images(image_root)
        self.masks = FolderMasks(str(mask_root), invert=invert_masks)
        self.mask_paths = {p.stem: p for p in list_images(mask_root)}
        missing = [p.name for p in self.paths if p.stem not in self.mask_paths]
        if missing:
            raise ValueError(
                f"{len(missing)} image(s) in {str(image_root)!r} have no mask of the same name in {str(mask_root)!r}: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        image = to_tensor(load_rgb(path))
        mask_path = self.mask_paths[path.stem]
        with Image.open(mask_path) as file:
            width, height = file.size
        mask = self.masks.load(mask_path, height, width)  # native size: a size mismatch is an error, not a resize
        try:
            validate_mask(mask, image, allow_empty=True)
        except ValueError as err:
            raise ValueError(f"mask {mask_path.name} for image {path.name}: {err}") from err
        return {"image": image, "mask": mask, "name": path.stem}


# ------------------------------------------------------------------------------------------------------ datamodules
class _InpaintingDataModule(pl.LightningDataModule):
    """Shared loaders and the predict folder."""

    def __init__(
        self,
        resolution: int,
        batch_size: int,
        num_workers: int,
        predict_root: str | None,
        predict_mask_root: str | None,
        val_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if resolution % 8:
            raise ValueError(f"resolution must be divisible by 8, got {resolution}")
        self.resolution = resolution
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.predict_root = predict_root
        self.predict_mask_root = predict_mask_root
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.predict_set: Dataset | None = None

    def _setup_predict(self) -> None:
        if self.predict_root is None or self.predict_mask_root is None:
            raise ValueError("predict needs --data.predict_root (images) and --data.predict_mask_root (masks)")
        self.predict_set = PredictFolderDataset(self.predict_root, self.predict_mask_root)

    def _loader(self, dataset: Dataset | None, batch_size: int, shuffle: bool, drop_last: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            drop_last=drop_last,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, 1, shuffle=False)


class ParisStreetViewDataModule(_InpaintingDataModule):
    """Paris StreetView at the paper's protocol (Section 5.3: 256x256, centre 128x128 hole for evaluation).

    Args:
        root: Folder holding ``paris_train_original/`` and ``paris_eval_gt/`` (or ``paris_eval/paris_eval_gt/``).
        resolution: Training crop size and evaluation size (paper: 256).
        batch_size: Training batch size (paper: 16).
        num_workers: DataLoader workers.
        train_transform: ``"random_crop"`` (random ``resolution`` crops of the 936x537 images) or ``"resize"``
            (centre square resized to ``resolution``).
        train_masks: Training mask generator (default ``RandomRectangleMasks()``, DeepFill's random boxes).
        val_masks: Evaluation mask generator (default ``CenterSquareMasks(0.5)``: the centre 128x128 hole).
        flip: Random horizontal flips for training.
        val_batch_size: Evaluation batch size (default: ``batch_size``).
        predict_root: Folder of images to inpaint with ``predict``.
        predict_mask_root: Folder of their masks (same file stems).
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
        flip: bool = True,
        val_batch_size: int | None = None,
        predict_root: str | None = None,
        predict_mask_root: str | None = None,
    ) -> None:
        super().__init__(resolution, batch_size, num_workers, predict_root, predict_mask_root, val_batch_size)
        self.root = root
        self.train_transform = train_transform
        self.train_masks = train_masks if train_masks is not None else RandomRectangleMasks()
        self.val_masks = val_masks if val_masks is not None else CenterSquareMasks(0.5)
        self.flip = flip

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self._setup_predict()
            return
        train_dir, eval_dir = find_paris_folders(self.root)
        if stage in (None, "fit"):
            train = list_images(train_dir)
            self.train_set = InpaintingDataset(
                train, self.resolution, self.train_transform, flip=self.flip, masks=self.train_masks
            )
        evaluation = sorted(eval_dir.glob("*_im.png"))
        if not evaluation:
            raise ValueError(
                f"no evaluation images named '*_im.png' in {str(eval_dir)!r} (the ground-truth files of Paris "
                f"StreetView are 001_im.png ... 100_im.png).\n{PARIS_LAYOUT}"
            )
        self.val_set = InpaintingDataset(evaluation, self.resolution, "resize", masks=self.val_masks, fixed_masks=True)


class ImageFolderInpaintingDataModule(_InpaintingDataModule):
    """Inpainting on any folders of images.

    Args:
        train_root: Folder of training images.
        val_root: Folder of validation images.
        resolution: Image size (divisible by 8).
        batch_size: Training batch size.
        num_workers: DataLoader workers.
        train_transform: ``"random_crop"`` or ``"resize"`` (centre square resized).
        train_masks: Training mask generator (default ``RandomRectangleMasks()``).
        val_masks: Validation mask generator, drawn with a fixed seed per image (default ``CenterSquareMasks(0.5)``).
        val_mask_root: Folder of validation masks matched by file stem (overrides ``val_masks``).
        recursive: Search the image folders recursively.
        flip: Random horizontal flips for training.
        val_batch_size: Validation batch size (default: ``batch_size``).
        predict_root: Folder of images to inpaint with ``predict``.
        predict_mask_root: Folder of their masks (same file stems).
    """

    def __init__(
        self,
        train_root: str,
        val_root: str,
        resolution: int = 256,
        batch_size: int = 16,
        num_workers: int = 4,
        train_transform: TrainTransform = "random_crop",
        train_masks: MaskGenerator | None = None,
        val_masks: MaskGenerator | None = None,
        val_mask_root: str | None = None,
        recursive: bool = False,
        flip: bool = True,
        val_batch_size: int | None = None,
        predict_root: str | None = None,
        predict_mask_root: str | None = None,
    ) -> None:
        super().__init__(resolution, batch_size, num_workers, predict_root, predict_mask_root, val_batch_size)
        self.train_root = train_root
        self.val_root = val_root
        self.train_transform = train_transform
        self.train_masks = train_masks if train_masks is not None else RandomRectangleMasks()
        self.val_masks = val_masks if val_masks is not None else CenterSquareMasks(0.5)
        self.val_mask_root = val_mask_root
        self.recursive = recursive
        self.flip = flip

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self._setup_predict()
            return
        if stage in (None, "fit"):
            train = list_images(self.train_root, recursive=self.recursive)
            self.train_set = InpaintingDataset(
                train, self.resolution, self.train_transform, flip=self.flip, masks=self.train_masks
            )
        val = list_images(self.val_root, recursive=self.recursive)
        folder = None
        if self.val_mask_root is not None:
            folder = FolderMasks(self.val_mask_root)
            stems = {p.stem for p in list_images(self.val_mask_root)}
            missing = [p.name for p in val if p.stem not in stems]
            if missing:
                raise ValueError(
                    f"{len(missing)} validation image(s) have no mask of the same name in {self.val_mask_root!r}: "
                    f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
                )
        self.val_set = InpaintingDataset(
            val, self.resolution, "resize", masks=self.val_masks, mask_folder=folder, fixed_masks=True
        )


def _demo_photographs() -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """(train, val) photographs bundled with scikit-image and scikit-learn (no network access)."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    sk = {Path(f).stem: im for f, im in zip(sample.filenames, sample.images, strict=True)}
    train = [
        ("astronaut", data.astronaut()),
        ("coffee", data.coffee()),
        ("rocket", data.rocket()),
        ("china", sk["china"]),
    ]
    val = [("chelsea", data.chelsea()), ("flower", sk["flower"])]
    return train, val


class DemoInpaintingDataModule(_InpaintingDataModule):
    """Bundled demo: crops of real photographs shipped with scikit-image and scikit-learn (nothing downloaded).

    Each photograph is resized so that its short side is ``scale * resolution``. Training samples are random
    ``resolution`` crops (with flips) of ``astronaut``, ``coffee``, ``rocket`` (skimage) and ``china.jpg`` (sklearn)
    with random rectangle masks; validation uses ``num_val_crops`` fixed crops, spread on a grid, of two different
    photographs, ``chelsea`` (skimage) and ``flower.jpg`` (sklearn), with the centre-square hole (half the side)
    as in the Paris protocol.

    Args:
        resolution: Crop size (divisible by 8).
        batch_size: Training batch size.
        num_workers: DataLoader workers (0 is fastest for in-memory crops).
        scale: Short side of the resized photographs, in units of ``resolution``.
        train_samples_per_epoch: Random crops per training epoch.
        num_val_crops: Validation crops per validation photograph.
        train_masks: Training mask generator (default ``RandomRectangleMasks()``).
        val_masks: Validation mask generator (default ``CenterSquareMasks(0.5)``).
        val_batch_size: Validation batch size (default: ``batch_size``).
        predict_root: Folder of images to inpaint with ``predict``.
        predict_mask_root: Folder of their masks (same file stems).
    """

    def __init__(
        self,
        resolution: int = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        scale: float = 2.0,
        train_samples_per_epoch: int = 1024,
        num_val_crops: int = 8,
        train_masks: MaskGenerator | None = None,
        val_masks: MaskGenerator | None = None,
        val_batch_size: int | None = None,
        predict_root: str | None = None,
        predict_mask_root: str | None = None,
    ) -> None:
        super().__init__(resolution, batch_size, num_workers, predict_root, predict_mask_root, val_batch_size)
        if scale < 1:
            raise ValueError(f"scale must be >= 1 (photographs at least as large as the crops), got {scale}")
        self.scale = scale
        self.train_samples_per_epoch = train_samples_per_epoch
        self.num_val_crops = num_val_crops
        self.train_masks = train_masks if train_masks is not None else RandomRectangleMasks()
        self.val_masks = val_masks if val_masks is not None else CenterSquareMasks(0.5)

    def _prepare(self, photos: list[tuple[str, np.ndarray]]) -> list[Tensor]:
        short = round(self.scale * self.resolution)
        out = []
        for _, array in photos:
            image = Image.fromarray(array).convert("RGB")
            w, h = image.size
            factor = short / min(w, h)
            out.append(to_tensor(image.resize((round(w * factor), round(h * factor)), Image.BICUBIC)))
        return out

    def val_crops(self, images: list[Tensor]) -> list[tuple[int, int, int]]:
        """Fixed crops on a grid: ``num_val_crops`` per image, spread evenly over rows then columns."""
        crops = []
        size = self.resolution
        for k, image in enumerate(images):
            height, width = image.shape[-2:]
            cols = max(1, int(np.ceil(np.sqrt(self.num_val_crops * width / height))))
            rows = int(np.ceil(self.num_val_crops / cols))
            tops = np.linspace(0, height - size, rows).round().astype(int)
            lefts = np.linspace(0, width - size, cols).round().astype(int)
            grid = [(k, int(t), int(left)) for t in tops for left in lefts]
            crops += grid[: self.num_val_crops]
        return crops

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self._setup_predict()
            return
        train, val = _demo_photographs()
        if stage in (None, "fit"):
            self.train_set = TensorCropDataset(
                self._prepare(train),
                self.resolution,
                self.train_masks,
                length=self.train_samples_per_epoch,
                names=[n for n, _ in train],
            )
        val_images = self._prepare(val)
        self.val_set = TensorCropDataset(
            val_images, self.resolution, self.val_masks, crops=self.val_crops(val_images), names=[n for n, _ in val]
        )
