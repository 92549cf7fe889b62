"""Inpainting datasets: image files with masks, in-memory photograph crops with augmentation, predict folders.

Samples are dicts (as in LaMa): ``{"image": (3, H, W) in [-1, 1], "mask": (1, H, W) with 1 = missing, "name": str}``
(AN paper, Wang et al. CVPR 2020, Section 4: "missing pixels value 1 and known ones 0").

Evaluation images are made square and sized by :func:`eval_resize`: the centre square (short side) resized to the
evaluation resolution with ``"bilinear"`` (OpenCV's ``cv2.resize`` with ``INTER_LINEAR``, what the AN/GMCNN
authors' ``test.py`` does to the 227x227 Paris StreetView test images; the default) or ``"lanczos"`` (PIL's Lanczos
filter). The choice changes the scores (see the README), so it is an option of every DataModule.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from common.data.images import center_crop_long_side, list_images, load_rgb
from common.data.mask_files import FolderMasks
from common.data.masks import MaskGenerator, validate_mask
from common.data.resumable import augmentation_generator

__all__ = [
    "EVAL_RESIZE",
    "Augmentation",
    "InpaintingDataset",
    "PredictFolderDataset",
    "TensorCropDataset",
    "base_image",
    "eval_resize",
    "inpainting_item",
    "to_tensor",
]

EvalResize = Literal["bilinear", "lanczos"]
EVAL_RESIZE: tuple[str, ...] = ("bilinear", "lanczos")


def to_tensor(image: Image.Image | np.ndarray) -> Tensor:
    """RGB image (PIL or ``(H, W, 3)`` uint8 array) -> float tensor ``(3, H, W)`` in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous() / 127.5 - 1.0


def eval_resize(image: Image.Image, size: int, method: EvalResize = "bilinear") -> np.ndarray:
    """Centre square of ``image`` (its short side) resized to ``size`` x ``size``, as an ``(H, W, 3)`` uint8 array.

    Args:
        image: RGB PIL image.
        size: Output side.
        method: ``"bilinear"`` (``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``, the AN authors' test script)
            or ``"lanczos"`` (PIL ``Image.LANCZOS``).
    """
    if method not in EVAL_RESIZE:
        raise ValueError(f"eval resize must be one of {EVAL_RESIZE}, got {method!r}")
    square = center_crop_long_side(image)
    if square.size == (size, size):
        return np.asarray(square, dtype=np.uint8)
    if method == "lanczos":
        return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
    return cv2.resize(np.asarray(square, dtype=np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)


def base_image(
    source: Image.Image, resolution: int, transform: str, resize: EvalResize = "bilinear", crop: float | None = None
) -> np.ndarray:
    """The deterministic part of an inpainting sample, as an ``(H, W, 3)`` uint8 array (what
    :mod:`common.data.prepare` stores once, so that prepared data gives the same pixels).

    ``"random_crop"``: the image itself, upscaled (PIL bicubic) first when its short side is below ``resolution``
    (the random crop then needs no resize). ``"center_crop"``: the centre ``resolution`` square of that image (the
    AN authors' training data: TF ``resize_image_with_crop_or_pad``). ``"resize"``: its centre square resized by
    :func:`eval_resize`; with ``crop`` (in (0, 1]), the centre square of ``round(crop * short side)`` pixels at
    native scale is what gets resized.
    """
    if transform == "resize":
        if crop is not None:
            width, height = source.size
            side = max(1, round(min(width, height) * crop))
            left, top = (width - side) // 2, (height - side) // 2
            source = source.crop((left, top, left + side, top + side))
        return eval_resize(source, resolution, resize)
    width, height = source.size
    if min(width, height) < resolution:
        scale = resolution / min(width, height)
        size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
        source = source.resize(size, Image.BICUBIC)
    image = np.asarray(source, dtype=np.uint8)
    if transform == "center_crop":
        top, left = (image.shape[0] - resolution) // 2, (image.shape[1] - resolution) // 2
        return image[top : top + resolution, left : left + resolution]
    return image


def _random_crop(image: np.ndarray, size: int, generator: torch.Generator | None = None) -> np.ndarray:
    height, width = image.shape[:2]
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return image[top : top + size, left : left + size]


def _draw_mask(masks: MaskGenerator, size: int, generator: torch.Generator | None, index: int) -> Tensor:
    """``masks(size, size, generator)``, passing the sample ``index`` to generators that take one."""
    if "index" in inspect.signature(masks.__call__).parameters:
        return masks(size, size, generator, index=index)
    return masks(size, size, generator)


class Augmentation:
    """Random geometric and colour augmentation of ``(3, H, W)`` images in [-1, 1].

    Draws come from the ``generator`` given to :meth:`__call__` (a sample's own, see
    :func:`common.data.resumable.augmentation_generator`) or, when it is ``None``, the global torch RNG.

    Horizontal flips (p = 1/2) always; with ``geometric``, vertical flips and 90-degree rotations too; with
    ``colour``, a random permutation of the RGB channels (so that a network cannot memorise the training photos'
    colours), then saturation, contrast and brightness jitter.

    Args:
        geometric: Vertical flips and rotations by multiples of 90 degrees.
        colour: Channel permutation and colour jitter.
        saturation: Saturation factor range ``(1 - s, 1 + s)``.
        contrast: Contrast factor range ``(1 - c, 1 + c)``.
        brightness: Brightness shift range ``(-b, b)`` on the [0, 1] scale.
    """

    def __init__(
        self,
        geometric: bool = True,
        colour: bool = True,
        saturation: float = 0.5,
        contrast: float = 0.4,
        brightness: float = 0.2,
    ) -> None:
        self.geometric = geometric
        self.colour = colour
        self.saturation = saturation
        self.contrast = contrast
        self.brightness = brightness

    @staticmethod
    def _uniform(spread: float, generator: torch.Generator | None) -> float:
        return float(torch.empty(()).uniform_(-spread, spread, generator=generator))

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        g = generator
        if bool(torch.rand((), generator=g) < 0.5):
            image = image.flip(-1)
        if self.geometric:
            if bool(torch.rand((), generator=g) < 0.5):
                image = image.flip(-2)
            image = torch.rot90(image, int(torch.randint(4, (), generator=g)), dims=(1, 2))
        if self.colour:
            unit = (image[torch.randperm(3, generator=g)] + 1) / 2
            gray = unit.mean(dim=0, keepdim=True)
            unit = gray + (unit - gray) * (1 + self._uniform(self.saturation, g))
            mean = unit.mean()
            unit = (unit - mean) * (1 + self._uniform(self.contrast, g)) + mean + self._uniform(self.brightness, g)
            image = unit.clamp(0, 1) * 2 - 1
        return image.contiguous()


class InpaintingDataset(Dataset):
    """Image files with one mask per sample.

    Args:
        paths: Image files.
        resolution: Output height and width.
        transform: ``"random_crop"`` (random ``resolution`` crop; images smaller than that are upscaled first),
            ``"center_crop"`` (the centre ``resolution`` crop, likewise) or ``"resize"`` (centre square resized to
            ``resolution`` with ``resize``; deterministic). See :func:`base_image`.
        flip: Random horizontal flips.
        masks: Mask generator called as ``masks(H, W, generator)``; ignored when ``mask_folder`` is given.
        mask_folder: Masks read from files matched by image stem (validated against the image size).
        fixed_masks: Draw mask ``i`` from a generator seeded with ``seed + i`` (evaluation: the same masks every
            epoch); otherwise masks come from the global RNG.
        seed: Base seed of the fixed masks.
        resize: Filter of ``transform="resize"`` (see :func:`eval_resize`).
        crop: With ``transform="resize"``: resize the centre square of side ``crop`` (in (0, 1]) times the short side
            (native scale) instead of the whole centre square (see :func:`base_image`).
    """

    def __init__(
        self,
        paths: list[Path],
        resolution: int,
        transform: Literal["random_crop", "center_crop", "resize"] = "resize",
        flip: bool = False,
        masks: MaskGenerator | None = None,
        mask_folder: FolderMasks | None = None,
        fixed_masks: bool = False,
        seed: int = 0,
        resize: EvalResize = "bilinear",
        crop: float | None = None,
    ) -> None:
        if transform not in ("random_crop", "center_crop", "resize"):
            raise ValueError(f"transform must be 'random_crop', 'center_crop' or 'resize', got {transform!r}")
        if crop is not None and (transform != "resize" or mask_folder is not None or not 0 < crop <= 1):
            raise ValueError(f"crop={crop} needs transform='resize', no mask folder and 0 < crop <= 1")
        if resize not in EVAL_RESIZE:
            raise ValueError(f"resize must be one of {EVAL_RESIZE}, got {resize!r}")
        if masks is None and mask_folder is None:
            raise ValueError("InpaintingDataset needs a mask generator or a mask folder")
        if mask_folder is not None and (transform != "resize" or flip):
            raise ValueError("mask files are matched to images only with transform='resize' and flip=False")
        self.paths = list(paths)
        self.resolution = resolution
        self.transform = transform
        self.flip = flip
        self.masks = masks
        self.mask_folder = mask_folder
        self.fixed_masks = fixed_masks
        self.seed = seed
        self.resize = resize
        self.crop = crop

    def __len__(self) -> int:
        return len(self.paths)

    def _folder_mask(self, path: Path, source: Image.Image) -> Tensor:
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
            return F.interpolate(square, size=(res, res), mode="nearest")[0]
        if mask_size == (res, res):
            return self.mask_folder.by_name(path.stem, res, res, exact=True)
        raise ValueError(
            f"mask {path.stem} is {mask_size[0]}x{mask_size[1]} but its image is {width}x{height}; a mask "
            f"must have its image's size or the working resolution {res}x{res}"
        )

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        source = load_rgb(path)
        base = base_image(source, self.resolution, self.transform, self.resize, self.crop)
        mask = self._folder_mask(path, source) if self.mask_folder is not None else None
        return inpainting_item(self, base, index, path.stem, mask)


def inpainting_item(dataset: InpaintingDataset, base: np.ndarray, index: int, name: str, mask: Tensor | None = None):
    """The random part of an inpainting sample from its :func:`base_image`: the random crop (``"random_crop"``), the
    flip and the mask (unless given), drawn as ``dataset`` (its ``resolution``, ``transform``, ``flip``, ``masks``,
    ``fixed_masks`` and ``seed``) says. Shared by the image-file and prepared datasets: the same draws for both."""
    sample_rng = augmentation_generator(index)
    if dataset.transform == "random_crop":
        base = _random_crop(base, dataset.resolution, sample_rng)
    tensor = to_tensor(base)
    if dataset.flip and bool(torch.rand((), generator=sample_rng) < 0.5):
        tensor = tensor.flip(-1)
    if mask is None:
        generator = torch.Generator().manual_seed(dataset.seed + index) if dataset.fixed_masks else sample_rng
        mask = _draw_mask(dataset.masks, dataset.resolution, generator, index)
    validate_mask(mask, tensor)
    return {"image": tensor, "mask": mask, "name": name}


class TensorCropDataset(Dataset):
    """Crops of in-memory photographs (``(3, H, W)`` tensors in [-1, 1]) with generated masks.

    Args:
        images: Source images; with random crops they should have a short side of at least
            ``max_scale * resolution``.
        resolution: Crop size.
        masks: Mask generator.
        crops: Either ``None`` (random crops, ``length`` samples per epoch, crops and masks from the sample's generator,
            :func:`common.data.resumable.augmentation_generator`) or a list of
            fixed ``(image index, top, left)`` crops of side ``resolution`` (mask ``i`` drawn with seed
            ``seed + i``).
        length: Samples per epoch for random crops.
        names: Names of the source images (sample names are ``<name>_<top>_<left>``).
        seed: Base seed of the fixed masks.
        max_scale: Random crops take a square of side ``s * resolution``, ``s`` log-uniform in ``[1, max_scale]``
            (multi-scale training), resized (antialiased bilinear) to ``resolution``.
        augmentation: Applied to every random crop (default: horizontal flips only).
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
        max_scale: float = 1.0,
        augmentation: Augmentation | None = None,
    ) -> None:
        if max_scale < 1:
            raise ValueError(f"max_scale must be >= 1, got {max_scale}")
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
        self.max_scale = max_scale
        self.augmentation = augmentation if augmentation is not None else Augmentation(geometric=False, colour=False)

    def __len__(self) -> int:
        return self.length

    def _random_crop(self, g: torch.Generator | None) -> tuple[Tensor, str]:
        k = int(torch.randint(len(self.images), (), generator=g))
        image = self.images[k]
        height, width = image.shape[-2:]
        scale = float(torch.empty(()).uniform_(0.0, float(np.log(self.max_scale)), generator=g).exp())
        side = min(round(scale * self.resolution), height, width)
        top = int(torch.randint(height - side + 1, (), generator=g))
        left = int(torch.randint(width - side + 1, (), generator=g))
        crop = image[:, top : top + side, left : left + side]
        if side != self.resolution:
            size = (self.resolution, self.resolution)
            crop = F.interpolate(crop[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        return self.augmentation(crop.clamp(-1, 1), g), f"{self.names[k]}_{top}_{left}"

    def __getitem__(self, index: int) -> dict:
        size = self.resolution
        if self.crops is None:
            sample_rng = augmentation_generator(index)
            image, name = self._random_crop(sample_rng)
            mask = _draw_mask(self.masks, size, sample_rng, index)
        else:
            k, top, left = self.crops[index]
            image = self.images[k][:, top : top + size, left : left + size].contiguous()
            name = f"{self.names[k]}_{top}_{left}"
            mask = _draw_mask(self.masks, size, torch.Generator().manual_seed(self.seed + index), index)
        return {"image": image, "mask": mask, "name": name}


class PredictFolderDataset(Dataset):
    """Images of any size with masks of the same size from another folder, matched by file stem.

    Args:
        image_root: Folder of images.
        mask_root: Folder of masks (:data:`common.data.mask_files.MASK_FILE_ENCODING`: white, or 1 in a 0/1 file, =
            missing unless ``invert_masks``); colour masks and grey masks whose hole is not above half of full scale
            (e.g. 100 of 255) are refused with an error naming the file, an all-black mask is warned about (its
            output is its input).
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
        if not mask.any():
            warnings.warn(
                f"mask {mask_path} marks no pixel missing (all black): the output for {path.name} is its input",
                stacklevel=2,
            )
        return {"image": image, "mask": mask, "name": path.stem}
