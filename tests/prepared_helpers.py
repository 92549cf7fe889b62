"""Small raw datasets of real image files in the exact layouts the raw DataModules read, for the prepared-data tests.

* :func:`write_imagenet_tree`: ``train/<wnid>/*.JPEG`` (landscape, portrait, grey-level and CMYK JPEGs of a few
  sizes) and a flat ``val/ILSVRC2012_val_*.JPEG`` with Kaggle's ``LOC_val_solution.csv`` labels.
* :func:`write_paris_tree`: ``paris_train_original/*.JPG`` and ``paris_eval_gt/NNN_im.png``, one training image
  smaller than the crop (the raw pipeline upscales it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

WNIDS = ["n01440764", "n01443537", "n01484850"]


def _photo_crop(photo: np.ndarray, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    top = int(rng.integers(0, photo.shape[0] - height))
    left = int(rng.integers(0, photo.shape[1] - width))
    return photo[top : top + height, left : left + width]


def write_imagenet_tree(root: Path, per_class: int = 4, val_per_class: int = 2) -> Path:
    """An ImageNet subset of real JPEG files (3 classes); returns ``root``."""
    rng = np.random.default_rng(0)
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()]
    sizes = [(40, 52), (57, 38), (45, 45), (33, 61)]  # (height, width): landscape, portrait, square, wide
    for c, wnid in enumerate(WNIDS):
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = Image.fromarray(_photo_crop(photos[c], rng, *sizes[i % len(sizes)]))
            if i == 1:
                img = img.convert("L")  # grey-level JPEG
            elif i == 2:
                img = img.convert("CMYK")  # CMYK JPEG
            img.save(folder / f"{wnid}_{i}.JPEG", quality=90)
    val = root / "val"
    val.mkdir()
    rows = ["ImageId,PredictionString"]
    number = 0
    for i in range(val_per_class):
        for c, wnid in enumerate(WNIDS[::-1]):  # labels not in file-name order
            number += 1
            name = f"ILSVRC2012_val_{number:08d}"
            Image.fromarray(_photo_crop(photos[2 - c], rng, *sizes[(i + c) % 4])).save(val / f"{name}.JPEG")
            rows.append(f"{name},{wnid} 1 2 3 4")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return root


def write_paris_tree(root: Path, n_train: int = 5, n_eval: int = 3) -> Path:
    """Paris StreetView layout with real files: small training JPGs (one of 50x40) and ``NNN_im.png`` test images."""
    photo = Image.fromarray(skdata.coffee())
    (root / "paris_train_original").mkdir(parents=True)
    (root / "paris_eval_gt").mkdir(parents=True)
    for i in range(n_train):
        size = (50, 40) if i == 1 else (120 + 4 * i, 70)
        photo.rotate(5 * i).resize(size).save(root / "paris_train_original" / f"{10 + i}_{700 + i}.JPG")
    for i in range(n_eval):
        photo.crop((30 * i, 0, 30 * i + 400, 400)).resize((57, 57)).save(root / "paris_eval_gt" / f"{i + 1:03d}_im.png")
    return root
