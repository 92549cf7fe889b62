"""``python -m an_inpaint`` on prepared Paris StreetView under DDP (2 CPU processes): fit, then validation counts every
image once (3 validation images on 2 ranks) and gives the numbers of one process."""

from pathlib import Path

import pytest
from prepared_helpers import write_paris_tree
from run_helpers import run_cli_processes

from an_inpaint.cli import cli_main

PARIS = str(Path(__file__).resolve().parents[2] / "configs" / "an_inpaint" / "paris256.yaml")
DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
KEYS = ("psnr", "ssim", "mae", "psnr_hole", "ssim_hole", "mae_hole", "num_images")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ddp_fit_and_validation_on_prepared_paris_count_every_image_once(tmp_path):
    raw = write_paris_tree(tmp_path / "raw", n_train=6)
    prepared = tmp_path / "paris32"
    cli_main(["prepare", "--root", str(raw), "--output", str(prepared), "--resolution", "32", "--val_images", "3",
              "--num_workers", "1", "--verbose", "false"])  # fmt: skip
    root = tmp_path / "run"
    args = ["--config", PARIS, "--data", "common.data.prepared.PreparedParisStreetViewDataModule",
            f"--data.root={prepared}", "--data.resolution=32", "--data.batch_size=1", "--data.num_workers=0",
            "--data.val_images=3", "--data.val_batch_size=2", "--model.generator.init_args.cnum=4",
            "--model.generator.init_args.long_range.init_args.num_entities=4", "--model.global_critic.init_args.cnum=4",
            "--model.global_critic.init_args.input_size=32", "--model.local_critic.init_args.cnum=4",
            "--model.local_critic.init_args.input_size=16", "--model.val_evaluator.baselines=[telea]",
            "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={root}"]  # fmt: skip
    ckpt = str(root / "checkpoints" / "last.ckpt")
    out = run_cli_processes(
        "an_inpaint",
        [["fit", *args, *DDP, "--trainer.max_steps=2", "--validate_before_fit=false"],
         ["validate", *args, *DDP, f"--ckpt_path={ckpt}"]],
        tmp_path / "ddp",
    )  # fmt: skip
    assert out["world_size"] == [2, 2]
    validated = out["metrics"][1]
    assert validated["val/num_images"] == 3
    one = cli_main(["validate", *args, "--trainer.devices=1", f"--ckpt_path={ckpt}"]).trainer.callback_metrics
    for key in KEYS:
        assert validated[f"val/{key}"] == pytest.approx(float(one[f"val/{key}"]), rel=1e-5, abs=1e-6), key
