"""Prepared (streaming) data: prepare -> LitData -> the raw pipeline's pixels, labels, order and augmentation.

Raw trees of real image files in the exact layouts (tests/prepared_helpers.py); every comparison is by value against
the raw DataModule, plus one image computed by hand with PIL.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from prepared_helpers import WNIDS, write_imagenet_tree

from common.data.imagenet import ImageNetDataModule
from common.data.prepare import main as prepare_main
from common.data.prepare import prepare_imagenet
from common.data.prepared import PreparedImageNetDataModule
from common.data.resumable import SampleIndex
from common.data.streaming import StreamedItems, decode_image, encode_image, labels_from_runs, labels_to_runs

RES = 24


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """The raw tree and its prepared folders, one per encoding (2 preparation workers)."""
    base = tmp_path_factory.mktemp("prepared")
    root = write_imagenet_tree(base / "imagenet")
    labels = str(root / "LOC_val_solution.csv")
    out = {}
    for encoding in ("raw", "png", "jpeg"):
        out[encoding] = base / f"imagenet{RES}_{encoding}"
        prepare_imagenet(str(root), str(out[encoding]), RES, val_labels_file=labels, encoding=encoding,
                         num_workers=2, verbose=False)  # fmt: skip
    return root, labels, out


def _raw(imagenet, **kwargs):
    root, labels, _ = imagenet
    return ImageNetDataModule(str(root), RES, val_labels_file=labels, **{"batch_size": 4, "num_workers": 0, **kwargs})


def _prepared(imagenet, encoding="raw", **kwargs):
    return PreparedImageNetDataModule(str(imagenet[2][encoding]), RES, **{"batch_size": 4, "num_workers": 0, **kwargs})


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_lossless_prepared_items_equal_the_raw_pipeline(imagenet, encoding):
    raw, prepared = _raw(imagenet), _prepared(imagenet, encoding)
    assert prepared.class_names == raw.class_names == WNIDS and prepared.num_classes == 3
    for split in ("train", "val", "test"):
        a, b = raw.dataset(split), prepared.dataset(split)
        assert len(a) == len(b) == (12 if split == "train" else 6)
        np.testing.assert_array_equal(a.labels, b.labels)
        for i in range(len(a)):
            index = SampleIndex(i, epoch=1, seed=3)  # flips (train) drawn from the sample's own generator
            x, y = a[index], b[index]
            assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"]), (split, i)
            assert y["image"].dtype == torch.float32 and y["label"].dtype == torch.int64
            assert y["image"].shape == (3, RES, RES) and y["image"].min() >= -1 and y["image"].max() <= 1


def test_stored_image_is_the_centre_square_lanczos_resized_by_hand(imagenet):
    """An independent computation of the stored pixels: PIL by hand on a wide RGB JPEG."""
    raw = _raw(imagenet)
    train = raw.dataset("train")
    i = next(k for k in range(len(train)) if train.path(k).name.endswith("_3.JPEG"))
    with Image.open(train.path(i)) as img:
        img = img.convert("RGB")
        w, h = img.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        expected = np.asarray(img.crop(box).resize((RES, RES), Image.LANCZOS, reducing_gap=None))
    items = _prepared(imagenet).dataset("train").items
    np.testing.assert_array_equal(items[i]["image"], expected)
    assert items[i]["label"] == train.labels[i] and items[i]["index"] == i


def test_jpeg_encoding_is_close_but_lossy(imagenet):
    raw, lossy = _raw(imagenet).dataset("val"), _prepared(imagenet, "jpeg").dataset("val")
    diffs = [(raw[i]["image"] - lossy[i]["image"]).abs() * 127.5 for i in range(len(raw))]
    assert max(float(d.max()) for d in diffs) > 0  # lossy: not the raw pixels
    assert np.mean([float(d.mean()) for d in diffs]) < 4.0  # quality 95, 4:4:4: a few grey levels on average
    manifest = json.loads((imagenet[2]["jpeg"] / "manifest.json").read_text())
    assert (manifest["encoding"], manifest["jpeg_quality"]) == ("jpeg", 95)


def test_training_batches_and_flips_equal_the_raw_datamodule(imagenet):
    """Same seed -> the same order, the same flips, batch for batch, over two epochs; the prepared one with 2
    DataLoader workers (each opens its own StreamingDataset)."""
    raw = _raw(imagenet, hflip=True)
    prepared = _prepared(imagenet, hflip=True, num_workers=2)
    a, b = raw.train_dataloader(), prepared.train_dataloader()
    flips = 0
    for epoch in range(2):
        a.sampler.set_epoch(epoch)
        b.sampler.set_epoch(epoch)
        pairs = list(zip(a, b, strict=True))
        assert len(pairs) == 3
        for x, y in pairs:
            assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
        flat = _raw(imagenet, hflip=False).dataset("train")
        order = [int(i) for i in a.sampler.epoch_indices(epoch)[:12]]
        unflipped = torch.stack([flat[i]["image"] for i in order])
        seen = torch.cat([x["image"] for x, _ in pairs])
        flips += sum(not torch.equal(s, u) for s, u in zip(seen, unflipped, strict=True))
    assert 0 < flips < 24  # the flips really happen, on some images only


def test_reference_loaders_and_ddp_shards_see_every_image_once(imagenet):
    raw, prepared = _raw(imagenet), _prepared(imagenet)
    for kwargs in ({}, {"classes": [1]}, {"num_samples": 4, "seed": 2}):
        xs = torch.cat([b["image"] for b in raw.reference_dataloader("val", **kwargs)])
        ys = torch.cat([b["image"] for b in prepared.reference_dataloader("val", **kwargs)])
        assert torch.equal(xs, ys), kwargs
    shards = [prepared.reference_dataloader("train", shard=(r, 2), batch_size=5) for r in range(2)]
    labels = torch.cat([b["label"] for shard in shards for b in shard])
    np.testing.assert_array_equal(labels.numpy(), raw.dataset("train").labels)  # each image exactly once
    key = prepared.reference_key
    assert key("test").rsplit("_", 1)[1] == key("val").rsplit("_", 1)[1]  # test is the validation images
    assert key("val") != raw.reference_key("val")  # its own cache of reference statistics


def test_remote_location_streams_through_the_litdata_cache(imagenet, tmp_path):
    """A ``local:`` URL takes LitData's download path (what s3:// and gs:// take), chunks cached in cache_dir."""
    url = f"local:{imagenet[2]['raw']}"
    remote = PreparedImageNetDataModule(url, RES, batch_size=4, num_workers=0, cache_dir=str(tmp_path / "cache"))
    local = _prepared(imagenet)
    for i in (0, 5, 11, 3):
        index = SampleIndex(i, epoch=0, seed=1)
        assert torch.equal(remote.dataset("train")[index]["image"], local.dataset("train")[index]["image"])
    assert any(p.name.endswith(".bin") for p in (tmp_path / "cache").rglob("*"))


def _copy(imagenet, tmp_path, edit=None):
    folder = tmp_path / "copy"
    shutil.copytree(imagenet[2]["raw"], folder)
    if edit is not None:
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_mismatching_or_broken_folders_are_refused(imagenet, tmp_path):
    with pytest.raises(ValueError, match="prepared with resolution=24 but this DataModule asks for resolution=32"):
        PreparedImageNetDataModule(str(imagenet[2]["raw"]), 32)
    with pytest.raises(FileNotFoundError, match="is not a prepared dataset"):
        PreparedImageNetDataModule(str(imagenet[0]), RES)  # the raw tree
    for edit, message in [
        (lambda m: m.update(dataset="paris"), "holds prepared 'paris' data, not 'imagenet'"),
        (lambda m: m.update(format_version=99), "format version 99, newer than this code reads"),
        (lambda m: m.update(litdata_version="99.0.0"), "written by litdata 99.0.0, newer than the installed"),
        (lambda m: m.update(encoding="webp"), "unknown encoding 'webp'"),
        (lambda m: m.update(format="other"), "is not a manifest"),
    ]:
        with pytest.raises(ValueError, match=message):
            PreparedImageNetDataModule(str(_copy(imagenet, tmp_path / message[:6], edit)), RES)
    counted = _copy(imagenet, tmp_path / "count", lambda m: m["splits"]["val"].update(count=5))
    with pytest.raises(ValueError, match="holds 6 samples but its manifest says 5"):
        PreparedImageNetDataModule(str(counted), RES).dataset("val")

    def relabel(m):
        m["splits"]["val"]["labels"] = labels_to_runs(np.roll(labels_from_runs(m["splits"]["val"]["labels"]), 1))

    relabelled = PreparedImageNetDataModule(str(_copy(imagenet, tmp_path / "labels", relabel)), RES)
    with pytest.raises(ValueError, match="is stored with label .* but the manifest says"):
        [relabelled.dataset("val")[i] for i in range(6)]


def test_out_of_order_split_is_refused(tmp_path):
    from litdata import optimize

    optimize(_reversed_item, list(range(4)), output_dir=str(tmp_path / "split"), chunk_bytes="1MB", num_workers=1,
             keep_data_ordered=True, reorder_files=False, start_method="fork", verbose=False)  # fmt: skip
    items = StreamedItems(str(tmp_path / "split"), 4)
    with pytest.raises(ValueError, match="sample 0 holds item 3; the split is out of order"):
        items[0]
    with pytest.raises(IndexError):
        items[4]


def _reversed_item(i):
    return {"index": 3 - i, "image": np.zeros((2, 2, 3), np.uint8), "label": 0}


def test_existing_output_needs_overwrite_and_cli_entry_points(imagenet, tmp_path, capsys):
    root, labels, _ = imagenet
    args = ["--root", str(root), "--output", str(tmp_path / "out"), "--resolution", "16", "--val_labels_file", labels,
            "--num_workers", "1", "--verbose", "false"]  # fmt: skip
    from an_gan.cli import cli_main

    manifest = cli_main(["prepare", *args])  # python -m an_gan prepare == common.data.prepare imagenet
    assert manifest["settings"] == {"resolution": 16} and manifest["splits"]["train"]["class_counts"] == [4, 4, 4]
    assert "train: 12 samples written" in capsys.readouterr().out  # progress
    with pytest.raises(FileExistsError, match="already holds prepared data"):
        prepare_main(["imagenet", *args])
    again = prepare_main(["imagenet", *args, "--overwrite", "true", "--encoding", "png"])
    assert again["encoding"] == "png"
    assert PreparedImageNetDataModule(str(tmp_path / "out"), 16).dataset("train")[0]["image"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="must be a local folder"):
        prepare_imagenet(str(root), "s3://bucket/x", 16, val_labels_file=labels)


def test_encodings_roundtrip():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for encoding in ("raw", "png"):
        np.testing.assert_array_equal(decode_image(encode_image(image, encoding), encoding), image)
    assert decode_image(encode_image(image, "jpeg"), "jpeg").shape == image.shape
    with pytest.raises(ValueError, match="unknown encoding"):
        encode_image(image, "webp")
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) image"):
        encode_image(image[..., 0], "raw")
    runs = labels_to_runs([2, 2, 0, 1, 1, 1])
    assert runs == [[2, 2], [0, 1], [1, 3]]
    np.testing.assert_array_equal(labels_from_runs(runs), [2, 2, 0, 1, 1, 1])
