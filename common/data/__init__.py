"""Data shared by both tasks: image files, class-conditional and inpainting DataModules (raw and prepared for
streaming: ``common.data.prepare``, ``common.data.prepared``), inpainting masks.

Mask convention everywhere: 1 = missing (the hole), 0 = known (paper Section 4).
"""

from common.data.class_images import ClassFolderDataModule, ClassImageDataModule, DigitsDataModule
from common.data.distributed import EvalDistributedSampler, eval_sampler
from common.data.imagenet import ImageNetDataModule
from common.data.images import CorruptImageError, center_crop_long_side, list_images, load_rgb, resize
from common.data.inpainting import (
    ImageFolderInpaintingDataModule,
    InpaintingDataModule,
    ParisStreetViewDataModule,
)
from common.data.inpainting_datasets import Augmentation, InpaintingDataset, PredictFolderDataset, TensorCropDataset
from common.data.inpainting_demo import DEMO_PHOTOS, DemoInpaintingDataModule, load_demo_photo
from common.data.mask_files import FolderMasks
from common.data.mask_mixtures import AreaBinnedMasks, MixedMasks
from common.data.masks import (
    CenterSquareMasks,
    FreeFormMasks,
    MaskGenerator,
    RandomRectangleMasks,
    fixed_boxes,
    mask_bbox,
    mask_bboxes,
    validate_mask,
)
from common.data.prepared import PreparedImageNetDataModule, PreparedParisStreetViewDataModule

__all__ = [
    "DEMO_PHOTOS",
    "AreaBinnedMasks",
    "Augmentation",
    "CenterSquareMasks",
    "ClassFolderDataModule",
    "ClassImageDataModule",
    "CorruptImageError",
    "DemoInpaintingDataModule",
    "DigitsDataModule",
    "EvalDistributedSampler",
    "FolderMasks",
    "FreeFormMasks",
    "ImageFolderInpaintingDataModule",
    "ImageNetDataModule",
    "InpaintingDataModule",
    "InpaintingDataset",
    "MaskGenerator",
    "MixedMasks",
    "ParisStreetViewDataModule",
    "PredictFolderDataset",
    "PreparedImageNetDataModule",
    "PreparedParisStreetViewDataModule",
    "RandomRectangleMasks",
    "TensorCropDataset",
    "center_crop_long_side",
    "eval_sampler",
    "fixed_boxes",
    "list_images",
    "load_demo_photo",
    "load_rgb",
    "mask_bbox",
    "mask_bboxes",
    "resize",
    "validate_mask",
]
