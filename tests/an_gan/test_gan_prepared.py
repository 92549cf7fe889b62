"""``python -m an_gan fit`` on prepared ImageNet (``--data common.data.prepared.PreparedImageNetDataModule``): step
for step the run on the raw JPEG folders (same batches, flips, evaluation references), and exact resume after a
crash mid-epoch, with DataLoader workers reading the LitData stream."""

import json
from pathlib import Path

import pytest
from prepared_helpers import write_imagenet_tree
from run_helpers import assert_same_steps, fit_recorded, interrupt_checkpoint

from an_gan.cli import cli_main

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "an_gan" / "imagenet128.yaml")
FEATURES = {"class_path": "common.metrics.generation.RandomProjectionExtractor", "init_args": {"feature_dim": 8}}


def _args(data: list[str], root: Path) -> list[str]:
    args = ["--config", CONFIG, *data, "--data.init_args.resolution=32", "--data.init_args.batch_size=4",
            "--data.init_args.num_workers=2", "--data.init_args.hflip=true",
            "--model.generator.init_args.ch=1", "--model.generator.init_args.z_dim=16",
            "--model.generator.init_args.long_range.init_args.num_entities=4", "--model.discriminator.init_args.ch=1",
            "--model.discriminator.init_args.long_range.init_args.num_entities=4", "--model.ema.start_step=1",
            "--model.ema.standing_batch_size=4", "--model.ema.standing_batches=1", "--model.pictures.classes=null",
            "--model.pictures.every_n_steps=0", "--trainer.accelerator=cpu", "--trainer.max_steps=10",
            "--trainer.val_check_interval=3", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={root}"]  # fmt: skip
    prefix = "--model.val_evaluator.init_args"
    args += [f"{prefix}.num_samples=8", f"{prefix}.batch_size=4", f"{prefix}.is_splits=2",
             f"{prefix}.intra_fid_classes=all", f"{prefix}.intra_fid_num_per_class=2",
             f"{prefix}.kid_prc_num_samples=4", f"{prefix}.reference_cache_dir={root / 'refs'}",
             f"{prefix}.feature_extractor={json.dumps(FEATURES)}"]  # fmt: skip
    return args


def _make(args):
    return cli_main(args, run=False)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fit_on_prepared_data_matches_the_raw_run_and_resumes_exactly(tmp_path):
    raw_root = write_imagenet_tree(tmp_path / "imagenet")
    labels = str(raw_root / "LOC_val_solution.csv")
    prepared = tmp_path / "imagenet32"
    manifest = cli_main(["prepare", "--root", str(raw_root), "--output", str(prepared), "--resolution", "32",
                         "--val_labels_file", labels, "--num_workers", "2", "--verbose", "false"])  # fmt: skip
    assert manifest["splits"]["train"]["count"] == 12
    raw_data = ["--data", "common.data.imagenet.ImageNetDataModule", f"--data.init_args.root={raw_root}",
                f"--data.init_args.val_labels_file={labels}"]  # fmt: skip
    prepared_data = ["--data", "common.data.prepared.PreparedImageNetDataModule", f"--data.init_args.root={prepared}"]

    raw_run, _ = fit_recorded(_make, _args(raw_data, tmp_path / "raw"))
    full, trainer = fit_recorded(_make, _args(prepared_data, tmp_path / "full"))
    assert type(trainer.datamodule).__name__ == "PreparedImageNetDataModule" and trainer.global_step == 10
    assert len(full) == 5 and "val/fid" in full[3]["logs"]  # 5 iterations, 2 epochs; validation after 3
    assert_same_steps(full, raw_run)  # the same batches, flips, noise and evaluation: the same losses and weights

    cut = tmp_path / "cut"
    first, _ = fit_recorded(_make, _args(prepared_data, cut), crash_at=5)  # 2nd batch of epoch 1 (3 per epoch)
    assert first == full[:4]
    second, trainer = fit_recorded(_make, _args(prepared_data, cut), ckpt_path=interrupt_checkpoint(cut))
    assert trainer.global_step == 10
    assert_same_steps(first + second, full)
