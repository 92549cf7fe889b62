"""``--speed.channels_last`` and ``--speed.compile`` train like the plain run (same losses step for step, within
float tolerance), keep the checkpoint keys of the plain run, and reject unknown network names."""

import math
from pathlib import Path

import pytest
import torch
from run_helpers import fit_recorded

from an_gan.cli import cli_main as gan_cli
from common.training.callbacks.speed import SpeedOptions

ROOT = Path(__file__).resolve().parents[2]


def _args(root: Path, *extra: str) -> list[str]:
    return ["--config", str(ROOT / "configs/an_gan/demo.yaml"), "--data.init_args.batch_size=8",
            "--model.generator.init_args.ch=1", "--model.generator.init_args.z_dim=16",
            "--model.generator.init_args.long_range.init_args.num_entities=4", "--model.discriminator.init_args.ch=1",
            "--model.discriminator.init_args.long_range.init_args.num_entities=4", "--model.ema.standing_batch_size=4",
            "--model.ema.standing_batches=1", "--model.val_evaluator=null", "--model.pictures.every_n_steps=0",
            "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.max_steps=6", f"--trainer.default_root_dir={root}", *extra]  # fmt: skip


def _close(rows, reference, rel):
    assert len(rows) == len(reference)
    for got, want in zip(rows, reference, strict=True):
        assert got["logs"].keys() == want["logs"].keys()
        for key, value in want["logs"].items():
            assert math.isclose(got["logs"][key], value, rel_tol=rel, abs_tol=1e-5), (got["step"], key)
        # Adam turns float-level gradient differences into update-sized ones: parameters agree to ~1e-5
        assert math.isclose(got["params"], want["params"], rel_tol=1e-4), got["step"]


def _make(args):
    return gan_cli(args, run=False)


@pytest.mark.timeout(600)
def test_channels_last_trains_like_the_plain_run(tmp_path):
    plain, _ = fit_recorded(_make, _args(tmp_path / "a"))
    rows, trainer = fit_recorded(_make, _args(tmp_path / "b", "--speed.channels_last=true"))
    weight = trainer.lightning_module.generator.blocks[0].conv1.weight
    assert weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last)
    _close(rows, plain, rel=1e-3)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compile_trains_like_the_plain_run_and_keeps_checkpoint_keys(tmp_path):
    plain, plain_trainer = fit_recorded(_make, _args(tmp_path / "a"))
    rows, trainer = fit_recorded(
        _make, _args(tmp_path / "b", "--speed.compile=true", "--speed.compile_backend=aot_eager")
    )
    assert trainer.lightning_module.generator._compiled_call_impl is not None
    _close(rows, plain, rel=1e-3)
    keys = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"].keys()
    assert keys == plain_trainer.lightning_module.state_dict().keys()


def test_unknown_network_name():
    import pytorch_lightning as pl

    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match=r"\['nope'\] are not sub-modules of M"):
        SpeedOptions(compile=True, networks=["nope"]).setup(None, M(), "fit")
