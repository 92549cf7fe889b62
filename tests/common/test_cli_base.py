"""The shared CLI base on a tiny real module: offline W&B files, config saved, resume, Ctrl-C/crash checkpoint."""

import pytest
import pytorch_lightning as pl
import torch

from common.training.callbacks import log_image, stored_wandb_run_id
from common.training.cli import ANLightningCLI
from common.training.tracking import ANWandbLogger, wandb_offline_reason


class TinyModule(pl.LightningModule):
    def __init__(self, fail_at_step: int = -1):
        super().__init__()
        self.fail_at_step = fail_at_step
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at_step:
            raise RuntimeError("simulated crash")
        if batch_idx == 0:
            log_image(self.trainer, "train/picture", torch.rand(3, 4, 4))
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TinyData(pl.LightningDataModule):
    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(8, 2))
        return torch.utils.data.DataLoader(data, batch_size=2)


class TinyCLI(ANLightningCLI):
    task_name = "tiny"


def run(*args):
    return TinyCLI(TinyModule, TinyData, args=["fit", "--trainer.enable_progress_bar=false", *args])


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_fit_offline_wandb_and_run_folder(in_tmp, capsys):
    cli = run("--trainer.max_epochs=1")
    logger = cli.trainer.logger
    assert isinstance(logger, ANWandbLogger)
    run_dir = in_tmp / "runs" / "tiny" / "attentive-norm" / logger.version
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run_dir / "images").glob("train_picture_step*.png"))) == 1
    offline_runs = list((in_tmp / "runs" / "tiny" / "wandb").glob(f"offline-run-*-{logger.version}"))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("run-*.wandb"))
    assert stored_wandb_run_id(run_dir / "checkpoints" / "last.ckpt") == logger.version
    assert f"results in runs/tiny/attentive-norm/{logger.version}" in capsys.readouterr().out


def test_resume_last_continues_run_and_step(in_tmp):
    first = run("--trainer.max_epochs=1")
    run_id, steps = first.trainer.logger.version, first.trainer.global_step
    second = run("--trainer.max_epochs=2", "--ckpt_path=last")
    assert second.trainer.logger.version == run_id
    assert second.trainer.global_step == 2 * steps


def test_crash_inside_a_step_resumes_from_the_periodic_checkpoint(in_tmp, capsys):
    # An exception inside training_step: no on_exception.ckpt (the batch may be half applied); the periodic last.ckpt
    # (every 2 optimiser steps here) is what --ckpt_path last resumes.
    with pytest.raises(RuntimeError, match="simulated crash"):
        run("--trainer.max_epochs=3", "--model.fail_at_step=6", "--autosave.every_n_steps=2")
    runs = in_tmp / "runs" / "tiny" / "attentive-norm"
    assert not list(runs.glob("*/checkpoints/on_exception.ckpt"))
    assert "no on_exception.ckpt written: the exception came inside a training step" in capsys.readouterr().out
    ckpts = list(runs.glob("*/checkpoints/last.ckpt"))
    assert len(ckpts) == 1
    assert torch.load(ckpts[0], weights_only=True)["global_step"] == 6
    resumed = run("--trainer.max_epochs=3", "--ckpt_path=last")
    assert resumed.trainer.logger.version == ckpts[0].parent.parent.name
    assert resumed.trainer.global_step == 12


def test_logger_off(in_tmp, capsys):
    cli = run("--trainer.max_epochs=1", "--trainer.logger=false")
    assert cli.trainer.logger is None
    assert (in_tmp / "runs" / "tiny" / "checkpoints" / "last.ckpt").is_file()
    assert not (in_tmp / "runs" / "tiny" / "wandb").exists()
    assert "results in runs/tiny" in capsys.readouterr().out


def test_explicit_missing_checkpoint(in_tmp):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        run("--trainer.max_epochs=1", "--ckpt_path=nowhere.ckpt")


def test_offline_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline_reason() == "WANDB_MODE=offline"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.com login a password b\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert "credentials" in wandb_offline_reason()


def test_plain_fit_never_resumes_silently(in_tmp):
    with pytest.raises(RuntimeError, match="simulated crash"):
        run("--trainer.max_epochs=3", "--model.fail_at_step=6", "--trainer.logger=false", "--autosave.every_n_steps=3")
    crash_ckpt = in_tmp / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    assert torch.load(crash_ckpt, weights_only=True)["global_step"] == 6
    fresh = run("--trainer.max_epochs=1", "--trainer.logger=false")
    assert fresh.trainer.global_step == 4  # one epoch from scratch, not a resume
    resumed = run("--trainer.max_epochs=2", "--trainer.logger=false", "--ckpt_path=last")
    assert resumed.trainer.global_step == 8


def test_last_without_earlier_run_starts_fresh(in_tmp):
    cli = run("--trainer.max_epochs=1", "--ckpt_path=last")
    assert cli.trainer.global_step == 4


def test_second_fit_in_same_process_gets_its_own_run(in_tmp):
    first = run("--trainer.max_epochs=1").trainer.logger.version
    second = run("--trainer.max_epochs=1").trainer.logger.version
    assert first != second
    wandb_dir = in_tmp / "runs" / "tiny" / "wandb"
    for run_id in (first, second):
        assert len(list(wandb_dir.glob(f"offline-run-*-{run_id}"))) == 1


def test_unwritable_output_folder_fails_at_start(in_tmp):
    blocker = in_tmp / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match=r"the output folder .*a-file/runs is not writable"):
        run("--trainer.max_epochs=1", "--trainer.logger=false", f"--trainer.default_root_dir={blocker / 'runs'}")


def test_checkpoints_are_atomic_and_carry_rng_states(in_tmp):
    from common.training.checkpoints import AtomicCheckpointIO

    cli = run("--trainer.max_epochs=1", "--trainer.logger=false")
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert cli.config.fit.nonfinite.policy == "raise"
    ckpt = next((in_tmp / "runs" / "tiny").rglob("last.ckpt"))
    states = torch.load(ckpt, weights_only=True)["rng_states"]  # loadable without unpickling code
    assert len(states) == 1 and set(states[0]) >= {"python", "numpy", "torch"}
