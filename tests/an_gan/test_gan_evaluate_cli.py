"""``python -m an_gan evaluate``: the protocol's counts on the command line, errors naming them, ``--device auto``."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from an_gan.cli import cli_main

EVALUATOR = {
    "class_path": "an_gan.evaluation.GenerationEvaluator",
    "init_args": {
        "is_splits": 2,
        "kid_prc_num_samples": 4,
        "reference_cache_dir": None,
        "feature_extractor": {
            "class_path": "common.metrics.generation.RandomProjectionExtractor",
            "init_args": {"feature_dim": 4, "num_logits": 3},
        },
    },
}


def _folder(root, counts, seed):
    """Class folders ``0000``, ``0001``, ... of 16x16 images, ``counts[c]`` in class ``c``."""
    rng = np.random.default_rng(seed)
    for c, n in enumerate(counts):
        (root / f"{c:04d}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 80, size=(16, 16, 3), dtype=np.uint8)
            pixels[..., c % 3] += 150
            Image.fromarray(pixels).save(root / f"{c:04d}" / f"{i:06d}.png")
    return root


def _evaluate(samples, reference, *flags):
    args = ["evaluate", "--samples", str(samples), "--reference", str(reference), "--evaluator", json.dumps(EVALUATOR)]
    return cli_main([*args, *flags])


@pytest.fixture
def reference(tmp_path):
    return _folder(tmp_path / "real", (6, 6, 6), seed=0)


def test_the_default_protocol_on_a_small_folder_names_the_flags(tmp_path, reference, capsys):
    """What ``predict --predict_writer.num_per_class 3 --predict_writer.classes "[0, 1]"`` writes cannot meet the
    paper's protocol (50,000 images, 5,000 per class for intra-FID): the error says which flags set the counts."""
    samples = _folder(tmp_path / "samples", (3, 3), seed=1)
    with pytest.raises(SystemExit):
        _evaluate(samples, reference)
    err = capsys.readouterr().err
    assert "error:" in err
    err = err.split("error:", 1)[1]  # the message, not the usage lines
    assert "class 0 needs 16667 images but" in err and "holds 3" in err
    for flag in ("--num_per_class", "--intra_fid_num_per_class", "--intra_fid_classes"):
        assert flag in err, err
    with pytest.raises(SystemExit):  # the FID set takes every class of the reference: class 2 has no folder
        _evaluate(samples, reference, "--num_per_class", "3", "--intra_fid_classes", "none")
    assert "class 2 needs 3 images but" in capsys.readouterr().err


def test_protocol_counts_on_the_command_line(tmp_path, reference):
    samples = _folder(tmp_path / "samples", (3, 3), seed=1)
    intra_only = _evaluate(samples, reference, "--num_per_class", "0", "--intra_fid_classes", "[0, 1]",
                           "--intra_fid_num_per_class", "3")  # fmt: skip
    assert set(intra_only["scores"]) == {"intra_fid", "intra_fid/0", "intra_fid/1"}
    assert intra_only["protocol"]["num_samples"] == 0 and intra_only["protocol"]["intra_fid_num_per_class"] == 3
    assert intra_only["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto

    full = _folder(tmp_path / "full", (4, 4, 4), seed=2)
    pooled = _evaluate(full, reference, "--num_per_class", "4", "--intra_fid_classes", "none", "--device", "cpu")
    assert pooled["protocol"]["num_samples"] == 12 and pooled["device"] == "cpu"
    assert {"fid", "is_mean", "kid_mean", "precision"} <= set(pooled["scores"]) and "intra_fid" not in pooled["scores"]


def test_bad_counts_are_refused(tmp_path, reference, capsys):
    samples = _folder(tmp_path / "samples", (3, 3), seed=1)
    with pytest.raises(SystemExit):
        _evaluate(samples, reference, "--num_per_class", "0", "--intra_fid_classes", "none")
    assert "nothing to compute" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _evaluate(samples, reference, "--intra_fid_classes", "[0, 7]")
    assert "--intra_fid_classes" in capsys.readouterr().err.split("error:", 1)[1]


def test_device_auto_takes_the_gpu_when_there_is_one(tmp_path, reference, monkeypatch):
    from an_gan.evaluation import GenerationEvaluator

    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        GenerationEvaluator, "score_folder", lambda self, s, r, device=None: seen.append(device) or {"fid": 0.0}
    )
    assert _evaluate(_folder(tmp_path / "samples", (1,), seed=1), reference)["device"] == "cuda"
    assert seen == ["cuda"]
