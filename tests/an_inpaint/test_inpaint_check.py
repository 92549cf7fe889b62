"""``python -m an_inpaint check``: the verdict on the bundled demo and on a small real tree in the Paris StreetView
layout (a corrupt file gives its fail line and exit status 1)."""

import json
from pathlib import Path

import pytest
from inpaint_helpers import write_paris_tree

from an_inpaint.cli import cli_main

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--check.warmup", "1", "--check.batches", "2", "--check.decode_per_split", "8", "--check.loader_batches", "2"]


def paris_args(root: Path) -> list[str]:
    """The demo's small networks on a Paris StreetView tree at 64x64."""
    return [
        "--config", str(ROOT / "configs/an_inpaint/demo.yaml"),
        "--data", "common.data.inpainting.ParisStreetViewDataModule", "--data.init_args.root", str(root),
        "--data.init_args.resolution", "64", "--data.init_args.batch_size", "2", "--data.init_args.val_images", "2",
        "--data.init_args.num_workers", "0",
    ]  # fmt: skip


def by_name(report) -> dict:
    return {(i.section, i.name): i for i in report.items}


def test_check_of_the_demo_passes_and_projects_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = cli_main(["check", *QUICK])
    items = by_name(report)
    assert report.exit_status == 0, report.format_table()
    assert items["data", "counts"].values["counts"] == {"train": 20000, "val": 64, "test": 200}
    timing = items["training", "iterations"].values
    assert timing["steps_per_batch"] == 1  # phase 1: one generator step per batch
    projection = items["training", "projected wall time"].values
    # demo: max_steps 600, validation every 300 batches and once before training, one test after training
    test_s = items["evaluation", "one test"].values["seconds"]
    expected = timing["startup_s"] + 600 * timing["seconds_per_batch"] + 3 * projection["validation_s"] + test_s
    assert projection["projected_s"] == pytest.approx(expected)
    assert items["checkpoints", "write + reload"].status == "pass"
    assert json.loads((tmp_path / "runs/an_inpaint/check/check.json").read_text())["verdict"] == report.verdict


def test_check_of_a_small_paris_tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = cli_main(["check", *paris_args(write_paris_tree(tmp_path / "paris", n_train=6, n_eval=3)), *QUICK])
    items = by_name(report)
    assert report.exit_status == 0, report.format_table()
    counts = items["data", "counts"]
    assert counts.status == "warn" and counts.values["counts"] == {"train": 4, "val": 2, "test": 3}
    assert "train 14,898, val 2, test 100" in counts.detail  # the paper's 14,900 training images, 2 held out here
    assert items["training", "iterations"].status == "pass"


def test_a_corrupt_paris_file_is_a_fail_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = write_paris_tree(tmp_path / "paris", n_train=6, n_eval=3)
    bad = root / "paris_eval_gt" / "002_im.png"
    bad.write_bytes(b"\x89PNG broken")
    report = cli_main(["check", *paris_args(root), *QUICK])
    decode = by_name(report)["data", "decode"]
    assert decode.status == "fail" and str(bad) in decode.detail
    assert report.exit_status == 1
