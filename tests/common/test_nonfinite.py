"""Non-finite losses: a clear error naming step and term with the last good checkpoint kept, or a counted skip."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from common.training.callbacks import InterruptCheckpoint
from common.training.callbacks.nonfinite import NonFiniteGuard, NonFiniteLossError
from common.training.optimization import manual_step


class Model(pl.LightningModule):
    """One manual update per batch; at batch ``bad_step`` the ``adv`` term of the loss is NaN."""

    def __init__(self, bad_step: int = -1):
        super().__init__()
        self.automatic_optimization = False
        self.net = torch.nn.Linear(2, 1)
        self.bad_step = bad_step
        self.weights: list[torch.Tensor] = []

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.1)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        step = batch_idx

        def loss_fn():
            rec = self.net(batch[0]).pow(2).mean()
            adv = rec * 0 + (float("nan") if step == self.bad_step else 0.5)
            return rec + adv, {"rec": rec.detach(), "adv": adv.detach()}

        manual_step(self, opt, loss_fn, name="generator")
        self.weights.append(self.net.weight.detach().clone())


def fit(tmp_path, guard, bad_step):
    model = Model(bad_step)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 2)), batch_size=2)
    trainer = pl.Trainer(
        max_epochs=1,
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            guard,
            InterruptCheckpoint(),
            ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, filename="{step}"),
        ],
    )
    trainer.fit(model, data)
    return model, trainer


def test_raise_names_step_and_term_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"optimiser step 5 \(generator update\): loss = nan, adv = nan") as e:
        fit(tmp_path, NonFiniteGuard("raise", check_every_n_steps=50), bad_step=5)
    assert "rec = " in str(e.value)  # the finite terms are listed too
    # checkpoints of steps 2 and 4 were written; the one due after step 6 was refused, and no on_exception.ckpt
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["step=2.ckpt", "step=4.ckpt"]
    assert not list(tmp_path.rglob(InterruptCheckpoint.FILENAME))
    state = torch.load(tmp_path / "step=4.ckpt", weights_only=False)["state_dict"]
    assert torch.isfinite(state["net.weight"]).all()


def test_raise_checks_every_n_steps(tmp_path):
    with pytest.raises(NonFiniteLossError, match="step 1 "):
        fit(tmp_path, NonFiniteGuard("raise", check_every_n_steps=1), bad_step=1)
    assert not list(tmp_path.glob("*.ckpt"))  # stopped at step 1, before the first checkpoint


def test_finite_run_is_untouched(tmp_path):
    model, _ = fit(tmp_path, NonFiniteGuard("raise"), bad_step=-1)
    assert len(model.weights) == 8 and torch.isfinite(model.weights[-1]).all()


def test_skip_leaves_weights_and_optimizer_alone_and_counts(tmp_path):
    guard = NonFiniteGuard("skip")
    match = r"skipping the update \(1 skipped so far; training goes on\): non-finite loss at optimiser step 3"
    with pytest.warns(UserWarning, match=match) as caught:
        model, trainer = fit(tmp_path, guard, bad_step=3)
    assert not any("Training stopped" in str(w.message) for w in caught)  # skip does not stop
    assert guard.skipped == 1
    assert torch.equal(model.weights[3], model.weights[2])  # step 3 did not update
    assert not torch.equal(model.weights[4], model.weights[3])  # training went on
    assert torch.isfinite(model.weights[-1]).all()
    assert trainer.optimizers[0].state[model.net.weight]["step"] == 7  # 8 batches, one skipped
    assert trainer.callback_metrics["train/nonfinite_skipped"] == 1


def test_skip_gives_up_after_max_skips(tmp_path):
    class AlwaysBad(Model):
        def training_step(self, batch, batch_idx):
            self.bad_step = batch_idx
            super().training_step(batch, batch_idx)

    guard = NonFiniteGuard("skip", max_skips=2)
    model = AlwaysBad()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 2)), batch_size=2)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, callbacks=[guard])
    with pytest.warns(UserWarning, match="skipping"), pytest.raises(NonFiniteLossError, match="3 non-finite losses"):
        trainer.fit(model, data)


def test_bad_arguments():
    with pytest.raises(ValueError, match="policy must be"):
        NonFiniteGuard("ignore")
    with pytest.raises(ValueError, match="check_every_n_steps"):
        NonFiniteGuard(check_every_n_steps=0)
