"""Exact resume of ``python -m an_gan fit``: a run crashed mid-epoch and resumed from its checkpoint continues
step for step as the run that was never stopped (losses, parameters, EMA, data order, flips, noise)."""

import json
from pathlib import Path

import pytest
import torch
from run_helpers import (
    assert_same_final_state,
    assert_same_steps,
    fit_recorded,
    interrupt_checkpoint,
    run_task,
    stop_at,
)

from an_gan.cli import cli_main

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "an_gan" / "demo.yaml")
FEATURES = {"class_path": "common.metrics.generation.RandomProjectionExtractor", "init_args": {"feature_dim": 8}}


def _args(root: Path) -> list[str]:
    args = ["--config", DEMO, "--data.init_args.batch_size=8", "--data.init_args.hflip=true", "--model.n_dis=1",
            "--model.generator.init_args.ch=1", "--model.generator.init_args.z_dim=16",
            "--model.generator.init_args.long_range.init_args.num_entities=4", "--model.discriminator.init_args.ch=1",
            "--model.discriminator.init_args.long_range.init_args.num_entities=4", "--model.ema.start_step=1",
            "--model.ema.standing_batch_size=4", "--model.ema.standing_batches=1", "--model.pictures.every_n_steps=0",
            "--trainer.max_steps=14", "--trainer.val_check_interval=3", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={root}"]  # fmt: skip
    prefix = "--model.val_evaluator.init_args"
    args += [
        f"{prefix}.num_samples=12",
        f"{prefix}.batch_size=8",
        f"{prefix}.is_splits=2",
        f"{prefix}.intra_fid_num_per_class=2",
        f"{prefix}.kid_prc_num_samples=6",
        f"{prefix}.reference_cache_dir={root / 'refs'}",
        f"{prefix}.feature_extractor={json.dumps(FEATURES)}",
    ]
    return args  # fmt: skip


def _make(args):
    return cli_main(args, run=False)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("accumulate", [1, 2])  # 2: each D and G step in two micro-batches of 4
def test_crash_and_resume_matches_the_uninterrupted_run(tmp_path, accumulate):
    def args(root):
        return [*_args(root), f"--model.accumulate={accumulate}"]

    full, _ = fit_recorded(_make, args(tmp_path / "full"))
    assert len(full) == 7  # 7 iterations of one D and one G step (14 optimiser steps), validations after 3 and 6
    assert {"train/d_loss", "train/g_loss"} <= full[0]["logs"].keys()
    cut_root = tmp_path / "cut"
    first, _ = fit_recorded(_make, args(cut_root), crash_at=5)  # crash before the 5th batch, mid-epoch
    assert first == full[:4]
    second, trainer = fit_recorded(_make, args(cut_root), ckpt_path=interrupt_checkpoint(cut_root))
    assert trainer.global_step == 14
    assert_same_steps(first + second, full)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_same_seed_gives_the_same_run_with_a_cold_or_a_warm_reference_cache(tmp_path):
    # The first run computes the FID references at its first validation (cold cache), the second reads them (warm):
    # the evaluation draws nothing from the global RNG, so the training stream and the end are the same.
    refs = tmp_path / "refs"

    def args(root):
        return [a for a in _args(root) if ".reference_cache_dir=" not in a] + [
            f"--model.val_evaluator.init_args.reference_cache_dir={refs}"
        ]

    cold, cold_trainer = fit_recorded(_make, args(tmp_path / "cold"))
    assert list(refs.glob("*.pt")), "the first run should have filled the reference cache"
    warm, warm_trainer = fit_recorded(_make, args(tmp_path / "warm"))
    assert_same_steps(warm, cold)
    left, right = cold_trainer.lightning_module.state_dict(), warm_trainer.lightning_module.state_dict()
    assert left.keys() == right.keys()
    for key, value in left.items():
        assert torch.equal(value, right[key]), key


# ---------------------------------------------------------------------------------------------------------------------
# Real stops of `python -m an_gan fit` in its own process: kill -9, Ctrl-C and SIGTERM inside a training step, an
# exception inside the G update. 14 optimiser steps (7 iterations of one D and one G step), last.ckpt every 4 steps.


AUTOSAVE = ["--autosave.every_n_steps=4", "--autosave.every_minutes=null"]


@pytest.fixture(scope="module")
def reference_end(tmp_path_factory) -> Path:
    """The final ``last.ckpt`` of the uninterrupted run (one run, shared by the stop tests)."""
    full = tmp_path_factory.mktemp("full")
    done = run_task("an_gan", ["fit", *_args(full), *AUTOSAVE], full)
    assert done.returncode == 0, done.stderr[-3000:]
    return full / "checkpoints" / "last.ckpt"


def _stopped_then_resumed(tmp_path: Path, how: str, step: int) -> tuple[Path, str]:
    """Run with a stop at ``step``, resume with ``--ckpt_path last``; return the final checkpoint and the output."""
    cut = tmp_path / "cut"
    stopped = run_task("an_gan", ["fit", *_args(cut), *AUTOSAVE, stop_at(step, how)], cut)
    expected = {"kill": -9, "sigint": 130, "sigterm": 143, "raise": 1}[how]
    assert stopped.returncode == expected, (stopped.returncode, stopped.stderr[-3000:])
    resumed = run_task("an_gan", ["fit", *_args(cut), *AUTOSAVE, "--ckpt_path=last"], cut)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return cut / "checkpoints" / "last.ckpt", stopped.stdout + stopped.stderr + resumed.stdout + resumed.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("how", "step", "resumes_from"),
    [
        ("kill", 10, "last.ckpt"),  # kill -9 inside iteration 6: the periodic last.ckpt of step 8
        ("sigint", 9, "on_exception.ckpt"),  # Ctrl-C inside the G update of iteration 5: stops after that batch
        ("sigterm", 6, "on_exception.ckpt"),  # SIGTERM inside a D update
        ("raise", 11, "last.ckpt"),  # an exception inside the G update (the batch's D update is applied)
    ],
)
def test_a_stop_anywhere_resumes_to_the_uninterrupted_end(tmp_path, reference_end, how, step, resumes_from):
    resumed, output = _stopped_then_resumed(tmp_path, how, step)
    assert f"--ckpt_path last: resuming {resumed.parent / resumes_from}" in output
    assert_same_final_state(resumed, reference_end)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_finished_run_continued_equals_the_direct_run(tmp_path, reference_end):
    # 8 optimiser steps, then the same run continued from its last.ckpt to 14: the same end as 14 steps directly
    # (last.ckpt is written after the last batch, before the end-of-training pictures and the demo's judge draw
    # random numbers).
    cut = tmp_path / "cut"
    short = [arg.replace("--trainer.max_steps=14", "--trainer.max_steps=8") for arg in _args(cut)]
    assert run_task("an_gan", ["fit", *short], cut).returncode == 0
    last = cut / "checkpoints" / "last.ckpt"
    assert run_task("an_gan", ["fit", *_args(cut), f"--ckpt_path={last}"], cut).returncode == 0
    assert_same_final_state(last, reference_end)
