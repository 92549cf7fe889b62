"""The Table 3 checkpoint rule (an_inpaint.reporting): the checkpoint at the configured step is the number, the best
phase-2 val-PSNR checkpoint goes beside it, labelled; phase-1 validations never pick a checkpoint."""

from pathlib import Path

import pytest
import torch
from test_inpaint_cli import PARIS, _tiny_paris

from an_inpaint.cli import ANInpaintCLI, cli_main
from an_inpaint.reporting import PHASE2_METRIC, RULE, BestInPhaseCheckpoint, checkpoint_label
from common.training.callbacks.checkpointing import checkpoint_dir


def test_labels() -> None:
    label, sentence = checkpoint_label("/r/best-phase2-psnr-step40.ckpt", 40, 100, 2)
    assert label == "best-phase2-val-psnr" and "beside the final" in sentence
    assert checkpoint_label("/r/last.ckpt", 100, 100, 2)[0] == "final"
    label, sentence = checkpoint_label("/r/last.ckpt", 100, 100, 1)
    assert label == "final" and "still in phase 1" in sentence
    label, sentence = checkpoint_label("/r/last.ckpt", 60, 100, 2)
    assert label == "intermediate" and "step 100" in sentence
    assert checkpoint_label(None, 60, -1, 2)[0] == "unknown-length"
    assert "every arm alike" in RULE


def test_the_cli_keeps_the_best_phase2_checkpoint() -> None:
    (callback,) = ANInpaintCLI.task_trainer_defaults["callbacks"]
    assert isinstance(callback, BestInPhaseCheckpoint) and callback.monitor == PHASE2_METRIC
    assert callback.mode == "max" and callback.filename.startswith("best-phase2-psnr")


def _fit(root, tmp_path, start: int, max_steps: int):
    common = _tiny_paris(root, tmp_path)
    args = ["fit", "--config", PARIS, *common, f"--model.schedule.adversarial_start_step={start}"]
    args += ["--model.n_critic=1", f"--trainer.max_steps={max_steps}", "--trainer.check_val_every_n_epoch=1"]
    args += ["--trainer.enable_checkpointing=true", "--trainer.num_sanity_val_steps=0"]
    return common, cli_main(args)


@pytest.mark.slow
def test_best_checkpoint_only_from_phase2_and_test_prints_the_rule(paris_root, tmp_path, capsys) -> None:
    # 4 training images, batch 2: 2 batches per epoch; phase 1 for 2 steps (epoch 1, one validation), then phase 2.
    common, cli = _fit(paris_root, tmp_path, start=2, max_steps=10)
    assert int(cli.model.phase) == 2
    folder = checkpoint_dir(cli.trainer)
    (best,) = sorted(folder.glob("best-phase2-psnr-step*.ckpt"))
    state = torch.load(best, map_location="cpu", weights_only=False)
    assert int(state["state_dict"]["phase"]) == 2 and state["global_step"] > 2
    capsys.readouterr()
    last = str(folder / "last.ckpt")
    tested = cli_main(["test", "--config", PARIS, *common, f"--ckpt_path={last}", "--trainer.max_steps=10"])
    out = capsys.readouterr().out
    assert tested.model.test_checkpoint["label"] == "final" and tested.model.test_checkpoint["step"] == 10
    assert "the Table 3 number" in out and "Table 3 rule" in out
    tested = cli_main(["test", "--config", PARIS, *common, f"--ckpt_path={best}", "--trainer.max_steps=10"])
    assert tested.model.test_checkpoint["label"] == "best-phase2-val-psnr"
    assert "best phase-2 val-PSNR checkpoint" in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_in_phase1_keeps_no_best_checkpoint(paris_root, tmp_path) -> None:
    _, cli = _fit(paris_root, tmp_path, start=1000, max_steps=4)  # two validations, both in phase 1
    assert int(cli.model.phase) == 1
    assert PHASE2_METRIC not in cli.trainer.callback_metrics
    folder = Path(checkpoint_dir(cli.trainer))
    assert not list(folder.glob("best-*.ckpt")) and (folder / "last.ckpt").is_file()
