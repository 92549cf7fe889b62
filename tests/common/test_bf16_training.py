"""``--trainer.precision bf16-mixed`` trains both tasks without a non-finite loss: a few hundred tiny optimiser
steps on the CPU (the non-finite guard raises on the first NaN / inf, so finishing is the check; every logged loss
is checked too)."""

import json
import math
from pathlib import Path

import pytest
from run_helpers import fit_recorded

from an_gan.cli import cli_main as gan_cli
from an_inpaint.cli import cli_main as inpaint_cli

ROOT = Path(__file__).resolve().parents[2]
FEATURES = {"class_path": "common.metrics.generation.RandomProjectionExtractor", "init_args": {"feature_dim": 8}}
COMMON = ["--trainer.precision=bf16-mixed", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
          "--trainer.enable_model_summary=false", "--nonfinite.policy=raise",
          "--nonfinite.check_every_n_steps=1"]  # fmt: skip


def _finite(rows: list[dict]) -> None:
    for row in rows:
        bad = {k: v for k, v in row["logs"].items() if not math.isfinite(v)}
        assert not bad and math.isfinite(row["params"]), (row["step"], bad)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gan_bf16_mixed(tmp_path):
    args = ["--config", str(ROOT / "configs/an_gan/demo.yaml"), "--data.init_args.resolution=16",
            "--data.init_args.batch_size=16", "--model.n_dis=1", "--model.generator.init_args.ch=2",
            "--model.generator.init_args.z_dim=16",
            "--model.generator.init_args.long_range.init_args.num_entities=4",
            "--model.generator.init_args.long_range_block=0", "--model.discriminator.init_args.ch=2",
            "--model.discriminator.init_args.long_range.init_args.num_entities=4",
            "--model.ema.start_step=1", "--model.ema.standing_batch_size=8", "--model.ema.standing_batches=1",
            "--model.pictures.every_n_steps=0", "--trainer.max_steps=300", "--trainer.val_check_interval=150",
            f"--trainer.default_root_dir={tmp_path}", *COMMON]  # fmt: skip
    prefix = "--model.val_evaluator.init_args"
    args += [f"{prefix}.num_samples=20", f"{prefix}.batch_size=10", f"{prefix}.is_splits=2",
             f"{prefix}.intra_fid_num_per_class=2", f"{prefix}.kid_prc_num_samples=10",
             f"{prefix}.reference_cache_dir={tmp_path / 'refs'}",
             f"{prefix}.feature_extractor={json.dumps(FEATURES)}"]  # fmt: skip
    rows, trainer = fit_recorded(lambda a: gan_cli(a, run=False), args)
    assert trainer.global_step == 300 and len(rows) == 150
    assert trainer.precision == "bf16-mixed"
    _finite(rows)
    assert math.isfinite(float(trainer.callback_metrics["val/fid"]))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_inpaint_bf16_mixed(tmp_path):
    args = ["--config", str(ROOT / "configs/an_inpaint/demo.yaml"), "--data.init_args.resolution=32",
            "--data.init_args.batch_size=4", "--data.init_args.num_val=2", "--data.init_args.num_test=2",
            "--model.generator.init_args.cnum=4", "--model.generator.init_args.long_range.init_args.num_entities=4",
            "--model.global_critic.init_args.input_size=32", "--model.global_critic.init_args.cnum=4",
            "--model.local_critic.init_args.cnum=4", "--model.schedule.adversarial_start_step=100",
            "--model.n_critic=2", "--model.val_evaluator.baselines=[]", "--trainer.max_steps=300",
            "--trainer.val_check_interval=100",
            f"--trainer.default_root_dir={tmp_path}", *COMMON]  # fmt: skip
    rows, trainer = fit_recorded(lambda a: inpaint_cli(a, run=False), args)
    assert trainer.global_step >= 300 and int(trainer.lightning_module.phase) == 2  # a G batch makes 2 steps
    assert any("train/adv" in r["logs"] for r in rows) and any("train/gp" in r["logs"] for r in rows)
    _finite(rows)
    assert math.isfinite(float(trainer.callback_metrics["val/psnr"]))
