"""Prepared Paris StreetView: the raw DataModule's images, names, random crops, flips and masks, batch for batch."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from prepared_helpers import write_paris_tree

from an_inpaint.cli import cli_main
from common.data.inpainting import ParisStreetViewDataModule
from common.data.prepared import PreparedImageNetDataModule, PreparedParisStreetViewDataModule

RES = 48


@pytest.fixture(scope="module")
def paris(tmp_path_factory):
    base = tmp_path_factory.mktemp("paris")
    root = write_paris_tree(base / "raw")
    out = {}
    for transform in ("random_crop", "resize"):
        out[transform] = base / f"paris{RES}_{transform}"
        manifest = cli_main(["prepare", "--root", str(root), "--output", str(out[transform]), "--resolution", str(RES),
                             "--val_images", "1", "--train_transform", transform, "--num_workers", "2",
                             "--verbose", "false"])  # fmt: skip
        assert [manifest["splits"][s]["count"] for s in ("train", "val", "test")] == [4, 1, 3]
    return root, out


def _pair(paris, transform, stage, **kwargs):
    kwargs = {"batch_size": 2, "num_workers": 0, "val_images": 1, "train_transform": transform, **kwargs}
    raw = ParisStreetViewDataModule(str(paris[0]), RES, **kwargs)
    prepared = PreparedParisStreetViewDataModule(str(paris[1][transform]), RES, **kwargs)
    raw.setup(stage)
    prepared.setup(stage)
    return raw, prepared


def _assert_same(a, b):
    assert a["name"] == b["name"]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert b["image"].dtype == torch.float32 and b["mask"].shape[-3:] == (1, RES, RES)


@pytest.mark.parametrize("transform", ["random_crop", "resize"])
def test_training_batches_crops_flips_and_masks_equal_the_raw_datamodule(paris, transform):
    raw, prepared = _pair(paris, transform, "fit", num_workers=0)
    prepared.num_workers = 2  # the prepared loader in worker processes
    a, b = raw.train_dataloader(), prepared.train_dataloader()
    crops = set()
    for epoch in range(2):
        a.sampler.set_epoch(epoch)
        b.sampler.set_epoch(epoch)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
            crops.add(float(y["image"].sum()))
    assert len(crops) == 4  # 2 epochs x 2 batches, all different (new crops / flips / masks each epoch)


@pytest.mark.parametrize("transform", ["random_crop", "resize"])
def test_evaluation_splits_equal_the_raw_datamodule(paris, transform):
    for stage, loader in (("validate", "val_dataloader"), ("test", "test_dataloader")):
        raw, prepared = _pair(paris, transform, stage)
        for _ in range(2):  # fixed masks: the same every time
            for x, y in zip(getattr(raw, loader)(), getattr(prepared, loader)(), strict=True):
                _assert_same(x, y)
    raw, prepared = _pair(paris, transform, "predict", predict_split="test")
    assert [prepared.predict_set[i]["name"] for i in range(3)] == ["001_im", "002_im", "003_im"]


def test_stored_images_by_hand(paris):
    """Evaluation images are OpenCV's bilinear resize of the centre square; a training image smaller than a crop is
    stored upscaled (PIL bicubic) to a short side of the crop size; the others whole."""
    root, out = paris
    items = PreparedParisStreetViewDataModule(str(out["random_crop"]), RES, val_images=1)
    items.setup("test")
    with Image.open(root / "paris_eval_gt" / "002_im.png") as img:
        expected = cv2.resize(np.asarray(img.convert("RGB")), (RES, RES), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(items.test_set.items[1]["image"], expected)
    items.setup("fit")
    names = []
    for i in range(4):
        item = items.train_set.items[i]
        k = int(str(item["name"])[1])  # "1k_70k": width 120 + 4k, height 70; k = 1 is 50x40
        assert item["image"].shape == ((RES, 60, 3) if k == 1 else (70, 120 + 4 * k, 3))
        names.append(str(item["name"]))
    assert "11_701" in names  # the upscaled one is a training image


def test_settings_that_differ_from_the_prepared_ones_are_refused(paris):
    folder = str(paris[1]["random_crop"])
    for kwargs, message in [
        ({"train_transform": "resize"}, "train_transform='random_crop' but this DataModule asks for .*'resize'"),
        ({"eval_resize": "lanczos"}, "eval_resize='bilinear' but"),
        ({"val_images": 2}, "val_images=1 but this DataModule asks for val_images=2"),
        ({"resolution": 32}, "resolution=48 but"),
    ]:
        with pytest.raises(ValueError, match=message):
            PreparedParisStreetViewDataModule(folder, **{"resolution": RES, "val_images": 1, **kwargs})
    with pytest.raises(ValueError, match="holds prepared 'paris' data, not 'imagenet'"):
        PreparedImageNetDataModule(folder, RES)
