"""The digits demo's judge: is each sample of its class, and are the samples as varied as real digits?

A scikit-learn classifier that no part of the GAN was trained against judges the generated digits
(``sklearn.svm.SVC`` with scikit-learn's defaults: RBF kernel, ``gamma="scale"``, ``C=1``), on 8x8 grey images
(the generated R x R RGB images averaged over channels and, above 8x8, over (R/8) x (R/8) blocks, rescaled to the
0..16 range of ``sklearn.datasets.load_digits``; real digits go through the same path; at the demo's native 8x8 the
real features are the scans themselves):

* **real accuracy**: trained on the real training digits, tested on the real held-out (test) digits;
* **class-consistency**: the same classifier labels generated samples; the fraction labelled with the class they were
  generated for;
* **CAS**, the classification accuracy score of Ravuri & Vinyals ("Classification Accuracy Score for Conditional
  Generative Models", NeurIPS 2019): the classifier trained on generated samples only (as many per class as the
  real training split has), tested on the real held-out digits. A generator whose samples of a class are all alike
  gives a poor CAS even when every sample is recognisable;
* **spread ratio**: the mean pairwise distance between samples of a class divided by that of the real training
  digits of the class (averaged over classes; 1 means as varied as the data, near 0 means near-identical samples).

Goals of the bundled demo (``configs/an_gan/demo.yaml``): class-consistency >= 0.95 and CAS within 10 points of the
real accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from an_gan.evaluation import eval_mode
from an_gan.noise import class_noise
from common.data.class_datasets import dataset_labels
from common.data.class_images import DigitsDataModule
from common.data.images import list_images

__all__ = ["demo_quality", "digit_features", "format_demo_quality", "judge", "score_digit_folder"]


def digit_features(images: Tensor) -> np.ndarray:
    """8x8 grey features on the 0..16 digits scale, ``(N, 64)``, from images ``(N, 3, R, R)`` in [-1, 1]."""
    x = F.adaptive_avg_pool2d(images.detach().float().mean(dim=1, keepdim=True), 8)
    return ((x.clamp(-1, 1) + 1) / 2 * 16).flatten(1).cpu().numpy()


def _spread(features: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    out = {}
    for c in np.unique(labels):
        x = torch.from_numpy(features[labels == c]).double()
        out[int(c)] = float(torch.pdist(x).mean()) if len(x) > 1 else 0.0
    return out


def judge(fake: np.ndarray, fake_labels: np.ndarray, data: DigitsDataModule | None = None) -> dict[str, Any]:
    """Real accuracy, class-consistency, CAS and spread ratio of generated digit features (module docstring).

    Args:
        fake: :func:`digit_features` of the generated samples, (N, 64).
        fake_labels: the classes they were generated for, (N,).
        data: the digits split (default: ``DigitsDataModule()``, its train and test splits).
    """
    from sklearn.svm import SVC

    data = data or DigitsDataModule()
    real_train, real_test = data.dataset("train"), data.dataset("test")
    x_train, y_train = digit_features(real_train.images), dataset_labels(real_train)
    x_test, y_test = digit_features(real_test.images), dataset_labels(real_test)
    real_judge = SVC().fit(x_train, y_train)
    fake_judge = SVC().fit(fake, fake_labels)
    real_spread, fake_spread = _spread(x_train, y_train), _spread(fake, fake_labels)
    ratios = {c: fake_spread[c] / real_spread[c] for c in real_spread if c in fake_spread and real_spread[c] > 0}
    return {
        "real_accuracy": float((real_judge.predict(x_test) == y_test).mean()),
        "class_consistency": float((real_judge.predict(fake) == fake_labels).mean()),
        "cas": float((fake_judge.predict(x_test) == y_test).mean()),
        "spread_ratio": float(np.mean(list(ratios.values()))),
        "spread_ratio_per_class": {str(c): v for c, v in ratios.items()},
        "num_generated": int(len(fake_labels)),
        "num_real_train": int(len(y_train)),
        "num_real_test": int(len(y_test)),
        "classifier": "sklearn.svm.SVC() (RBF, gamma='scale', C=1) on 8x8 grey digits",
    }


@torch.no_grad()
def demo_quality(
    generator: nn.Module, data: DigitsDataModule | None = None, seed: int = 12345, batch_size: int = 256
) -> dict[str, Any]:
    """Judge ``generator`` (eval mode) on as many samples per class as the real training split has.

    The samples are images ``0 .. n_c - 1`` of each class's noise stream for ``seed`` (:mod:`an_gan.noise`).
    """
    data = data or DigitsDataModule(resolution=generator.resolution)
    counts = np.bincount(dataset_labels(data.dataset("train")), minlength=generator.num_classes)
    device = next(generator.parameters()).device
    features, labels = [], []
    with eval_mode(generator):
        for cls, count in enumerate(counts.tolist()):
            for start in range(0, count, batch_size):
                stop = min(start + batch_size, count)
                z = class_noise(seed, cls, start, stop, generator.z_dim).to(device)
                y = torch.full((stop - start,), cls, dtype=torch.long, device=device)
                features.append(digit_features(generator(z, y)))
                labels.append(np.full(stop - start, cls))
    return judge(np.concatenate(features), np.concatenate(labels), data)


def score_digit_folder(samples: str | Path, data: DigitsDataModule | None = None) -> dict[str, Any]:
    """Judge generated digits stored as ``<class>/<index>.png`` (class folders named 0..9 or 0000..0009)."""
    samples = Path(samples)
    features, labels = [], []
    for folder in sorted(p for p in samples.iterdir() if p.is_dir()):
        if not folder.name.isdigit() or int(folder.name) > 9:
            raise ValueError(f"{folder}: digit class folders are named 0..9 (or 0000..0009)")
        images = []
        for path in list_images(folder):
            with Image.open(path) as img:
                images.append(torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()))
        x = torch.stack(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        features.append(digit_features(x))
        labels.append(np.full(len(images), int(folder.name)))
    if not features:
        raise ValueError(f"no class folders in {samples}")
    return judge(np.concatenate(features), np.concatenate(labels), data)


def format_demo_quality(report: dict[str, Any]) -> str:
    """The judge's numbers as a few lines of text."""
    return (
        f"demo quality ({report['classifier']}):\n"
        f"  class-consistency {report['class_consistency']:.3f} (goal >= 0.95)\n"
        f"  CAS {report['cas']:.3f} vs real-data accuracy {report['real_accuracy']:.3f} (goal: within 0.10)\n"
        f"  spread ratio {report['spread_ratio']:.3f} (generated / real within-class distance; 1 = as varied)"
    )
