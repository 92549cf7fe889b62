"""Tests for the class-conditional DataModules on small trees of real image files written under tmp_path."""

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from common.data.class_images import ClassFolderDataModule, DigitsDataModule
from common.data.imagenet import ImageNetDataModule
from common.data.images import CorruptImageError

# Deliberately not alphabetical in ILSVRC2012_ID order (like the real devkit).
WNIDS = ["n01440764", "n02102040", "n03000134"]
COLOURS = [(220, 20, 20), (20, 220, 20), (20, 20, 220)]  # class 0 red, 1 green, 2 blue
SIZES = [(50, 37), (37, 50), (64, 64), (80, 40)]


def write_image(path, size, colour, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt, quality=95)


def dominant_channel(images):
    return images.mean(dim=(2, 3)).argmax(dim=1)


def reference(dm, split, **kwargs):
    """All reference images and labels of a split, concatenated."""
    batches = list(dm.reference_dataloader(split, **kwargs))
    return torch.cat([b["image"] for b in batches]), torch.cat([b["label"] for b in batches])


def first_batch(loader):
    batch = next(iter(loader))
    return batch["image"], batch["label"]


@pytest.fixture
def imagenet_root(tmp_path):
    """ImageNet layout: train/<wnid>/*.JPEG (4 per class, varied sizes), val/<wnid>/*.JPEG (2 per class)."""
    root = tmp_path / "imagenet"
    for c, (wnid, colour) in enumerate(zip(WNIDS, COLOURS, strict=True)):
        for i, size in enumerate(SIZES):
            write_image(root / "train" / wnid / f"{wnid}_{i}.JPEG", size, colour)
        for i in range(2):
            write_image(root / "val" / wnid / f"ILSVRC2012_val_{c * 2 + i:08d}.JPEG", SIZES[i], colour)
    return root


def make_flat_val(root, order=(2, 0, 1, 1, 0, 2)):
    """Flat val/ with images of the given classes, in file-name order."""
    flat = root / "val_flat"
    for i, c in enumerate(order):
        write_image(flat / f"ILSVRC2012_val_{i + 1:08d}.JPEG", SIZES[i % 4], COLOURS[c])
    return flat, list(order)


def test_imagenet_class_folder_layout(imagenet_root):
    dm = ImageNetDataModule(str(imagenet_root), resolution=16, batch_size=4, num_workers=0)
    assert dm.num_classes == 3
    assert dm.class_names == sorted(WNIDS)
    assert dm.dataset_name == "imagenet"
    assert dm.resolution == 16
    dm.setup("fit")
    images, labels = first_batch(dm.train_dataloader())
    assert images.shape == (4, 3, 16, 16)
    assert images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert images.min() >= -1
    assert images.max() <= 1
    assert torch.equal(dominant_channel(images), labels)
    assert len(dm.train_dataloader()) == 3  # 12 images, batch 4, drop_last

    val_images, val_labels = reference(dm, "val")
    assert val_labels.tolist() == [0, 0, 1, 1, 2, 2]  # fixed order, all 6 images (no drop_last)
    assert torch.equal(dominant_channel(val_images), val_labels)
    assert torch.equal(reference(dm, "val")[0], val_images)
    assert torch.equal(reference(dm, "test")[1], val_labels)  # ImageNet's test split is its validation folder
    # validation / test are one evaluation step each: a placeholder item, not the images
    assert [b.tolist() for b in dm.val_dataloader()] == [[0]] == [b.tolist() for b in dm.test_dataloader()]


def test_reference_key_names_dataset_split_resolution_and_root(imagenet_root, tmp_path):
    dm = ImageNetDataModule(str(imagenet_root), resolution=16)
    key = dm.reference_key("val")
    assert key.startswith("imagenet_val_r16_")
    assert all(ch.isalnum() or ch in "._-" for ch in key)
    assert dm.reference_key("train") != key
    assert ImageNetDataModule(str(imagenet_root), resolution=32).reference_key("val") != key
    assert ImageNetDataModule(str(imagenet_root), resolution=16).reference_key("val") == key
    copy = tmp_path / "copy"
    (copy / "train").mkdir(parents=True)
    for wnid in WNIDS:
        write_image(copy / "train" / wnid / "a.JPEG", (8, 8), (0, 0, 0))
    assert ImageNetDataModule(str(copy), resolution=16).reference_key("val") != key
    assert dm.reference_key("test") != key  # same images, another name
    assert dm.reference_key("val", num_samples=4, seed=1) not in (key, dm.reference_key("val", num_samples=4))
    with pytest.raises(ValueError, match="unknown split"):
        dm.reference_key("valid")


def test_imagenet_flat_val_with_csv(imagenet_root):
    flat, order = make_flat_val(imagenet_root)
    csv = imagenet_root / "LOC_val_solution.csv"
    rows = ["ImageId,PredictionString"]
    # CSV rows in another order than the files, with box coordinates after the wnid, as in LOC_val_solution.csv
    for i in reversed(range(len(order))):
        rows.append(f"ILSVRC2012_val_{i + 1:08d},{WNIDS[order[i]]} 1 2 30 40 {WNIDS[order[i]]} 3 4 5 6")
    csv.write_text("\n".join(rows) + "\n")
    dm = ImageNetDataModule(str(imagenet_root), resolution=8, batch_size=2, num_workers=0, val_split="val_flat",
                            val_labels_file=str(csv))  # fmt: skip
    images, labels = reference(dm, "val")
    assert labels.tolist() == order
    assert torch.equal(dominant_channel(images), labels)


@pytest.mark.parametrize("synsets_format", ["txt", "mat"])
def test_imagenet_flat_val_with_devkit_ground_truth(imagenet_root, synsets_format):
    flat, order = make_flat_val(imagenet_root)
    # ILSVRC2012_ID order differs from alphabetical order: ID 1 -> WNIDS[2], ID 2 -> WNIDS[0], ID 3 -> WNIDS[1]
    id_order = [WNIDS[2], WNIDS[0], WNIDS[1]]
    ground_truth = imagenet_root / "ILSVRC2012_validation_ground_truth.txt"
    ground_truth.write_text("".join(f"{id_order.index(WNIDS[c]) + 1}\n" for c in order))
    if synsets_format == "txt":
        synsets = imagenet_root / "synsets.txt"
        synsets.write_text("".join(f"{w} some words, more words\n" for w in id_order))
    else:
        from scipy.io import savemat

        synsets = imagenet_root / "meta.mat"
        dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")]
        table = [(1, id_order[0], 0), (2, id_order[1], 0), (3, id_order[2], 0), (4, "n09999999", 2)]
        savemat(synsets, {"synsets": np.array(table, dtype=dtype)})
    dm = ImageNetDataModule(str(imagenet_root), resolution=8, batch_size=3, num_workers=0, val_split="val_flat",
                            val_labels_file=str(ground_truth), val_synsets_file=str(synsets))  # fmt: skip
    images, labels = reference(dm, "val")
    assert labels.tolist() == order
    assert torch.equal(dominant_channel(images), labels)


def test_devkit_ground_truth_needs_id_ordered_synsets(imagenet_root):
    make_flat_val(imagenet_root)
    ground_truth = imagenet_root / "ILSVRC2012_validation_ground_truth.txt"
    ground_truth.write_text("1\n2\n3\n1\n2\n3\n")
    kwargs = {"val_split": "val_flat", "val_labels_file": str(ground_truth)}
    with pytest.raises(ValueError, match="val_synsets_file"):
        ImageNetDataModule(str(imagenet_root), **kwargs).setup()
    alphabetical = imagenet_root / "LOC_synset_mapping.txt"
    alphabetical.write_text("".join(f"n{i:08d} words\n" for i in range(1000)))
    with pytest.raises(ValueError, match="alphabetical order"):
        ImageNetDataModule(str(imagenet_root), val_synsets_file=str(alphabetical), **kwargs).setup()
    ground_truth.write_text("1\n2\n3\n")
    synsets = imagenet_root / "synsets.txt"
    synsets.write_text("\n".join(WNIDS))
    with pytest.raises(ValueError, match="3 labels but .* 6 images"):
        ImageNetDataModule(str(imagenet_root), val_synsets_file=str(synsets), **kwargs).setup()


def test_imagenet_layout_errors(tmp_path, imagenet_root):
    with pytest.raises(FileNotFoundError, match=r"ImageNet root not found.*train/<wnid>/\*\.JPEG"):
        ImageNetDataModule(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no train/ folder"):
        ImageNetDataModule(str(tmp_path / "empty"))

    flat_train = tmp_path / "flat_train"
    for i in range(3):
        write_image(flat_train / "train" / f"img{i}.JPEG", (20, 20), COLOURS[0])
    with pytest.raises(ValueError, match="directly in .*label 0"):
        ImageNetDataModule(str(flat_train))

    nested = tmp_path / "nested"
    for wnid in WNIDS:
        write_image(nested / "train" / "ILSVRC" / wnid / "a.JPEG", (20, 20), COLOURS[0])
    with pytest.raises(ValueError, match="single folder 'ILSVRC' that itself holds 3 folders"):
        ImageNetDataModule(str(nested))

    one_class = tmp_path / "one_class"
    write_image(one_class / "train" / WNIDS[0] / "a.JPEG", (20, 20), COLOURS[0])
    with pytest.raises(ValueError, match="found 1 class folder.*at least 2"):
        ImageNetDataModule(str(one_class))

    (imagenet_root / "train" / "n04000000").mkdir()
    with pytest.raises(ValueError, match="n04000000 holds no images"):
        ImageNetDataModule(str(imagenet_root)).setup()


def test_imagenet_val_errors(imagenet_root):
    make_flat_val(imagenet_root)
    with pytest.raises(ValueError, match="flat folder of 6 images.*val_labels_file"):
        ImageNetDataModule(str(imagenet_root), val_split="val_flat").setup()
    csv = imagenet_root / "partial.csv"
    csv.write_text(f"ILSVRC2012_val_00000001,{WNIDS[0]}\n")
    with pytest.raises(ValueError, match="no label for 5 of the 6 images"):
        ImageNetDataModule(str(imagenet_root), val_split="val_flat", val_labels_file=str(csv)).setup()
    with pytest.raises(FileNotFoundError, match="validation folder not found"):
        ImageNetDataModule(str(imagenet_root), val_split="valid").setup()


def test_corrupt_image_raises_when_loaded(imagenet_root):
    bad = imagenet_root / "train" / WNIDS[1] / "broken.JPEG"
    bad.write_bytes(b"this is not a JPEG file" * 10)
    dm = ImageNetDataModule(str(imagenet_root), resolution=8, batch_size=2, num_workers=0)
    dataset = dm.dataset("train")
    index = [i for i in range(len(dataset)) if dataset.paths[i].decode().endswith("broken.JPEG")][0]
    with pytest.raises(CorruptImageError, match="broken.JPEG"):
        dataset[index]


def test_center_crop_on_long_side_and_flip_only_in_train(tmp_path):
    """A 90x30 image red | green | blue: the crop keeps the green middle; a 40x40 red | blue image shows flips."""
    root = tmp_path / "folders"
    thirds = np.zeros((30, 90, 3), np.uint8)
    thirds[:, :30, 0] = thirds[:, 30:60, 1] = thirds[:, 60:, 2] = 255
    (root / "a").mkdir(parents=True)
    Image.fromarray(thirds).save(root / "a" / "thirds.png")
    halves = np.zeros((40, 40, 3), np.uint8)
    halves[:, :20, 0] = halves[:, 20:, 2] = 255
    (root / "b").mkdir()
    for i in range(4):
        Image.fromarray(halves).save(root / "b" / f"halves{i}.png")
    Image.fromarray(halves).save(root / "a" / "halves.png")

    dm = ClassFolderDataModule(str(root), resolution=8, batch_size=2, num_workers=0, val_root=str(root))
    train, val = dm.dataset("train"), dm.dataset("val")
    names = [p.decode().rsplit("/", 1)[-1] for p in train.paths]
    crop = train[names.index("thirds.png")]["image"]
    expected_green = torch.tensor([-1.0, 1.0, -1.0]).view(3, 1, 1).expand(3, 8, 8)
    torch.testing.assert_close(crop, expected_green, atol=0.02, rtol=0)  # no red or blue left: long side cropped

    halves_index = names.index("halves0.png")
    torch.manual_seed(0)
    left_red = [bool(train[halves_index]["image"][0, :, 0].mean() > 0) for _ in range(40)]
    assert 5 < sum(left_red) < 35  # both orientations occur in training
    val_names = [p.decode().rsplit("/", 1)[-1] for p in val.paths]
    for _ in range(10):
        item = val[val_names.index("halves0.png")]
        image, label = item["image"], item["label"]
        assert image[0, :, 0].mean() > 0.9  # red stays left: no flip in validation
        assert image[2, :, -1].mean() > 0.9
        assert label.item() == 1
    images, _ = reference(dm, "train")
    assert len(images) == len(train)  # all images, no drop_last, no flip
    assert not torch.any((images[:, 2, :, 0] > 0.9) & (images[:, 0, :, 0] < -0.9))


def test_class_folder_split_is_deterministic_and_stratified(tmp_path):
    root = tmp_path / "folders"
    for c in range(3):
        for i in range(10):
            write_image(root / f"class{c}" / f"{i}.png", (12, 10), COLOURS[c])
    (root / "class0" / "notes.txt").write_text("not an image")

    def split(seed):
        dm = ClassFolderDataModule(str(root), resolution=8, batch_size=4, num_workers=0, val_fraction=0.2,
                                   split_seed=seed)  # fmt: skip
        return dm, sorted(p.decode() for p in dm.dataset("val").paths)

    dm, val_a = split(0)
    assert dm.class_names == ["class0", "class1", "class2"]
    assert dm.num_classes == 3
    assert dm.dataset_name == "folders"
    assert split(0)[1] == val_a
    assert split(1)[1] != val_a
    assert np.bincount(dm.dataset("val").labels).tolist() == [2, 2, 2]
    assert len(dm.dataset("train")) == 24
    assert not set(val_a) & {p.decode() for p in dm.dataset("train").paths}
    assert split(0)[0].reference_key("val") != split(1)[0].reference_key("val")
    images, labels = first_batch(dm.train_dataloader())
    assert images.shape == (4, 3, 8, 8)
    assert torch.equal(dominant_channel(images), labels)


def test_class_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="class-folder root not found"):
        ClassFolderDataModule(str(tmp_path / "missing"))
    root = tmp_path / "one"
    write_image(root / "only" / "a.png", (8, 8), COLOURS[0])
    with pytest.raises(ValueError, match="found 1 class folder"):
        ClassFolderDataModule(str(root))
    assert ClassFolderDataModule(str(root), min_classes=1, val_root=str(root)).num_classes == 1
    write_image(root / "other" / "a.jpg", (8, 8), COLOURS[1])
    with pytest.raises(ValueError, match="no images with extensions"):
        ClassFolderDataModule(str(root), extensions=[".png"]).setup()
    with pytest.raises(ValueError, match="unsupported extensions"):
        ClassFolderDataModule(str(root), extensions=[".gif"])
    with pytest.raises(ValueError, match="single image; pass val_root"):
        ClassFolderDataModule(str(root)).setup()
    val = tmp_path / "val"
    write_image(val / "stranger" / "a.png", (8, 8), COLOURS[1])
    with pytest.raises(ValueError, match="not in"):
        ClassFolderDataModule(str(root), val_root=str(val)).setup()
    with pytest.raises(ValueError, match="fewer than batch_size"):
        ClassFolderDataModule(str(root), val_root=str(root), batch_size=64).train_dataloader()


def test_digits_data():
    dm = DigitsDataModule(resolution=32, batch_size=64)
    assert dm.num_classes == 10
    assert dm.class_names == [str(d) for d in range(10)]
    assert dm.dataset_name == "digits"
    train, val, test = (dm.dataset(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (1437, 180, 180)
    everything = torch.cat([train.labels, val.labels, test.labels])
    assert everything.bincount().tolist() == np.bincount(load_digits().target).tolist()
    images, labels = first_batch(dm.train_dataloader())
    assert images.shape == (64, 3, 32, 32)
    assert labels.dtype == torch.int64
    assert images.min() >= -1
    assert images.max() <= 1
    assert images.min() == -1  # the digits' background is 0 -> -1
    assert torch.equal(images[:, 0], images[:, 2])  # grey replicated to 3 channels
    assert len(dm.train_dataloader()) == 1437 // 64
    assert not train.hflip
    assert DigitsDataModule(seed=0).dataset("val").labels.tolist() == val.labels.tolist()
    assert DigitsDataModule(seed=1).dataset("val").labels.tolist() != val.labels.tolist()

    dm64 = DigitsDataModule(resolution=64, batch_size=16)
    images64, _ = first_batch(dm64.reference_dataloader("val"))
    assert images64.shape == (16, 3, 64, 64)
    assert dm64.reference_key("val") != dm.reference_key("val")
    with pytest.raises(ValueError, match="val_fraction"):
        DigitsDataModule(val_fraction=1.5)
    with pytest.raises(ValueError, match="sum below 1"):
        DigitsDataModule(val_fraction=0.5, test_fraction=0.5)


def test_reference_subsets_classes_and_shards():
    dm = DigitsDataModule(resolution=8, batch_size=50)
    _, labels = reference(dm, "train")
    sevens, seven_labels = reference(dm, "train", classes=[7])
    assert set(seven_labels.tolist()) == {7} and len(seven_labels) == int((labels == 7).sum())
    assert torch.equal(sevens, dm.dataset("train").images[dm.dataset("train").labels == 7])  # dataset order
    subset = dm.reference_indices("train", num_samples=100, seed=3)
    assert len(subset) == 100 and list(subset) == sorted(subset)
    assert list(subset) == list(dm.reference_indices("train", num_samples=100, seed=3))
    assert list(subset) != list(dm.reference_indices("train", num_samples=100, seed=4))
    shards = [reference(dm, "train", num_samples=100, seed=3, shard=(r, 3))[1] for r in range(3)]
    assert [len(s) for s in shards] == [33, 33, 34]
    assert torch.equal(torch.cat(shards), labels[torch.from_numpy(subset)])  # contiguous shards in order
    with pytest.raises(ValueError, match="only 1437 images"):
        dm.reference_indices("train", num_samples=5000)


def test_digits_hflip_option_flips_training_images():
    dm = DigitsDataModule(resolution=16, hflip=True)
    train = dm.dataset("train")
    torch.manual_seed(0)
    draws = [train[0]["image"] for _ in range(20)]
    original = train.images[0]
    flipped = sum(torch.equal(d, original.flip(-1)) for d in draws)
    assert 0 < flipped < 20
    assert all(torch.equal(d, original) or torch.equal(d, original.flip(-1)) for d in draws)
