"""Data shared by both tasks: image files, class-conditional and inpainting DataModules, inpainting masks.

Mask convention everywhere: 1 = missing (the hole), 0 = known (paper Section 4).
"""

from common.data.class_images import ClassFolderDataModule, ClassImageDataModule, DigitsDataModule
from common.data.imagenet import ImageNetDataModule
from common.data.images import CorruptImageError, center_crop_long_side, list_images, load_rgb, resize
from common.data.inpainting import (
    DemoInpaintingDataModule,
    ImageFolderInpaintingDataModule,
    ParisStreetViewDataModule,
    PredictFolderDataset,
)
from common.data.masks import (
    CenterSquareMasks,
    FolderMasks,
    FreeFormMasks,
    MaskGenerator,
    RandomRectangleMasks,
    mask_bbox,
    mask_bboxes,
    validate_mask,
)

__all__ = [
    "CenterSquareMasks",
    "ClassFolderDataModule",
    "ClassImageDataModule",
    "CorruptImageError",
    "DemoInpaintingDataModule",
    "DigitsDataModule",
    "FolderMasks",
    "FreeFormMasks",
    "ImageFolderInpaintingDataModule",
    "ImageNetDataModule",
    "MaskGenerator",
    "ParisStreetViewDataModule",
    "PredictFolderDataset",
    "RandomRectangleMasks",
    "center_crop_long_side",
    "list_images",
    "load_rgb",
    "mask_bbox",
    "mask_bboxes",
    "resize",
    "validate_mask",
]
