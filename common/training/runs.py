"""The run folder and the one way to reload a trained run, for both tasks.

Layout of a run (``python -m an_gan fit`` / ``python -m an_inpaint fit``)::

    <run>/                      runs/<task>/attentive-norm/<W&B run id>/ (or the logger's log_dir, or
                                --trainer.default_root_dir without a logger)
        config.yaml             the resolved config of fit (config_<stage>.yaml for validate / test / predict)
        checkpoints/            last.ckpt, the best by the task's validation metric, on_exception.ckpt
        images/                 sample grids, inpainting panels, layout maps (PNG, also logged to W&B)
        samples/ predictions/   what predict writes by default
        demo_quality.json       the GAN demo's judge

:func:`load_run` rebuilds the LightningModule of a checkpoint: its class comes from the checkpoint's stamp
(:mod:`common.training.checkpoints`), its configuration (networks included) from the model config stored in the
checkpoint by the CLI, else the run's ``config.yaml``, else (a module trained through the plain ``Trainer``) its
hyperparameters and the constructor arguments its networks expose; a config file given explicitly wins. The
weights are checked against it (another architecture is a clear error naming both) and loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.loggers import WandbLogger

from common.training.checkpoints import STAMP_KEY, CheckpointMismatchError, check_checkpoint, check_class_paths

__all__ = ["RunFolder", "load_run", "results_dir"]


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run (module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        """``ROOT/config.yaml``: the resolved config the CLI saved."""
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        """``ROOT/checkpoints``."""
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        """``ROOT/checkpoints/last.ckpt``."""
        return self.checkpoints / "last.ckpt"

    @property
    def images(self) -> Path:
        """``ROOT/images``: the sample grids and layout maps written during training."""
        return self.root / "images"

    def file(self, name: str) -> Path:
        """Any other file of the run (``demo_quality.json``, ``samples``, ...)."""
        return self.root / name

    @classmethod
    def of_trainer(cls, trainer: pl.Trainer) -> RunFolder:
        """``<save_dir>/<project>/<run id>`` for W&B, the logger's ``log_dir`` for TensorBoard / CSV, else
        ``trainer.default_root_dir``."""
        logger = trainer.logger
        if isinstance(logger, WandbLogger):
            return cls(Path(logger.save_dir or ".") / str(logger.name) / str(logger.version))
        log_dir = getattr(logger, "log_dir", None)
        return cls(Path(log_dir) if log_dir else Path(trainer.default_root_dir))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunFolder:
        """The run a checkpoint file belongs to (the parent of its ``checkpoints/`` folder)."""
        path = Path(checkpoint)
        return cls(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def results_dir(trainer: pl.Trainer) -> Path:
    """The run's folder (:meth:`RunFolder.of_trainer`)."""
    return RunFolder.of_trainer(trainer).root


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def load_run(
    checkpoint: str | Path,
    config: str | Path | None = None,
    module_class: type[pl.LightningModule] | None = None,
    map_location: str | torch.device = "cpu",
) -> pl.LightningModule:
    """The trained module of ``checkpoint``, in eval mode on ``map_location``.

    Args:
        checkpoint: a ``.ckpt`` written by ``fit`` of either task.
        config: a config file whose ``model`` section builds the module (default: the model config stored in the
            checkpoint, else the run's ``config.yaml``).
        module_class: the expected class (``an_gan.module.ANGAN``, ...); default: the one named in the checkpoint.

    Raises:
        FileNotFoundError: no checkpoint, or no config anywhere.
        CheckpointMismatchError: the checkpoint belongs to another class than ``module_class``, or its weights do
            not fit the configured networks.
    """
    from jsonargparse import ArgumentParser

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    stamp = ckpt.get(STAMP_KEY) or {}
    if module_class is not None and stamp.get("module"):
        ours = f"{module_class.__module__}.{module_class.__qualname__}"
        if stamp["module"] != ours:
            raise CheckpointMismatchError(
                f"checkpoint {path} was written by {stamp['module']} (task {stamp['module'].split('.')[0]}), not by "
                f"{ours} (task {ours.split('.')[0]})"
            )
    if module_class is None:
        if not stamp.get("module"):
            raise CheckpointMismatchError(f"{path} does not name the module that wrote it: pass module_class")
        check_class_paths({"class_path": stamp["module"]}, f"checkpoint {path}")
        module_class = _import(stamp["module"])
        if not (isinstance(module_class, type) and issubclass(module_class, pl.LightningModule)):
            raise CheckpointMismatchError(f"{path} names {stamp['module']}, which is not a LightningModule")
    run_config = RunFolder.of_checkpoint(path).config
    if config is not None:
        model_config = _model_section(Path(config))
    elif stamp.get("model_config") is not None:
        model_config = stamp["model_config"]
    elif run_config.is_file() or not stamp.get("network_configs"):
        model_config = _model_section(run_config)
    else:  # a module trained through the plain Trainer API: its hyperparameters and self-describing networks
        hparams = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}
        model_config = {**hparams, **(stamp.get("settings") or {}), **stamp["network_configs"]}
    if config is None:  # the configuration comes with the checkpoint (or its run folder): it may only name our classes
        check_class_paths(model_config, f"checkpoint {path}")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(module_class, "model", fail_untyped=False, sub_configs=True)
    module = parser.instantiate_classes(parser.parse_object({"model": model_config})).model
    check_checkpoint(module, ckpt, path=path)
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"])
    return module.to(map_location).eval()


def _model_section(config: Path) -> dict[str, Any]:
    if not config.is_file():
        raise FileNotFoundError(
            f"config file not found: {config} (the run's config.yaml; pass config= to load_run if it lives elsewhere)"
        )
    model = (yaml.safe_load(config.read_text()) or {}).get("model")
    if model is None:
        raise ValueError(f"{config} has no model section")
    return model
