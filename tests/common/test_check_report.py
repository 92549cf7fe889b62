"""The shared parts of ``check`` (common.training.check): the verdict table / JSON / exit status, the deep comparison
of reloaded checkpoints, the count of validations a trainer runs and the batch clock."""

import json
from types import SimpleNamespace

import pytest
import torch

from common.training.check import Report, format_duration
from common.training.check.main import _validations
from common.training.check.sections import Clock, same


def test_verdict_table_json_and_exit_status(tmp_path):
    report = Report(context={"task": "an_gan"})
    report.add("logging", "W&B", "warn", "offline", "wandb login")
    report.add("data", "counts", "pass", "train 12", "never shown for a pass")
    assert report.verdict == "warn" and report.exit_status == 0
    report.add(
        "data", "decode", "fail", "1 unreadable: /data/train/a/very-long-file-name-that-stays-whole.JPEG", "delete"
    )
    assert report.verdict == "fail" and report.exit_status == 1
    table = report.format_table()
    assert "/data/train/a/very-long-file-name-that-stays-whole.JPEG" in table
    assert "fix: delete" in table and "fix: wandb login" in table and "never shown" not in table
    assert table.splitlines()[-1] == "verdict: FAIL (1 pass, 1 warn, 1 fail)"
    written = json.loads(report.write_json(tmp_path / "run" / "check.json").read_text())
    assert [i["name"] for i in written["items"]] == ["counts", "decode", "W&B"]  # by section
    assert written["task"] == "an_gan" and written["counts"] == {"pass": 1, "warn": 1, "fail": 1}
    with pytest.raises(ValueError, match="status must be one of"):
        report.add("data", "x", "ok", "")


def test_same_finds_any_difference_in_nested_state():
    state = {"state": {0: {"exp_avg": torch.ones(3), "step": torch.tensor(2.0)}}, "param_groups": [{"lr": 1e-4}]}
    copy = {"state": {0: {"exp_avg": torch.ones(3), "step": torch.tensor(2.0)}}, "param_groups": [{"lr": 1e-4}]}
    assert same(state, copy)
    copy["state"][0]["exp_avg"][1] = 1.0 + 1e-7
    assert not same(state, copy)
    assert not same({"a": torch.ones(2)}, {"a": torch.ones(3)}) and not same([1, 2], [1, 2, 3])
    assert not same({"lr": 1e-4}, {"lr": 2e-4}) and not same({"a": 1}, {"b": 1})


def trainer(vci, every, limit=1.0):
    return SimpleNamespace(val_check_interval=vci, check_val_every_n_epoch=every, limit_val_batches=limit)


def test_validations_of_the_configured_schedule():
    assert _validations(trainer(5000, None), 5000, 1437 // 32) == 1  # the GAN demo: once, at the end
    assert _validations(trainer(400, None), 1200, 2500) == 3  # the inpainting demo (+1 before fit, from the task)
    assert _validations(trainer(1.0, 1), 100 * 10, 10) == 100  # once per epoch, 100 epochs
    assert _validations(trainer(0.5, 2), 100 * 10, 10) == 100  # twice every second epoch
    assert _validations(trainer(3, 1), 4 * 10, 10) == 12  # every 3 batches of a 10-batch epoch
    assert _validations(trainer(400, None, limit=0), 1200, 2500) == 0


def test_clock_excludes_the_warm_up():
    clock = Clock(warmup=2, measure=3)
    clock.start = 0.0
    clock.marks = [(10.0, 1, 4), (11.0, 3, 4), (12.0, 4, 4), (12.5, 6, 4), (13.0, 7, 4), (13.5, 9, 4)]
    summary = clock.summary()
    assert summary["batches_timed"] == 3 and summary["seconds_per_batch"] == pytest.approx(0.5)
    assert summary["steps_per_batch"] == pytest.approx(5 / 3) and summary["images_per_s"] == pytest.approx(12 / 1.5)
    assert summary["startup_s"] == 10.0
    clock.marks = clock.marks[:2]
    with pytest.raises(RuntimeError, match="only 2 training batches ran"):
        clock.summary()


def test_format_duration():
    assert format_duration(59) == "0:59" and format_duration(3723) == "01:02:03"
    assert format_duration(2 * 86400 + 3600) == "2d 01:00:00" and format_duration(float("nan")) == "unknown"
