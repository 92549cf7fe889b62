"""Helpers of the an_inpaint tests: tiny models and real image-file trees in the Paris StreetView layout."""

from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from an_inpaint.critics import GlobalCritic, LocalCritic
from an_inpaint.generator import InpaintGenerator
from an_inpaint.module import ANInpaint
from common.data.inpainting_demo import DemoInpaintingDataModule
from common.data.masks import RandomRectangleMasks
from common.layers import AttentiveNorm2d

SMALL_PHOTOS = {"train": ["astronaut", "coffee"], "val": ["chelsea"], "test": ["flower"]}


def write_paris_tree(root: Path, n_train: int = 5, n_eval: int = 3) -> Path:
    """Paris StreetView layout with real files: 936x537 training JPGs and 227x227 ``NNN_im.png`` test images."""
    photo = Image.fromarray(skdata.coffee())
    (root / "paris_train_original").mkdir(parents=True)
    (root / "paris_eval_gt").mkdir(parents=True)
    for i in range(n_train):
        photo.rotate(5 * i).resize((936, 537)).save(root / "paris_train_original" / f"{10 + i}_{700 + i}.JPG")
    for i in range(n_eval):
        photo.crop((30 * i, 0, 30 * i + 400, 400)).resize((227, 227)).save(
            root / "paris_eval_gt" / f"{i + 1:03d}_im.png"
        )
    return root


def write_image_mask_folders(root: Path, sizes=((45, 61), (40, 40))) -> tuple[Path, Path]:
    """A folder of real PNG photographs of odd sizes and a folder of same-named rectangle masks."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    photo = skdata.astronaut()
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(photo[100 + 10 * i : 100 + 10 * i + h, 150 : 150 + w]).save(images / f"img{i}.png")
        m = np.zeros((h, w), np.uint8)
        m[h // 4 : h // 2 + 3, w // 3 : w // 3 + 12] = 255
        Image.fromarray(m).save(masks / f"img{i}.png")
    return images, masks


def tiny_model(size: int = 32, **kwargs) -> ANInpaint:
    return ANInpaint(
        generator=InpaintGenerator(cnum=4, long_range=partial(AttentiveNorm2d, num_entities=4)),
        global_critic=GlobalCritic(input_size=size, cnum=4),
        local_critic=LocalCritic(input_size=16, cnum=4),
        **kwargs,
    )


def tiny_demo_data(**kwargs) -> DemoInpaintingDataModule:
    """The demo DataModule at 32x32 on a few photographs (fast to set up), DeepFill's rectangles for training."""
    options = {"resolution": 32, "batch_size": 2, "train_samples_per_epoch": 32, "num_eval_crops": 2}
    options.setdefault("train_masks", RandomRectangleMasks())
    options.update(kwargs)
    options.setdefault("photos", SMALL_PHOTOS)
    return DemoInpaintingDataModule(**options)
