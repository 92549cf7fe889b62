"""``python -m an_inpaint study`` end to end on a tiny budget, ``evaluate --compare_dir`` (a paired comparison of two
folders) and the study's same-data check."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from skimage import data as skdata

from an_inpaint.cli import cli_main
from an_inpaint.study import check_same_reference
from common.metrics.paired import paired_bootstrap
from common.training.study import StudyError

ROOT = Path(__file__).resolve().parents[2]


def _folders(tmp_path):
    """Ground truth, masks and two composited results (B noisier than A inside the hole on 3 of 4 images)."""
    gt, masks, a, b = (tmp_path / name for name in ("gt", "masks", "a", "b"))
    for folder in (gt, masks, a, b):
        folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        crop = skdata.chelsea()[30 * i : 30 * i + 48, 100:148]
        Image.fromarray(crop).save(gt / f"{i:03d}.png")
        hole = np.zeros((48, 48), np.uint8)
        hole[12:36, 12:36] = 255
        Image.fromarray(hole).save(masks / f"{i:03d}.png")
        for folder, spread in ((a, 10), (b, 30 if i < 3 else 5)):
            noisy = crop.astype(int)
            noisy[12:36, 12:36] += rng.integers(-spread, spread + 1, size=(24, 24, 3))
            Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return gt, masks, a, b


@pytest.mark.timeout(120)
def test_evaluate_compares_two_folders_image_by_image(tmp_path, capsys):
    gt, masks, a, b = _folders(tmp_path)
    out = tmp_path / "paired.json"
    result = cli_main(
        ["evaluate", f"--pred_dir={a}", f"--compare_dir={b}", f"--gt_dir={gt}", f"--mask_dir={masks}"]
        + [f"--output={out}", "--resamples=500", "--bootstrap_seed=3"]
    )
    printed = capsys.readouterr().out
    assert "| a - b | PSNR hole (dB) (higher better) |" in printed and printed.count("| images | N |") == 2
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    pairs = {p["metric"]: p for p in result["paired"]["pairs"]}
    assert set(pairs) == {"psnr", "ssim", "mae", "psnr_hole", "ssim_hole", "mae_hole"}
    stems = sorted(result["pred"]["per_image"])
    for metric, higher in (("psnr_hole", True), ("mae_hole", False)):
        left = [result["pred"]["per_image"][s][metric] for s in stems]
        right = [result["compare"]["per_image"][s][metric] for s in stems]
        diff = np.subtract(left, right)
        pair = pairs[metric]
        assert pair["mean_difference"] == pytest.approx(diff.mean())
        assert pair["better"] == int(((diff > 0) if higher else (diff < 0)).sum()) == 3
        assert pair["ci_low"] == paired_bootstrap(left, right, higher, 500, 0.95, 3).ci_low
        assert pair["n_seeds"] == 1 and pair["n_images"] == 4
    (b / "003.png").unlink()
    with pytest.raises(ValueError, match="do not pair up"):
        cli_main(["evaluate", f"--pred_dir={a}", f"--compare_dir={b}", f"--gt_dir={gt}", f"--mask_dir={masks}"])


@pytest.mark.timeout(60)
def test_every_arm_must_see_the_same_test_images(tmp_path):
    gt, masks, _, _ = _folders(tmp_path)
    reference, other = tmp_path / "reference", tmp_path / "other"
    for root in (reference, other):
        shutil.copytree(gt, root / "gt")
        shutil.copytree(masks, root / "masks")
    check_same_reference(other, reference, "CA seed 0")  # identical: fine
    hole = np.asarray(Image.open(other / "masks" / "002.png")).copy()
    hole[0, 0] = 255
    Image.fromarray(hole).save(other / "masks" / "002.png")
    with pytest.raises(StudyError, match=r"CA seed 0: 1 mask\(s\) of the test split differ.*e\.g\. 002"):
        check_same_reference(other, reference, "CA seed 0")
    (other / "gt" / "001.png").unlink()
    with pytest.raises(StudyError, match="inpainted other test images"):
        check_same_reference(other, reference, "CA seed 0")


TINY = {
    "trainer": {
        "accelerator": "cpu",
        "max_epochs": -1,
        "val_check_interval": 1000,
        "check_val_every_n_epoch": None,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    },
    "model": {
        "generator": {
            "class_path": "an_inpaint.networks.InpaintGenerator",
            "init_args": {
                "cnum": 4,
                "long_range": {"class_path": "common.layers.AttentiveNorm2d", "init_args": {"num_entities": 4}},
            },
        },
        "global_critic": {"class_path": "an_inpaint.networks.GlobalCritic", "init_args": {"input_size": 32, "cnum": 4}},
        "local_critic": {"class_path": "an_inpaint.networks.LocalCritic", "init_args": {"input_size": 16, "cnum": 4}},
    },
    "data": {
        "class_path": "common.data.inpainting_demo.DemoInpaintingDataModule",
        "init_args": {
            "resolution": 32,
            "batch_size": 2,
            "train_samples_per_epoch": 16,
            "num_eval_crops": 2,
            "train_masks": {"class_path": "common.data.masks.RandomRectangleMasks"},
            "photos": {"train": ["coffee"], "val": ["chelsea"], "test": ["flower", "grace_hopper"]},
        },
    },
    "validate_before_fit": False,
}


@pytest.mark.slow
@pytest.mark.timeout(300)  # 57-89 s measured on 2 shared CPU cores (8 subprocesses, each importing torch)
def test_study_end_to_end_on_a_tiny_budget(tmp_path, monkeypatch, capsys):
    """2 arms (AN; contextual attention instead, arms/ca.yaml) x 2 seeds, 2 steps each: the units' runs, scores,
    tables and picture agree with the per-image scores; a second call resumes (nothing is retrained)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    base = tmp_path / "tiny.yaml"
    base.write_text(yaml.safe_dump(TINY))
    study = tmp_path / "study.yaml"
    ca = ROOT / "configs" / "an_inpaint" / "arms" / "ca.yaml"
    study.write_text(yaml.safe_dump({"arms": {"AN": ["tiny.yaml"], "CA": ["tiny.yaml", str(ca)]}, "seeds": [0, 1]}))
    out = tmp_path / "out"
    args = ["study", f"--config={study}", "--max_steps=2", f"--out_dir={out}", "--quiet=true", "--resamples=300"]
    result = cli_main(args)
    printed = capsys.readouterr().out
    assert "[4/4] CA seed 1: predict done" in printed and "| AN - CA | PSNR hole (dB)" in printed
    scores = {}
    for arm in ("AN", "CA"):
        for seed in (0, 1):
            folder = out / arm / f"seed{seed}"
            step = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
            assert step["global_step"] == 2
            scores[arm, seed] = json.loads((folder / "scores.json").read_text())
            assert scores[arm, seed]["count"] == 4  # 2 test photographs x 2 crops
    generator = yaml.safe_load((out / "CA" / "seed0" / "config.yaml").read_text())["model"]["generator"]["init_args"]
    assert generator["long_range"] is None and generator["contextual_attention"] is not None
    assert scores["AN", 0]["per_image"] != scores["AN", 1]["per_image"]  # the seeds were used
    summary = result["summary"]
    assert list(summary["rows"]) == ["AN", "CA", "telea", "ns", "harmonic"]
    stems = sorted(scores["AN", 0]["per_image"])
    per_seed = [np.mean([scores["AN", s]["per_image"][k]["psnr_hole"] for k in stems]) for s in (0, 1)]
    assert summary["rows"]["AN"]["metrics"]["psnr_hole"]["mean"] == pytest.approx(np.mean(per_seed))
    pairs = {(p["a"], p["b"], p["metric"]): p for p in summary["pairs"]}
    assert set(pairs) == {(a, b, m) for a, b in (("AN", "CA"), ("AN", "telea"), ("CA", "telea"))
                          for m in ("psnr_hole", "ssim")}  # fmt: skip
    diff = [[scores["AN", s]["per_image"][k]["ssim"] - scores["CA", s]["per_image"][k]["ssim"] for k in stems]
            for s in (0, 1)]  # fmt: skip
    assert pairs["AN", "CA", "ssim"]["mean_difference"] == pytest.approx(np.mean(diff))
    assert pairs["AN", "CA", "ssim"]["per_seed"] == pytest.approx(np.mean(diff, axis=1))
    assert json.loads((out / "study.json").read_text())["summary"] == json.loads(json.dumps(summary))
    assert "| AN | 2 |" in (out / "study.md").read_text()
    picture = Image.open(out / "study.png")  # 4 rows (images) x 6 columns, 32 px enlarged 4x, plus the labels
    assert picture.width == 6 * (128 + 2) + 2 and picture.height > 4 * (128 + 2) + 2
    again = cli_main(args)
    printed = capsys.readouterr().out
    assert printed.count("finished earlier") == 4 and ": fit" not in printed
    assert again["summary"] == summary
