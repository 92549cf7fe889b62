"""Paris StreetView: validation at the test images' scale (``val_scale``) and the authors' centre-crop training data."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from common.data.inpainting import ParisStreetViewDataModule
from common.data.inpainting_datasets import InpaintingDataset
from common.data.masks import CenterSquareMasks


def _tree(root, n_train=3):
    """Training images of 936x537 holding test image 001 (227x227) at their centre, losslessly (PNG)."""
    photo = skdata.astronaut()
    test = Image.fromarray(photo[100:327, 150:377])
    (root / "paris_train_original").mkdir(parents=True)
    (root / "paris_eval_gt").mkdir(parents=True)
    test.save(root / "paris_eval_gt" / "001_im.png")
    for i in range(n_train):
        canvas = Image.fromarray(np.full((537, 936, 3), 40 * i, np.uint8))
        canvas.paste(test, ((936 - 227) // 2, (537 - 227) // 2))
        canvas.save(root / "paris_train_original" / f"{10 + i}_{700 + i}.png")
    return root


@pytest.mark.parametrize("resolution", [32, 256])
def test_validation_images_go_through_the_test_images_pipeline(tmp_path, resolution):
    root = _tree(tmp_path / "paris")
    dm = ParisStreetViewDataModule(str(root), resolution, batch_size=1, num_workers=0, val_images=1)
    dm.setup_splits(None)
    val, test = dm.val_set[0], dm.test_set[0]
    assert val["image"].shape == (3, resolution, resolution)
    torch.testing.assert_close(val["image"], test["image"], rtol=0, atol=0)  # one scale, one resize
    torch.testing.assert_close(val["mask"], test["mask"])
    # The former validation images (the whole 537 centre square, a 2.1x downscale) are at another scale.
    old = ParisStreetViewDataModule(str(root), resolution, batch_size=1, val_images=1, val_scale="square")
    old.setup_splits("validate")
    assert (old.val_set[0]["image"] - test["image"]).abs().mean() > 0.05


def test_val_scale_errors(tmp_path):
    root = _tree(tmp_path / "paris")
    paths = sorted((root / "paris_train_original").iterdir())
    with pytest.raises(ValueError, match="0 < crop <= 1"):
        InpaintingDataset(paths, 32, "resize", masks=CenterSquareMasks(0.5), crop=1.5)
    with pytest.raises(ValueError, match="needs transform='resize'"):
        InpaintingDataset(paths, 32, "random_crop", masks=CenterSquareMasks(0.5), crop=0.5)
    with pytest.raises(ValueError, match="val_scale must be"):
        ParisStreetViewDataModule(str(root), 32, val_scale="native")


def test_center_crop_training_is_the_authors_deterministic_crop(tmp_path):
    root = _tree(tmp_path / "paris")
    dm = ParisStreetViewDataModule(
        str(root), 64, batch_size=1, num_workers=0, val_images=1, train_transform="center_crop", flip=False
    )
    dm.setup_splits("fit")
    for i, path in enumerate(dm.train_set.paths):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        top, left = (537 - 64) // 2, (936 - 64) // 2
        expected = torch.from_numpy(pixels[top : top + 64, left : left + 64].copy()).permute(2, 0, 1).float()
        for _ in range(2):  # the same crop, unflipped, every time
            torch.testing.assert_close(dm.train_set[i]["image"], expected / 127.5 - 1.0)
    with pytest.raises(ValueError, match="'center_crop'"):
        InpaintingDataset(dm.train_set.paths, 64, "centre", masks=CenterSquareMasks(0.5))
