"""The digits demo's judge (an_gan.demo_quality): real data passes it, degenerate generators fail it."""

import numpy as np
import pytest
import torch
from torch import nn

from an_gan.demo_quality import demo_quality, digit_features, judge, score_digit_folder
from common.data.class_images import DigitsDataModule
from common.visualization import save_png, to_unit


@pytest.fixture(scope="module")
def data():
    return DigitsDataModule(resolution=16)


class _Replay(nn.Module):
    """A "generator" that returns real digits of the requested class (copies of the held-out ones if ``mode``)."""

    def __init__(self, data, collapse: bool) -> None:
        super().__init__()
        self.num_classes, self.z_dim, self.resolution = 10, 4, 16
        self.dummy = nn.Parameter(torch.zeros(()))
        train = data.dataset("train")
        self.images, self.labels, self.collapse = train.images, train.labels, collapse

    def forward(self, z, y):
        out = []
        for i, c in enumerate(y.tolist()):
            pool = self.images[self.labels == c]
            out.append(pool[0] if self.collapse else pool[int(abs(z[i, 0]) * 1e4) % len(pool)])
        return torch.stack(out)


def test_real_digits_pass_and_a_collapsed_generator_fails(data):
    real = demo_quality(_Replay(data, collapse=False), data)
    assert real["real_accuracy"] > 0.95
    assert real["class_consistency"] > 0.95
    assert real["cas"] > real["real_accuracy"] - 0.1
    assert 0.5 < real["spread_ratio"] < 1.2
    collapsed = demo_quality(_Replay(data, collapse=True), data)
    assert collapsed["class_consistency"] > 0.95  # every sample is of its class ...
    assert collapsed["spread_ratio"] == 0.0  # ... but all alike,
    assert collapsed["cas"] < real["cas"] - 0.1  # which CAS catches
    assert collapsed["num_generated"] == len(data.dataset("train"))


def test_features_and_wrong_labels(data):
    images = data.dataset("test").images
    features = digit_features(images)
    assert features.shape == (len(images), 64) and features.min() >= 0 and features.max() <= 16
    labels = data.dataset("test").labels.numpy()
    shuffled = judge(features, np.roll(labels, 1), data)
    assert shuffled["class_consistency"] < 0.3


def test_folder_of_pngs(data, tmp_path):
    test = data.dataset("test")
    for i, (image, label) in enumerate(zip(test.images, test.labels, strict=True)):
        save_png(to_unit(image), tmp_path / f"{int(label):04d}" / f"{i:06d}.png")
    report = score_digit_folder(tmp_path, data)
    assert report["num_generated"] == len(test) and report["class_consistency"] > 0.95
    (tmp_path / "letters").mkdir()
    with pytest.raises(ValueError, match="0..9"):
        score_digit_folder(tmp_path, data)
