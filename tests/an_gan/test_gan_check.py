"""``python -m an_gan check``: the verdict on the bundled demo and on small real ImageNet-layout trees (a corrupt file,
an empty class folder, missing Inception weights, an unwritable run folder each give their fail line)."""

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from an_gan.cli import cli_main

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--check.warmup", "1", "--check.batches", "2", "--check.decode_per_split", "64", "--check.loader_batches", "2"]
WNIDS = ["n01440764", "n02102040", "n03000134"]


def imagenet_tree(root: Path) -> Path:
    """ImageNet layout with real JPEG files: train/<wnid>/ (4 per class), val/<wnid>/ (2 per class)."""
    for c, wnid in enumerate(WNIDS):
        colour = tuple(220 if i == c else 20 for i in range(3))
        for i in range(4):
            (root / "train" / wnid).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40 + 5 * i, 32), colour).save(root / "train" / wnid / f"{wnid}_{i}.JPEG")
        for i in range(2):
            (root / "val" / wnid).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 36), colour).save(root / "val" / wnid / f"ILSVRC2012_val_{c * 2 + i:08d}.JPEG")
    return root


def tree_args(root: Path) -> list[str]:
    """The demo's small networks on an ImageNet-layout tree at 8x8."""
    return [
        "--config", str(ROOT / "configs/an_gan/demo.yaml"), "--data", "common.data.imagenet.ImageNetDataModule",
        "--data.init_args.root", str(root), "--data.init_args.resolution", "8", "--data.init_args.batch_size", "4",
        "--data.init_args.num_workers", "0",
    ]  # fmt: skip


def by_name(report) -> dict:
    return {(i.section, i.name): i for i in report.items}


def test_check_of_the_demo_passes_and_projects_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    report = cli_main(["check", *QUICK])
    items = by_name(report)
    assert report.verdict != "fail" and report.exit_status == 0, report.format_table()
    assert {s for s, _ in items} == {"data", "training", "evaluation", "checkpoints", "logging"}
    assert items["data", "counts"].values["counts"] == {"train": 1437, "val": 180, "test": 180}
    assert items["data", "decode"].values["decoded"] == 3 * 64
    timing = items["training", "iterations"].values
    assert timing["batches_timed"] == 2 and timing["steps_per_batch"] == 1.5  # n_dis 2: D, D + G
    assert items["checkpoints", "write + reload"].status == "pass"
    projection = items["training", "projected wall time"].values
    # demo: max_steps 7500 optimiser steps = 5000 batches; one validation (val_check_interval 5000)
    expected = timing["startup_s"] + 5000 * timing["seconds_per_batch"] + projection["validation_s"]
    assert projection["projected_s"] == pytest.approx(expected)
    written = json.loads((tmp_path / "runs/an_gan/check/check.json").read_text())
    assert written["verdict"] == report.verdict and written["projected_wall_s"] == pytest.approx(expected)
    out = capsys.readouterr().out
    assert "projected wall time" in out and "verdict:" in out


def test_check_of_a_small_imagenet_tree_warns_on_the_paper_counts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = cli_main(["check", *tree_args(imagenet_tree(tmp_path / "imagenet")), *QUICK])
    items = by_name(report)
    assert report.exit_status == 0, report.format_table()
    counts = items["data", "counts"]
    assert counts.status == "warn" and counts.values["counts"] == {"train": 12, "val": 6, "test": 6}
    assert "1,281,167" in counts.detail and "3 classes" in counts.detail
    assert items["data", "decode"].values["decoded"] == 24
    assert items["training", "iterations"].status == "pass"


def test_a_corrupt_file_is_a_fail_line_and_exit_status_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = imagenet_tree(tmp_path / "imagenet")
    bad = root / "train" / WNIDS[1] / f"{WNIDS[1]}_2.JPEG"
    bad.write_bytes(b"not a JPEG at all")
    monkeypatch.setattr(sys, "argv", ["an_gan", "check", *tree_args(root), *QUICK])
    with pytest.raises(SystemExit) as stop:
        cli_main()
    assert stop.value.code == 1
    out = capsys.readouterr().out
    assert "decode" in out and "FAIL" in out and bad.name in out
    report = json.loads((tmp_path / "runs/an_gan/check/check.json").read_text())
    decode = next(i for i in report["items"] if i["name"] == "decode")
    assert decode["status"] == "fail" and str(bad) in decode["values"]["unreadable"][0]


def test_an_empty_class_folder_is_a_fail_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = imagenet_tree(tmp_path / "imagenet")
    (root / "train" / "n09999999").mkdir()
    report = cli_main(["check", *tree_args(root), *QUICK])
    layout = by_name(report)["data", "layout"]
    assert layout.status == "fail" and "n09999999 holds no images" in layout.detail
    assert report.exit_status == 1


def test_missing_inception_weights_are_a_fail_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nowhere" / "weights-inception.pth"
    report = cli_main(
        ["check", "--model.val_evaluator.init_args.feature_extractor=null",
         f"--model.val_evaluator.init_args.inception_weights={missing}", *QUICK]
    )  # fmt: skip
    items = by_name(report)
    features = items["evaluation", "val_evaluator features"]
    assert features.status == "fail" and str(missing) in features.detail and "inception_weights" in features.fix
    # fit prepares the validation evaluator at its start: the real run would stop there, and so does the check's
    assert items["training", "iterations"].status == "fail" and "Inception" in items["training", "iterations"].detail
    assert report.exit_status == 1


def test_an_unwritable_run_folder_is_a_fail_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder under a file cannot be made, even by root
    report = cli_main(["check", "--trainer.default_root_dir", str(blocker / "runs"), *QUICK])
    folder = by_name(report)["checkpoints", "run folder"]
    assert folder.status == "fail" and "not writable" in folder.detail
    assert report.exit_status == 1
    assert by_name(report)["training", "iterations"].status == "pass"  # the rest still ran, in a temporary folder


def test_a_checkpoint_that_loses_state_is_a_fail_line(tmp_path, monkeypatch):
    """Weights, optimiser and RNG states that do not survive the trainer's checkpoint I/O are each named."""
    from common.training.callbacks.resume import ExactResume
    from common.training.checkpoints import AtomicCheckpointIO

    save = AtomicCheckpointIO.save_checkpoint

    def lossy_save(self, checkpoint, path, storage_options=None):
        first = next(iter(checkpoint["state_dict"]))
        checkpoint["state_dict"][first] = checkpoint["state_dict"][first] + 1
        checkpoint["optimizer_states"] = checkpoint["optimizer_states"][:1]
        return save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", lossy_save)
    monkeypatch.setattr(ExactResume, "on_save_checkpoint", lambda *args: None)
    monkeypatch.chdir(tmp_path)
    report = cli_main(["check", *QUICK])
    item = by_name(report)["checkpoints", "write + reload"]
    assert item.status == "fail" and report.exit_status == 1
    assert (
        "weights differ" in item.detail
        and "optimiser states differ" in item.detail
        and "RNG states missing" in item.detail
    )


def test_a_large_evaluation_is_estimated_from_one_batch(tmp_path, monkeypatch):
    """Above --check.max_eval_images one batch of the evaluator's generation + features is timed and scaled."""
    monkeypatch.chdir(tmp_path)
    report = cli_main(["check", *QUICK, "--check.max_eval_images", "100"])
    items = by_name(report)
    validate = items["evaluation", "one validate"]
    assert validate.status == "pass" and validate.values["estimated"] and validate.values["seconds"] > 0
    assert "680 images" in validate.detail and "--check.max_eval_images 680" in validate.detail
    assert validate.values["batches"] == 3  # 680 images in batches of 250
    assert validate.values["seconds"] == pytest.approx(3 * validate.values["batch_seconds"])
    timing, projection = items["training", "iterations"].values, items["training", "projected wall time"].values
    expected = timing["startup_s"] + 5000 * timing["seconds_per_batch"] + validate.values["seconds"]
    assert projection["projected_s"] == pytest.approx(expected)
