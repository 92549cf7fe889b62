import pytorch_lightning as pl
from pytorch_lightning.strategies import DDPStrategy

from common.training.ddp import allow_unused_parameters


def test_turns_on_find_unused_parameters_for_ddp():
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    assert allow_unused_parameters(trainer)
    assert trainer.strategy._ddp_kwargs["find_unused_parameters"] is True


def test_respects_an_explicit_choice():
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(find_unused_parameters=False), logger=False)
    assert not allow_unused_parameters(trainer)
    assert trainer.strategy._ddp_kwargs["find_unused_parameters"] is False


def test_leaves_other_strategies_alone():
    assert not allow_unused_parameters(pl.Trainer(accelerator="cpu", devices=1, logger=False))
