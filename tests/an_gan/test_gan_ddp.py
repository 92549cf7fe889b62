"""``python -m an_gan`` under DDP on CPU (2 gloo processes): fit, validate and test run, and the evaluation of a
checkpoint under DDP gives the numbers of one process (FID / IS / KID / P&R / intra-FID with the stand-in
extractor; 30 samples over 2 ranks and batches of 8, so the last batches are uneven)."""

import json
import time
from pathlib import Path

import pytest
from run_helpers import run_cli_processes, run_task, stop_at

from an_gan.cli import cli_main

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "an_gan" / "demo.yaml")
FEATURES = {"class_path": "common.metrics.generation.RandomProjectionExtractor", "init_args": {"feature_dim": 8}}
DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
KEYS = ("fid", "is_mean", "is_std", "kid_mean", "precision", "recall", "intra_fid")


def _args(root: Path) -> list[str]:
    args = ["--config", DEMO, "--data.init_args.batch_size=8", "--model.generator.init_args.ch=1",
            "--model.generator.init_args.z_dim=16", "--model.generator.init_args.long_range.init_args.num_entities=4",
            "--model.discriminator.init_args.ch=1",
            "--model.discriminator.init_args.long_range.init_args.num_entities=4",
            "--model.ema.start_step=1", "--model.ema.standing_batch_size=4", "--model.ema.standing_batches=1",
            "--model.pictures.every_n_steps=0", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={root}"]  # fmt: skip
    for stage in ("val_evaluator", "test_evaluator"):
        prefix = f"--model.{stage}.init_args"
        args += [
            f"{prefix}.num_samples=30",
            f"{prefix}.batch_size=8",
            f"{prefix}.is_splits=2",
            f"{prefix}.intra_fid_num_per_class=3",
            f"{prefix}.kid_prc_num_samples=10",
            f"{prefix}.reference_cache_dir={root / 'refs'}",
            f"{prefix}.feature_extractor={json.dumps(FEATURES)}",
        ]
    return args  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fit_validate_test_under_ddp_and_the_same_numbers_as_one_process(tmp_path):
    root = tmp_path / "run"
    args = _args(root)
    ckpt = str(root / "checkpoints" / "last.ckpt")
    out = run_cli_processes(
        "an_gan",
        [["fit", *args, *DDP, "--trainer.max_steps=8", "--trainer.val_check_interval=2"],
         ["validate", *args, *DDP, f"--ckpt_path={ckpt}"],
         ["test", *args, *DDP, f"--ckpt_path={ckpt}"]],
        tmp_path / "ddp",
    )  # fmt: skip
    assert out["world_size"] == [2, 2, 2]
    fit, validated, tested = out["metrics"]
    assert "val/fid" in fit and "test/fid" in tested
    one = cli_main(["validate", *args, "--trainer.devices=1", f"--ckpt_path={ckpt}"]).trainer.callback_metrics
    for key in KEYS:
        assert validated[f"val/{key}"] == pytest.approx(float(one[f"val/{key}"]), rel=1e-4, abs=1e-5), (
            key
        )  # float sums in another order
    assert validated["val/fid"] == pytest.approx(fit["val/fid"], rel=1e-4)  # the last in-training validation


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("rank", "how"), [(1, "raise_between"), (0, "raise_between"), (1, "raise")])
def test_one_failing_rank_ends_the_job(tmp_path, rank, how):
    # An exception on one rank only (a corrupt image in its shard, a bug): every process ends, non-zero, in bounded
    # time, with the failing rank's error printed; no checkpoint is attempted (it would need the other rank).
    root = tmp_path / "run"
    start = time.monotonic()
    done = run_task("an_gan", ["fit", *_args(root), *DDP, "--trainer.max_steps=40", stop_at(4, how, rank)], root,
                    timeout=300)  # fmt: skip
    elapsed = time.monotonic() - start
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"optimiser step 4 on rank {rank}" in output and "simulated failure" in output
    assert f"[rank {rank}] RuntimeError" in output and "no on_exception.ckpt written" in output
    assert not (root / "checkpoints" / "on_exception.ckpt").exists()
    assert elapsed < 240, elapsed
