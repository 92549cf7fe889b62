"""Inpainting DataModules on small trees of real image files (Paris StreetView layout), and the demo set: splits
(validation held out of training, test apart), evaluation resize filters, binned free-form test masks."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from common.data.images import CorruptImageError
from common.data.inpainting import (
    ImageFolderInpaintingDataModule,
    ParisStreetViewDataModule,
    held_out_split,
    paris_validation_split,
)
from common.data.inpainting_datasets import InpaintingDataset, PredictFolderDataset, eval_resize
from common.data.inpainting_demo import DEMO_PHOTOS, DemoInpaintingDataModule
from common.data.mask_mixtures import AreaBinnedMasks
from common.data.masks import CenterSquareMasks, RandomRectangleMasks


def write_paris_tree(root: Path, n_train: int = 4, n_eval: int = 3, nested: bool = False) -> Path:
    """Paris StreetView layout with real JPEG/PNG files: 936x537 training JPGs and 227x227 ``NNN_im.png``."""
    photo = Image.fromarray(skdata.coffee())
    train = root / "paris_train_original"
    evaluation = root / ("paris_eval/paris_eval_gt" if nested else "paris_eval_gt")
    train.mkdir(parents=True)
    evaluation.mkdir(parents=True)
    for i in range(n_train):
        photo.rotate(7 * i).resize((936, 537)).save(train / f"{48 + i}_{1000 + i}.JPG", quality=90)
    for i in range(n_eval):
        photo.crop((40 * i, 0, 40 * i + 400, 400)).resize((227, 227)).save(evaluation / f"{i + 1:03d}_im.png")
    return root


def _check_batch(batch, batch_size, size):
    assert batch["image"].shape == (batch_size, 3, size, size)
    assert batch["mask"].shape == (batch_size, 1, size, size)
    assert batch["image"].min() >= -1
    assert batch["image"].max() <= 1
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    assert len(batch["name"]) == batch_size


class TestParisStreetView:
    @pytest.mark.parametrize("nested", [False, True])
    def test_train_val_test_splits(self, tmp_path, nested):
        root = write_paris_tree(tmp_path, n_train=6, nested=nested)
        dm = ParisStreetViewDataModule(str(root), resolution=64, batch_size=2, num_workers=0, val_images=2)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        _check_batch(batch, 2, 64)
        assert (batch["mask"].flatten(1).sum(1) > 0).all()
        # Validation: 2 training images held out (fixed by name and seed), never trained on; no test images.
        train_names = {p.stem for p in dm.train_set.paths}
        val_names = {p.stem for p in dm.val_set.paths}
        assert len(train_names) == 4 and len(val_names) == 2 and not train_names & val_names
        assert all(not name.endswith("_im") for name in val_names)
        _, held = paris_validation_split(root / "paris_train_original", 2)
        assert {p.stem for p in held} == val_names
        val = next(iter(dm.val_dataloader()))
        _check_batch(val, 2, 64)
        expected = torch.zeros(1, 64, 64)
        expected[:, 16:48, 16:48] = 1  # the centre hole
        assert torch.equal(val["mask"][0], expected) and torch.equal(val["mask"][1], expected)
        assert dm.test_set is None  # fit never builds the test split
        # Test: the paris_eval_gt images only.
        dm.setup("test")
        test = next(iter(dm.test_dataloader()))
        assert test["name"] == ["001_im", "002_im"]
        torch.testing.assert_close(next(iter(dm.test_dataloader()))["image"], test["image"])

    def test_train_crops_are_crops(self, tmp_path):
        root = write_paris_tree(tmp_path, n_train=2)
        dm = ParisStreetViewDataModule(str(root), resolution=256, batch_size=1, num_workers=0, flip=False, val_images=1)
        dm.setup("fit")
        sample = dm.train_set[0]["image"]
        path = dm.train_set.paths[0]
        full = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1
        # The crop appears verbatim somewhere in the 936x537 image.
        candidates = torch.nonzero((full == sample[:, :1, :1]).all(0))
        assert any(
            torch.equal(full[:, t : t + 256, left : left + 256], sample)
            for t, left in candidates.tolist()
            if t + 256 <= 537 and left + 256 <= 936
        )
        dm_resize = ParisStreetViewDataModule(
            str(root), resolution=64, train_transform="resize", num_workers=0, val_images=1
        )
        dm_resize.setup("fit")
        assert dm_resize.train_set[0]["image"].shape == (3, 64, 64)

    def test_missing_root_says_how_to_get_it(self, tmp_path):
        dm = ParisStreetViewDataModule(str(tmp_path / "paris"), num_workers=0)
        with pytest.raises(FileNotFoundError, match="on request only") as err:
            dm.setup("fit")
        assert "paris_train_original/*.JPG" in str(err.value)

    def test_wrong_layout(self, tmp_path):
        (tmp_path / "paris_train_original").mkdir()
        with pytest.raises(FileNotFoundError, match="wrong layout: missing .*paris_eval_gt"):
            ParisStreetViewDataModule(str(tmp_path), num_workers=0).setup("fit")

    def test_no_images(self, tmp_path):
        root = write_paris_tree(tmp_path)
        for f in (root / "paris_train_original").iterdir():
            f.unlink()
        with pytest.raises(ValueError, match="no image files"):
            ParisStreetViewDataModule(str(root), num_workers=0).setup("fit")
        root1 = write_paris_tree(tmp_path / "c", n_train=3)
        with pytest.raises(ValueError, match="cannot hold out 100 validation image"):
            ParisStreetViewDataModule(str(root1), num_workers=0).setup("fit")
        root2 = write_paris_tree(tmp_path / "b")
        for f in (root2 / "paris_eval_gt").iterdir():
            f.rename(f.with_name(f.name.replace("_im", "_gt")))
        with pytest.raises(ValueError, match=r"_im\.png"):
            ParisStreetViewDataModule(str(root2), num_workers=0, val_images=1).setup("test")

    def test_corrupt_image(self, tmp_path):
        root = write_paris_tree(tmp_path, n_train=2)
        dm = ParisStreetViewDataModule(str(root), resolution=64, num_workers=0, val_images=1)
        dm.setup("fit")
        bad = dm.train_set.paths[0]
        bad.write_bytes(bad.read_bytes()[:200])
        with pytest.raises(CorruptImageError, match=bad.name):
            dm.train_set[0]


class TestImageFolder:
    def test_with_mask_folder(self, tmp_path):
        root = write_paris_tree(tmp_path)
        masks = tmp_path / "masks"
        masks.mkdir()
        for i in range(3):  # masks at the working resolution (32) are used as they are
            m = np.zeros((32, 32), np.uint8)
            m[3 * i : 3 * i + 12, 6:19] = 255
            Image.fromarray(m).save(masks / f"{i + 1:03d}_im.png")
        dm = ImageFolderInpaintingDataModule(
            str(root / "paris_train_original"),
            val_root=str(root / "paris_eval_gt"),
            resolution=32,
            batch_size=3,
            num_workers=0,
            train_masks=RandomRectangleMasks(),
            val_mask_root=str(masks),
        )
        dm.setup("fit")
        _check_batch(next(iter(dm.train_dataloader())), 3, 32)
        val = next(iter(dm.val_dataloader()))
        _check_batch(val, 3, 32)
        assert val["mask"][0, 0, 0:12, 6:19].eq(1).all()
        assert val["mask"][0, 0, 14:, :].eq(0).all()

    def test_mask_name_mismatch(self, tmp_path):
        root = write_paris_tree(tmp_path)
        masks = tmp_path / "masks"
        masks.mkdir()
        Image.fromarray(np.full((8, 8), 255, np.uint8)).save(masks / "other.png")
        dm = ImageFolderInpaintingDataModule(
            str(root / "paris_train_original"), val_root=str(root / "paris_eval_gt"), val_mask_root=str(masks),
            num_workers=0,
        )  # fmt: skip
        with pytest.raises(ValueError, match="no mask of the same name.*001_im.png"):
            dm.setup("validate")

    def test_val_split_held_out_and_test_root(self, tmp_path):
        root = write_paris_tree(tmp_path, n_train=5)
        dm = ImageFolderInpaintingDataModule(
            str(root / "paris_train_original"), test_root=str(root / "paris_eval_gt"), val_split=2, resolution=32,
            num_workers=0,
        )  # fmt: skip
        dm.setup("fit")
        train, val = {p.name for p in dm.train_set.paths}, {p.name for p in dm.val_set.paths}
        assert len(train) == 3 and len(val) == 2 and not train & val
        assert val == {p.name for p in held_out_split(list((root / "paris_train_original").iterdir()), 2)[1]}
        dm.setup("test")
        assert len(dm.test_set) == 3
        with pytest.raises(ValueError, match="val_root .* or val_split"):
            ImageFolderInpaintingDataModule(str(root / "paris_train_original"))


class TestPredictFolder:
    def test_sizes_and_errors(self, tmp_path):
        images, masks = tmp_path / "images", tmp_path / "masks"
        images.mkdir()
        masks.mkdir()
        Image.fromarray(skdata.chelsea()[:45, :61]).save(images / "cat.png")
        m = np.zeros((45, 61), np.uint8)
        m[5:20, 7:30] = 255
        Image.fromarray(m).save(masks / "cat.png")
        sample = PredictFolderDataset(images, masks)[0]
        assert sample["image"].shape == (3, 45, 61)
        assert sample["mask"].sum() == 15 * 23
        Image.fromarray(m[:40]).save(masks / "cat.png")
        with pytest.raises(ValueError, match="mask cat.png for image cat.png: mask of size 40x61 does not match"):
            PredictFolderDataset(images, masks)[0]
        Image.fromarray(skdata.chelsea()[:8, :8]).save(images / "dog.png")
        with pytest.raises(ValueError, match="no mask of the same name.*dog.png"):
            PredictFolderDataset(images, masks)

    def test_masks_it_would_misread_are_refused(self, tmp_path):
        # A hole of grey level 100 or a pure red hole used to read as "no hole": predict gave output = input silently.
        images, masks = tmp_path / "images", tmp_path / "masks"
        images.mkdir()
        masks.mkdir()
        Image.fromarray(skdata.chelsea()[:16, :16]).save(images / "cat.png")
        grey = np.zeros((16, 16), np.uint8)
        grey[4:10, 4:10] = 100
        Image.fromarray(grey).save(masks / "cat.png")
        with pytest.raises(ValueError, match=r"cat\.png: its brightest grey level is 100 of 255.*255\) = missing"):
            PredictFolderDataset(images, masks)[0]
        red = np.zeros((16, 16, 3), np.uint8)
        red[4:10, 4:10, 0] = 255
        Image.fromarray(red).save(masks / "cat.png")
        with pytest.raises(ValueError, match=r"cat\.png is a colour image.*black \(0\) = known"):
            PredictFolderDataset(images, masks)[0]
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(masks / "cat.png")
        with pytest.warns(UserWarning, match=r"cat\.png marks no pixel missing.*output for cat\.png is its input"):
            sample = PredictFolderDataset(images, masks)[0]
        assert not sample["mask"].any()
        for hole in (255, 200, 1):  # white, light grey, a 0/1 file: read as holes
            grey[4:10, 4:10] = hole
            Image.fromarray(grey).save(masks / "cat.png")
            assert PredictFolderDataset(images, masks)[0]["mask"].sum() == 36, hole


class TestDemo:
    def test_demo_splits(self):
        small = {"train": ["coffee", "moon"], "val": ["chelsea"], "test": ["grace_hopper"]}
        dm = DemoInpaintingDataModule(
            resolution=32, batch_size=4, train_samples_per_epoch=8, num_eval_crops=3, photos=small
        )
        dm.setup("fit")
        assert len(dm.train_set) == 8 and len(dm.val_set) == 3
        batch = next(iter(dm.train_dataloader()))
        _check_batch(batch, 4, 32)
        val = next(iter(dm.val_dataloader()))
        _check_batch(val, 3, 32)
        assert all(name.startswith("chelsea_") for name in val["name"])
        assert torch.equal(val["mask"][0], CenterSquareMasks(0.5)(32, 32))
        torch.testing.assert_close(next(iter(dm.val_dataloader()))["image"], val["image"])  # fixed crops
        train_names = {dm.train_set[i]["name"].rsplit("_", 2)[0] for i in range(8)}
        assert train_names <= {"coffee", "moon"}
        dm.setup("test")
        assert all(dm.test_set[i]["name"].startswith("grace_hopper_") for i in range(3))

    def test_the_named_photographs(self):
        train, val, test = (set(DEMO_PHOTOS[k]) for k in ("train", "val", "test"))
        assert len(train) >= 10 and not train & val and not train & test and not val & test
        dm = DemoInpaintingDataModule(resolution=32, num_eval_crops=1)
        dm.setup("test")
        assert [dm.val_set[i]["name"].rsplit("_", 2)[0] for i in range(2)] == ["chelsea", "flower"]
        assert [dm.test_set[i]["name"].rsplit("_", 2)[0] for i in range(2)] == ["motorcycle_left", "grace_hopper"]

    def test_exception(self):
        with pytest.raises(ValueError, match="divisible by 8"):
            DemoInpaintingDataModule(resolution=30)
        with pytest.raises(ValueError, match="training split and an evaluation split"):
            DemoInpaintingDataModule(photos={"train": ["chelsea"]})
        with pytest.raises(ValueError, match="unknown demo photograph"):
            DemoInpaintingDataModule(photos={"val": ["lena"]})
        with pytest.raises(ValueError, match="predict_root"):
            DemoInpaintingDataModule().setup("predict")


def test_eval_resize_filters():
    from PIL import Image as PILImage

    photo = PILImage.fromarray(skdata.coffee()[:227, 100:327])
    bilinear = eval_resize(photo, 256, "bilinear")
    assert np.array_equal(bilinear, cv2.resize(np.asarray(photo), (256, 256), interpolation=cv2.INTER_LINEAR))
    lanczos = eval_resize(photo, 256, "lanczos")
    assert np.array_equal(lanczos, np.asarray(photo.resize((256, 256), PILImage.Resampling.LANCZOS)))
    assert np.abs(bilinear.astype(int) - lanczos).mean() > 0.5  # the choice changes the pixels
    with pytest.raises(ValueError, match="eval resize"):
        eval_resize(photo, 256, "bicubic")


def test_binned_free_form_test_masks(tmp_path):
    root = write_paris_tree(tmp_path, n_train=2, n_eval=6)
    dm = ParisStreetViewDataModule(
        str(root), resolution=64, num_workers=0, val_images=1, test_masks=AreaBinnedMasks(bins=[0.1, 0.2, 0.3, 0.4])
    )
    dm.setup("test")
    areas = [float(dm.test_set[i]["mask"].mean()) for i in range(6)]
    for i, area in enumerate(areas):
        low, high = [(0.1, 0.2), (0.2, 0.3), (0.3, 0.4)][i % 3]
        assert low <= area < high, (i, area)
    assert areas == [float(dm.test_set[i]["mask"].mean()) for i in range(6)]  # fixed: seeded per image


def test_mask_files_follow_the_image_crop(tmp_path):
    """A non-square image and its same-size mask: the hole stays where it is in the image after crop + resize."""
    from common.data.mask_files import FolderMasks

    (tmp_path / "img").mkdir()
    (tmp_path / "masks").mkdir()
    image = np.zeros((64, 128, 3), np.uint8)
    image[16:32, 64:80] = 255  # a white square inside the centre crop (columns 32..95)
    Image.fromarray(image).save(tmp_path / "img" / "a.png")
    hole = np.zeros((64, 128), np.uint8)
    hole[16:32, 64:80] = 255
    Image.fromarray(hole).save(tmp_path / "masks" / "a.png")
    data = InpaintingDataset(
        [tmp_path / "img" / "a.png"], 32, "resize", mask_folder=FolderMasks(str(tmp_path / "masks")), fixed_masks=True
    )
    item = data[0]
    white = item["image"].mean(0) > 0
    assert torch.equal(white, item["mask"][0] > 0.5)

    Image.fromarray(hole[:, :64]).save(tmp_path / "masks" / "a.png")  # wrong size
    with pytest.raises(ValueError, match="mask a is 64x64 but its image is 128x64"):
        data[0]
