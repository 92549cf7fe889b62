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


def test_the_process_group_timeout_comes_from_the_config(monkeypatch, tmp_path):
    # docs/distributed.md: --trainer.strategy as DDPStrategy's class path, its timeout as H:MM:SS (a timedelta)
    from datetime import timedelta
    from pathlib import Path

    import torch

    from an_gan.cli import cli_main

    demo = Path(__file__).resolve().parents[2] / "configs" / "an_gan" / "demo.yaml"
    args = ["--config", str(demo), "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}",
            "--trainer.strategy=pytorch_lightning.strategies.DDPStrategy",
            "--trainer.strategy.init_args.timeout=1:30:00"]  # fmt: skip
    # jsonargparse passes every DistributedDataParallel argument, find_unused_parameters=False included, which
    # allow_unused_parameters then respects as the user's choice: the page's command turns it on itself
    assert not allow_unused_parameters(cli_main(args, run=False).trainer)
    cli = cli_main([*args, "--trainer.strategy.init_args.find_unused_parameters=true"], run=False)
    strategy = cli.trainer.strategy
    assert isinstance(strategy, DDPStrategy) and strategy._timeout == timedelta(hours=1, minutes=30)
    assert allow_unused_parameters(cli.trainer)
    # ... and it is what Lightning hands to torch.distributed.init_process_group (one CPU process, gloo)
    seen = {}
    init = torch.distributed.init_process_group

    def recording(*a, **kw):
        seen.update(kw)
        return init(*a, **kw)

    monkeypatch.setattr(torch.distributed, "init_process_group", recording)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    try:
        strategy.setup_environment()
        assert seen["timeout"] == timedelta(hours=1, minutes=30)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
