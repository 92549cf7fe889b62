"""Exact resume of ``python -m an_inpaint fit``: a run crashed mid-epoch, in the adversarial phase, and resumed from
its checkpoint continues step for step as the run that was never stopped (losses, parameters, phase, critic steps,
data order, crops, masks, augmentation)."""

from pathlib import Path

import pytest
from run_helpers import (
    assert_same_final_state,
    assert_same_steps,
    fit_recorded,
    interrupt_checkpoint,
    run_task,
    stop_at,
)

from an_inpaint.cli import cli_main

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "an_inpaint" / "demo.yaml")


def _args(root: Path) -> list[str]:
    return ["--config", DEMO, "--data.init_args.resolution=32", "--data.init_args.batch_size=2",
            "--data.init_args.train_samples_per_epoch=64", "--data.init_args.num_val=1", "--data.init_args.num_test=1",
            "--model.generator.init_args.cnum=4", "--model.generator.init_args.long_range.init_args.num_entities=4",
            "--model.global_critic.init_args.input_size=32", "--model.global_critic.init_args.cnum=4",
            "--model.local_critic.init_args.cnum=4", "--model.schedule.adversarial_start_step=3", "--model.n_critic=2",
            "--model.val_evaluator.baselines=[]", "--model.schedule.lr_decay=constant", "--trainer.max_steps=-1",
            "--trainer.limit_train_batches=8",
            "--trainer.max_epochs=1", "--trainer.val_check_interval=4", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={root}"]  # fmt: skip


def _make(args):
    return cli_main(args, run=False)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_crash_and_resume_matches_the_uninterrupted_run(tmp_path):
    full, _ = fit_recorded(_make, _args(tmp_path / "full"))
    assert len(full) == 8
    assert "train/d_wgan" not in full[2]["logs"] and "train/d_wgan" in full[3]["logs"]  # phase 2 from batch 4
    assert "train/adv" in full[4]["logs"] and "train/adv" not in full[5]["logs"]  # G on every n_critic-th batch
    cut_root = tmp_path / "cut"
    first, _ = fit_recorded(_make, _args(cut_root), crash_at=6)  # in phase 2, between a critic and a G batch
    assert first == full[:5]
    second, trainer = fit_recorded(_make, _args(cut_root), ckpt_path=interrupt_checkpoint(cut_root))
    assert_same_steps(first + second, full)
    assert int(trainer.lightning_module.critic_steps) == 5  # batches 4..8 of phase 2, across the interruption


AUTOSAVE = ["--autosave.every_n_steps=3", "--autosave.every_minutes=null"]


@pytest.fixture(scope="module")
def reference_end(tmp_path_factory) -> Path:
    """The final ``last.ckpt`` of the uninterrupted run in its own process (shared by the stop tests)."""
    full = tmp_path_factory.mktemp("full")
    done = run_task("an_inpaint", ["fit", *_args(full), *AUTOSAVE], full)
    assert done.returncode == 0, done.stderr[-3000:]
    return full / "checkpoints" / "last.ckpt"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("how", "step", "resumes_from"), [("kill", 9, "last.ckpt"), ("sigint", 8, "on_exception.ckpt")]
)
def test_a_stop_in_its_own_process_resumes_to_the_uninterrupted_end(tmp_path, reference_end, how, step, resumes_from):
    # `python -m an_inpaint fit` killed with SIGKILL (no warning: the periodic last.ckpt, every 3 optimiser steps, is
    # what is left) or stopped with Ctrl-C inside a step of phase 2, then `--ckpt_path last`: the same final weights,
    # buffers (phase, critic steps) and optimiser states as the run that never stopped.
    cut = tmp_path / "cut"
    stopped = run_task("an_inpaint", ["fit", *_args(cut), *AUTOSAVE, stop_at(step, how)], cut)
    assert stopped.returncode == {"kill": -9, "sigint": 130}[how], stopped.stderr[-3000:]
    resumed = run_task("an_inpaint", ["fit", *_args(cut), *AUTOSAVE, "--ckpt_path=last"], cut)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"--ckpt_path last: resuming {cut / 'checkpoints' / resumes_from}" in resumed.stdout + resumed.stderr
    assert_same_final_state(cut / "checkpoints" / "last.ckpt", reference_end)
