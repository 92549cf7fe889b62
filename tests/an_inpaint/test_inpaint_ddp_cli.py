"""``python -m an_inpaint`` under DDP on CPU (2 gloo processes): fit (through both phases), validate and test run,
and validating a checkpoint under DDP gives the numbers of one process (3 validation crops over 2 ranks: uneven)."""

from pathlib import Path

import pytest
from run_helpers import run_cli_processes

from an_inpaint.cli import cli_main

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "an_inpaint" / "demo.yaml")
DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
KEYS = ("psnr", "ssim", "mae", "psnr_hole", "ssim_hole", "mae_hole", "num_images")


def _args(root: Path) -> list[str]:
    return ["--config", DEMO, "--data.init_args.resolution=32", "--data.init_args.batch_size=2",
            "--data.init_args.train_samples_per_epoch=32", "--data.init_args.num_val=3", "--data.init_args.num_test=3",
            "--data.init_args.val_batch_size=2",
            "--model.generator.init_args.cnum=4", "--model.generator.init_args.long_range.init_args.num_entities=4",
            "--model.global_critic.init_args.input_size=32", "--model.global_critic.init_args.cnum=4",
            "--model.local_critic.init_args.cnum=4", "--model.schedule.adversarial_start_step=2", "--model.n_critic=2",
            "--model.val_evaluator.baselines=[telea]", "--model.schedule.lr_decay=constant", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={root}"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fit_validate_test_under_ddp_and_the_same_numbers_as_one_process(tmp_path):
    root = tmp_path / "run"
    args = _args(root)
    ckpt = str(root / "checkpoints" / "last.ckpt")
    out = run_cli_processes(
        "an_inpaint",
        [["fit", *args, *DDP, "--trainer.max_steps=6", "--trainer.val_check_interval=2", "--test_after_fit=false"],
         ["validate", *args, *DDP, f"--ckpt_path={ckpt}"],
         ["test", *args, *DDP, f"--ckpt_path={ckpt}"]],
        tmp_path / "ddp",
    )  # fmt: skip
    assert out["world_size"] == [2, 2, 2]
    fit, validated, tested = out["metrics"]
    assert fit["train/phase"] == 2 and "val/psnr" in fit and "test/psnr" in tested
    assert validated["val/num_images"] == 3
    one = cli_main(["validate", *args, "--trainer.devices=1", f"--ckpt_path={ckpt}"]).trainer.callback_metrics
    for key in KEYS:
        assert validated[f"val/{key}"] == pytest.approx(float(one[f"val/{key}"]), rel=1e-5, abs=1e-6), key
    assert validated["val/telea/psnr"] == pytest.approx(float(one["val/telea/psnr"]), rel=1e-5)
