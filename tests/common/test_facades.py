"""Procedural facades (the inpainting demo's data): deterministic per seed, disjoint splits, the DataModule's
batches, exact training resume, bad input."""

import numpy as np
import pytest
import torch

from common.data.facades import (
    SPLIT_SEEDS,
    FacadeDataset,
    FacadeInpaintingDataModule,
    facade_seed,
    render_facade,
)
from common.data.masks import CenterSquareMasks, RandomRectangleMasks
from common.data.resumable import SampleIndex

pytestmark = pytest.mark.timeout(60)


def test_render_is_deterministic_per_seed_and_differs_between_seeds():
    a, b = render_facade(7, 64), render_facade(7, 64)
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0
    others = [render_facade(s, 64) for s in range(8, 16)]
    assert all(np.abs(a - o).mean() > 0.02 for o in others)


def test_facades_repeat_along_rows_and_columns():
    """Long-range structure: the image correlates with itself shifted by one window period far more than with a
    shift of half a period (what a model can use to fill a hole from distant windows)."""
    peaks = []
    for seed in range(12):
        grey = render_facade(seed, 64).mean(-1)
        grey = grey - grey.mean()
        corr = [float((grey[:, : 64 - s] * grey[:, s:]).mean() / (grey**2).mean()) for s in range(4, 30)]
        peaks.append(max(corr) - min(corr))
    assert np.median(peaks) > 0.3


def test_split_seed_ranges_never_overlap():
    ranges = sorted(SPLIT_SEEDS.values())
    assert all(stop <= start for (_, stop), (start, _) in zip(ranges, ranges[1:], strict=False))
    assert facade_seed("val", 0) == SPLIT_SEEDS["val"][0] and facade_seed("test", 5) == SPLIT_SEEDS["test"][0] + 5
    train = FacadeDataset("train", 64, 32, RandomRectangleMasks())
    seeds = {train.seed(i, torch.Generator().manual_seed(i)) for i in range(500)}
    start, stop = SPLIT_SEEDS["train"]
    assert all(start <= s < stop for s in seeds) and len(seeds) == 500
    val = FacadeDataset("val", 10, 32, CenterSquareMasks())
    test = FacadeDataset("test", 10, 32, CenterSquareMasks())
    names = [val[i]["name"] for i in range(10)] + [test[i]["name"] for i in range(10)]
    assert len(set(names)) == 20


def test_datamodule_batches_and_fixed_evaluation_samples():
    dm = FacadeInpaintingDataModule(resolution=32, batch_size=4, num_val=6, num_test=5, train_samples_per_epoch=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    assert float(batch["image"].min()) >= -1.0 and float(batch["image"].max()) <= 1.0
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(val["mask"][0, 0, 8:24, 8:24], torch.ones(16, 16)) and float(val["mask"].sum()) == 4 * 256
    again = FacadeInpaintingDataModule(resolution=32, batch_size=4, num_val=6, num_test=5)
    again.setup("test")
    assert len(again.test_set) == 5
    assert torch.equal(again.val_set[3]["image"], dm.val_set[3]["image"])
    assert again.test_set[0]["name"] == f"facade{SPLIT_SEEDS['test'][0]:010d}"


def test_training_samples_follow_the_resumable_index():
    """A training sample is a function of its (seed, epoch, index): a resumed run sees the same facade and mask;
    another epoch sees another facade."""
    data = FacadeDataset("train", 16, 32, RandomRectangleMasks())
    first, again = data[SampleIndex(3, epoch=0, seed=1)], data[SampleIndex(3, epoch=0, seed=1)]
    other_epoch = data[SampleIndex(3, epoch=1, seed=1)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    assert first["name"] == again["name"] != other_epoch["name"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: render_facade(0, 8), "size >= 16"),
        (lambda: render_facade(-1, 32), "seeds are >= 0"),
        (lambda: facade_seed("train", 0), "'val' or 'test'"),
        (lambda: FacadeDataset("test", SPLIT_SEEDS["test"][1], 32, CenterSquareMasks()), "outside"),
        (lambda: FacadeDataset("holdout", 4, 32, CenterSquareMasks()), "split must be one of"),
        (lambda: FacadeInpaintingDataModule(resolution=12), "divisible by 8"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
