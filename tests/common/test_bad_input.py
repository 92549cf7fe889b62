"""Bad input, one test per case, through the tasks' real data paths: image modes other than RGB are converted (not
crashed), a truncated image in a training set is an error naming the file, a config with an unknown key or a
value of the wrong type is refused naming it. (Missing / empty folders, wrong layouts, corrupt files and bad masks:
``test_class_data.py``, ``test_inpainting_data.py``, ``test_masks.py``; unwritable output and a full disk:
``test_cli_base.py``, ``test_checkpoint_io.py``; another task's checkpoint: ``test_checkpoint_compat.py``.)"""

import io

import numpy as np
import pytest
from PIL import Image

from an_gan.cli import cli_main as gan_cli
from an_inpaint.cli import cli_main as inpaint_cli
from common.data.imagenet import ImageNetDataModule
from common.data.images import CorruptImageError, load_rgb, to_rgb
from common.data.inpainting import ImageFolderInpaintingDataModule

WNIDS = ["n01440764", "n01443537"]


def _odd_images(rng) -> dict[str, Image.Image]:
    rgb = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((40, 48, 1), 255, np.uint8)], axis=2)
    rgba[:10, :, 3] = 0  # a transparent band
    return {
        "gray.png": Image.fromarray(rgb[..., 0]),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "rgba.png": Image.fromarray(rgba),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "gray16.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
    }


def test_modes_are_converted_to_rgb(tmp_path):
    rng = np.random.default_rng(0)
    for name, img in _odd_images(rng).items():
        img.save(tmp_path / name)
        out = load_rgb(tmp_path / name)
        assert out.mode == "RGB" and out.size == (48, 40), name
    rgba = np.asarray(load_rgb(tmp_path / "rgba.png"))
    assert (rgba[:10] == 255).all()  # transparent pixels over white, not their stored colour
    gray = np.asarray(load_rgb(tmp_path / "gray16.png"))
    assert np.array_equal(gray[..., 0], gray[..., 2])
    assert np.abs(gray[..., 0].astype(int) - np.asarray(Image.open(tmp_path / "gray.png"), dtype=int)).max() <= 1
    assert to_rgb(Image.new("RGB", (2, 2))).mode == "RGB"


def test_odd_modes_in_an_imagenet_tree_and_an_inpainting_folder(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for wnid in WNIDS:
            folder = root / split / wnid
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{wnid}_0.JPEG")
    odd = _odd_images(rng)
    odd["cmyk.jpg"].save(root / "train" / WNIDS[0] / "cmyk.JPEG")
    odd["gray.png"].convert("L").save(root / "train" / WNIDS[0] / "gray.JPEG")
    odd["rgba.png"].save(root / "train" / WNIDS[1] / "rgba.png")
    data = ImageNetDataModule(str(root), resolution=16, batch_size=2, num_workers=0)
    train = data.dataset("train")
    items = [train[i] for i in range(len(train))]
    assert len(items) == 5 and all(item["image"].shape == (3, 16, 16) for item in items)

    images = tmp_path / "photos"
    images.mkdir()
    for name, img in odd.items():
        img.resize((64, 64)).save(images / name)
    inpaint = ImageFolderInpaintingDataModule(
        train_root=str(images), resolution=32, batch_size=2, num_workers=0, val_split=1
    )
    inpaint.setup("fit")
    batch = next(iter(inpaint.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["mask"].shape == (2, 1, 32, 32)


def test_truncated_image_in_a_training_set_names_the_file(tmp_path):
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for wnid in WNIDS:
            folder = root / split / wnid
            folder.mkdir(parents=True)
            buffer = io.BytesIO()
            Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(buffer, format="JPEG")
            (folder / f"{wnid}_0.JPEG").write_bytes(buffer.getvalue())
    good = (root / "train" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG").read_bytes()
    (root / "train" / WNIDS[1] / "cut.JPEG").write_bytes(good[: len(good) // 2])  # truncated mid-scan
    data = ImageNetDataModule(str(root), resolution=16, batch_size=3, num_workers=0)
    with pytest.raises(CorruptImageError, match=r"cut\.JPEG"):
        list(data.train_dataloader())


@pytest.mark.parametrize(
    ("cli", "arg", "message"),
    [
        (gan_cli, "--model.no_such_option=1", "no_such_option"),
        (gan_cli, "--model.n_dis=three", "n_dis"),
        (gan_cli, "--trainer.max_steps=many", "max_steps"),
        (inpaint_cli, "--model.no_such_option=1", "no_such_option"),
        (inpaint_cli, "--model.n_critic=five", "n_critic"),
    ],
)
def test_config_errors_name_the_key(cli, arg, message, capsys):
    with pytest.raises(SystemExit):
        cli(["fit", "--print_config", arg])
    assert message in capsys.readouterr().err
