"""``common.training.optimization.manual_step``: one toggled update of one optimiser, the other network untouched."""

import pytest
import pytorch_lightning as pl
import torch

from common.training.optimization import manual_step


class TwoNets(pl.LightningModule):
    def __init__(self, fail: bool = False):
        super().__init__()
        self.automatic_optimization = False
        self.a = torch.nn.Linear(3, 1)
        self.b = torch.nn.Linear(3, 1)
        self.fail = fail
        self.seen_requires_grad: list[bool] = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.a.parameters(), lr=0.5), torch.optim.SGD(self.b.parameters(), lr=0.5)

    def training_step(self, batch, batch_idx):
        opt_a, _ = self.optimizers()
        x = batch[0]

        def loss_fn():
            self.seen_requires_grad.append(self.b.weight.requires_grad)
            if self.fail:
                raise RuntimeError("boom")
            loss = (self.a(x) + self.b(x)).pow(2).mean()
            return loss, {"value": loss.detach()}

        loss, logs = manual_step(self, opt_a, loss_fn)
        assert torch.equal(logs["value"], loss.detach())


def fit(module):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 3)), batch_size=4)
    trainer = pl.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(module, data)


def test_updates_only_its_optimizer_and_untoggles():
    torch.manual_seed(0)
    module = TwoNets()
    a0, b0 = module.a.weight.detach().clone(), module.b.weight.detach().clone()
    fit(module)
    assert not torch.equal(module.a.weight, a0)
    assert torch.equal(module.b.weight, b0)
    assert module.seen_requires_grad == [False]  # the other network was frozen during the forward pass
    assert module.b.weight.requires_grad  # and unfrozen afterwards
    assert module.b.weight.grad is None


def test_untoggles_when_the_loss_raises():
    module = TwoNets(fail=True)
    with pytest.raises(RuntimeError, match="boom"):
        fit(module)
    assert module.b.weight.requires_grad
