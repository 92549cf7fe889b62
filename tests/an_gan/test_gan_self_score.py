"""A class-sorted real image tree scored against itself with ``python -m an_gan evaluate``'s code
(:meth:`an_gan.evaluation.GenerationEvaluator.score_folder`): every metric must say "the same distribution".

The reference is read in dataset order, which is sorted by class (as ImageNet's training set is), and the generated
side in the evaluator's class-balanced order. KID and precision / recall used to keep the first
``kid_prc_num_samples`` reference images, i.e. the first classes only; they now keep a seeded random subset.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from an_gan.evaluation import GenerationEvaluator
from common.data.class_images import ClassFolderDataModule
from common.metrics.generation import RandomProjectionExtractor
from common.metrics.generation import metrics as metrics_module
from common.metrics.generation.metrics import subset_keys

NUM_CLASSES, PER_CLASS, KID_PRC = 4, 40, 40  # a first-N selection of 40 takes class 0 only


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Four classes of 40 16x16 images: a class colour plus pixel noise, files sorted by class."""
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(NUM_CLASSES, 3))
    for c in range(NUM_CLASSES):
        (root / f"class{c}").mkdir()
        for i in range(PER_CLASS):
            pixels = colours[c][None, None] + rng.normal(0, 25, size=(16, 16, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / f"class{c}" / f"{i:03d}.png")
    return root


def _self_score(root) -> dict[str, float]:
    reference = ClassFolderDataModule(str(root), resolution=16, batch_size=8, num_workers=0, val_root=str(root))
    evaluator = GenerationEvaluator(
        num_samples=NUM_CLASSES * PER_CLASS,  # every image of the tree is a "generated" image too
        batch_size=16,
        reference_split="train",
        intra_fid_classes=None,
        is_splits=2,
        kid_prc_num_samples=KID_PRC,
        feature_extractor=RandomProjectionExtractor(feature_dim=16, num_logits=4),
        reference_cache_dir=None,
    )
    return evaluator.score_folder(root, reference)


def test_a_class_sorted_tree_scored_against_itself(tree, monkeypatch):
    """FID 0, KID within noise of 0, precision and recall near 1; with the first-N selection planted back (keys =
    positions: the reference subset is class 0 only, the generated one 10 / 10 / 10 / 10) the same checks fail."""
    scores = _self_score(tree)
    assert abs(scores["fid"]) < 1e-6
    assert abs(scores["kid_mean"]) < 0.01, scores
    assert scores["precision"] >= 0.8 and scores["recall"] >= 0.8, scores
    kept = torch.argsort(subset_keys(torch.arange(NUM_CLASSES * PER_CLASS)))[:KID_PRC] // PER_CLASS
    assert np.bincount(kept.numpy(), minlength=NUM_CLASSES).min() >= 5  # reference rows kept per class

    monkeypatch.setattr(metrics_module, "subset_keys", lambda positions, seed=0: positions.cpu().long())
    planted = _self_score(tree)
    assert abs(planted["fid"]) < 1e-6  # FID uses every image either way
    assert planted["kid_mean"] > 0.05 and planted["precision"] < 0.5, planted  # what the first-N rule reported
