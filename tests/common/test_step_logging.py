"""``common.training.step_logging.is_logging_step``: training values are logged only on the steps the loggers
receive, and
the loggers receive exactly what they received when every step logged."""

import pytest
import pytorch_lightning as pl
import torch
from run_helpers import MetricsRecorder
from torch.utils.data import DataLoader, TensorDataset

from common.training.step_logging import is_logging_step


class _Module(pl.LightningModule):
    def __init__(self, guarded: bool) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.guarded, self.calls = guarded, 0

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).square().mean()
        if not self.guarded or is_logging_step(self):
            self.calls += 1
            self.log("train/loss", loss)
            self.log("train/batch", float(batch_idx))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path, guarded: bool, every: int):
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(24, 2)), batch_size=2)
    logger = MetricsRecorder()
    module = _Module(guarded)
    trainer = pl.Trainer(
        default_root_dir=tmp_path, max_epochs=2, log_every_n_steps=every, logger=logger, accelerator="cpu",
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, data)
    return module, logger, trainer


@pytest.mark.timeout(120)
@pytest.mark.parametrize("every", [1, 5])
def test_loggers_receive_the_same_values(tmp_path, every):
    plain_module, plain, _ = _fit(tmp_path / "plain", guarded=False, every=every)
    guarded_module, guarded, trainer = _fit(tmp_path / "guarded", guarded=True, every=every)
    rows = [r for r in plain.rows if r[1]]
    assert rows and [r for r in guarded.rows if r[1]] == rows
    assert plain_module.calls == 24
    # 12 batches per epoch: logged on the first batch and the batches Lightning writes (every `every`-th)
    assert guarded_module.calls == (24 if every == 1 else 1 + 24 // every)
    assert "train/loss" in trainer.callback_metrics


def test_without_trainer_logs():
    assert is_logging_step(_Module(guarded=True))
