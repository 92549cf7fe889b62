"""LightningCLI base shared by ``python -m an_gan`` and ``python -m an_inpaint``.

What every task gets from :class:`ANLightningCLI`:

* W&B logging by default (:class:`common.training.tracking.ANWandbLogger`, offline without credentials or network);
  ``--trainer.logger=false`` turns logging off (pictures are still written as PNG files).
* ``last.ckpt`` after every checkpoint, an ``on_exception.ckpt`` on a crash, Ctrl-C or SIGTERM (removed after a
  normal end), the W&B run id stored in each checkpoint, learning rates logged. Checkpoints are written atomically
  (:class:`common.training.checkpoints.AtomicCheckpointIO`) and carry every rank's RNG states
  (:class:`common.training.callbacks.resume.ExactResume`); a non-finite loss stops the run with a clear error or is
  skipped
  (``--nonfinite.policy``, :class:`common.training.callbacks.nonfinite.NonFiniteGuard`). An output folder that cannot be
  written is an error at start-up.
* The resolved config saved as ``config.yaml`` in the run folder (``<save_dir>/<project>/<run id>``) and in the
  W&B run config.
* Resume: ``fit --ckpt_path PATH`` continues the W&B run stored in the checkpoint; ``fit --ckpt_path last``
  continues from the newest ``last.ckpt`` / ``on_exception.ckpt`` of this task's runs (a new run if none);
  a plain ``fit`` always starts a new run.
* The bundled demo is a file: ``fit`` given neither ``--config`` nor ``--data`` loads the task's
  ``configs/<task>/demo.yaml`` (:attr:`ANLightningCLI.demo_config`, shipped with the package); any run given its
  own ``--config`` or ``--data`` starts from the constructors' defaults, which are the paper's settings. No trainer
  default pins the accelerator, the device count or the run length.
* ``seed_everything`` defaults to 0; the modules configure their own optimizers (two, for GANs).
* After each subcommand it prints where the results are.
"""

from __future__ import annotations

import copy
import inspect
import os
import sys
import warnings
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import ArgumentError
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from common.training.callbacks.checkpointing import (
    InterruptCheckpoint,
    PeriodicCheckpoint,
    WandbRunId,
    checkpoint_dir,
    stored_wandb_run_id,
)
from common.training.callbacks.nonfinite import NonFiniteGuard
from common.training.callbacks.resume import ExactResume, inexact_reason
from common.training.callbacks.signals import GracefulStop, exit_status
from common.training.callbacks.speed import SpeedOptions
from common.training.checkpoints import (
    STAMP_KEY,
    CheckpointMismatchError,
    CheckpointStamp,
    CheckpointVersionError,
    check_checkpoint,
    check_class_paths,
    package_version,
)
from common.training.runs import results_dir
from common.training.tracking import ANWandbLogger
from configs import config_path

__all__ = ["ANLightningCLI", "OptionalLearningRateMonitor", "RunConfigCallback", "with_demo_config"]


def _names_config_or_data(argv: list[str]) -> bool:
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name in ("-c", "--config", "--data") or name.startswith("--data."):
            return True
    return False


def with_demo_config(args: list[str] | None, demo: str | Path | None) -> list[str] | None:
    """``args`` with ``--config DEMO`` inserted after ``fit`` when the command names neither a config nor data.

    ``python -m TASK fit`` (optionally with ``--trainer.*``/``--model.*`` tweaks) runs the demo file; a command with
    ``--config``/``-c`` or ``--data``/``--data.*`` is left alone, so it starts from the constructors' defaults.
    Other subcommands and non-list ``args`` (dicts) are returned unchanged. ``None`` means ``sys.argv[1:]``.
    """
    if demo is None or isinstance(args, dict):
        return args
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] != "fit" or _names_config_or_data(argv[1:]):
        return args
    return ["fit", "--config", str(demo), *argv[1:]]


def newest_resumable(folders: list[Path], root: Path) -> str | None:
    """What ``--ckpt_path last`` resumes: the newest checkpoint (by modification time) among ``last*.ckpt``,
    ``on_exception.ckpt`` and ``best-*.ckpt`` in ``folders`` and SLURM's ``hpc_ckpt_*.ckpt`` in ``root``, preferring
    those that resume exactly (a checkpoint written inside a training step does not); says which it picked and why."""
    found = [p for f in folders for pattern in ("last*.ckpt", InterruptCheckpoint.FILENAME, "best-*.ckpt")
             for p in f.glob(pattern) if p.is_file()]  # fmt: skip
    found += [p for p in root.glob("hpc_ckpt_*.ckpt") if p.is_file()]
    if not found:
        return None
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    reasons = {}
    for path in found:
        try:
            reasons[path] = inexact_reason(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
        except Exception as error:  # a torn or foreign file: never resumed
            reasons[path] = f"unreadable ({type(error).__name__}: {error})"
    exact = [p for p in found if reasons[p] is None]
    chosen = exact[0] if exact else found[0]
    skipped = [f"{p.name} ({reasons[p]})" for p in found[: found.index(chosen)]]
    rank_zero_info(
        f"--ckpt_path last: resuming {chosen}, the newest of {len(found)} checkpoint(s)"
        + (" that resume exactly; newer ones skipped: " + "; ".join(skipped) if skipped else "")
        + (f" (not exact: {reasons[chosen]})" if reasons[chosen] else "")
    )
    return str(chosen)


class OptionalLearningRateMonitor(LearningRateMonitor):
    """:class:`LearningRateMonitor` that does nothing (instead of failing) when the trainer has no logger."""

    def on_train_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        """Lightning's hook, skipped when the trainer has no logger."""
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        """Lightning's hook, skipped when the trainer has no logger."""
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        """Lightning's hook, skipped when the trainer has no logger."""
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)


class RunConfigCallback(SaveConfigCallback):
    """Save the resolved config as ``config.yaml`` in the run's own folder and in the logger's hyperparameters."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(*args, **kwargs)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Write ``config.yaml`` (``fit``) or ``config_<stage>.yaml`` into the run folder and log it as a
        hyperparameter.
        """
        folder = results_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        stage = getattr(stage, "value", stage)
        name = self.config_filename if stage == "fit" else f"config_{stage}.yaml"
        self.parser.save(self.config, str(folder / name), skip_none=False, overwrite=True, multifile=False)
        if trainer.logger is not None:
            trainer.logger.log_hyperparams({"config": self.parser.dump(self.config, skip_none=False)})


class ANLightningCLI(LightningCLI):
    """Project CLI. Subclass per task, set :attr:`task_name`, add links in ``add_arguments_to_parser``.

    Class attributes:
        task_name: folder under ``runs/`` and default W&B run group.
        task_trainer_defaults: trainer defaults of the task (merged over the shared ones; callbacks given
            here are appended to the shared persistent callbacks, deep-copied per CLI instance). They must not
            pin the accelerator, the device count or the run length: those belong in config files.
        demo_config: file name of the task's demo in ``configs/<task_name>/``, loaded by a bare ``fit``
            (:func:`with_demo_config`); ``None`` disables it.

    Args:
        trainer_defaults: extra trainer defaults, merged over the shared and the task's ones.
        *args, **kwargs: as for ``LightningCLI`` (``args`` gets the demo config inserted for a bare ``fit``).
    """

    task_name: ClassVar[str] = "an"
    task_trainer_defaults: ClassVar[dict[str, Any]] = {}
    demo_config: ClassVar[str | None] = None

    @classmethod
    def demo_config_path(cls) -> Path | None:
        """The demo file a bare ``fit`` loads (inside the installed package), or ``None``."""
        return config_path(cls.task_name, cls.demo_config) if cls.demo_config else None

    def __init__(
        self,
        *args: Any,
        trainer_defaults: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        given = kwargs.get("args")
        kwargs["args"] = with_demo_config(given, self.demo_config_path())
        task = copy.deepcopy(self.task_trainer_defaults)
        defaults: dict[str, Any] = {
            "default_root_dir": f"runs/{self.task_name}",
            "logger": {
                "class_path": "common.training.tracking.ANWandbLogger",
                "init_args": {"project": "attentive-norm", "save_dir": f"runs/{self.task_name}"},
            },
            "callbacks": [
                InterruptCheckpoint(),
                GracefulStop(),
                ExactResume(),
                CheckpointStamp(),
                WandbRunId(),
                OptionalLearningRateMonitor(logging_interval="step"),
                *task.pop("callbacks", []),
            ],
        }
        # a crash or full disk never leaves a torn last.ckpt
        defaults["plugins"] = [{"class_path": "common.training.checkpoints.AtomicCheckpointIO"}]
        defaults.update(task)
        defaults.update(trainer_defaults or {})
        kwargs.setdefault("save_config_callback", RunConfigCallback)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("auto_configure_optimizers", False)
        with warnings.catch_warnings():
            if given is None and kwargs["args"] is not None:  # the demo file was added to the command line itself
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            try:
                super().__init__(*args, trainer_defaults=defaults, **kwargs)
            except SIGTERMException as stop:  # Lightning's SystemExit() exits 0: a stopped run must not look finished
                raise SystemExit(exit_status(getattr(self, "trainer", None))) from stop

    # ------------------------------------------------------------------ resume
    def _checkpoint_folders(self) -> list[Path] | None:
        """Where ``--ckpt_path last`` looks: every run of this task (W&B) or the one checkpoint folder (no
        logger); ``None`` for other loggers (Lightning's own ``"last"`` resolution applies)."""
        logger = self.trainer.logger
        if isinstance(logger, ANWandbLogger):
            return sorted((Path(logger.save_dir or ".") / str(logger.name)).glob("*/checkpoints"))
        if logger is None:
            return [Path(self.trainer.default_root_dir) / "checkpoints"]
        return None

    def add_arguments_to_parser(self, parser) -> None:
        """Shared options: ``--autosave.every_minutes`` / ``--autosave.every_n_steps`` (the periodic ``last.ckpt``,
        :class:`common.training.callbacks.checkpointing.PeriodicCheckpoint`), ``--nonfinite.policy raise|skip`` (what a
        NaN/inf loss does, see
        :class:`common.training.callbacks.nonfinite.NonFiniteGuard`) and ``--speed.channels_last`` / ``--speed.compile``
        (:class:`common.training.callbacks.speed.SpeedOptions`). Tasks extend this (call ``super()``)."""
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")
        parser.add_lightning_class_args(PeriodicCheckpoint, "autosave")  # owns last.ckpt (tasks add a best-by-metric)
        parser.add_lightning_class_args(SpeedOptions, "speed")

    def _check_output_writable(self) -> None:
        """Fail at start-up, not at the first checkpoint, when the run's output folder cannot be written."""
        folders = {Path(self.trainer.default_root_dir)}
        save_dir = getattr(self.trainer.logger, "save_dir", None)
        if save_dir:
            folders.add(Path(save_dir))
        for folder in folders:
            probe = folder / f".write-test-{os.getpid()}"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as err:
                raise PermissionError(
                    f"the output folder {folder} is not writable ({err.strerror or err}): choose another with "
                    "--trainer.default_root_dir (and the logger's save_dir)"
                ) from err

    def before_fit(self) -> None:
        """Check the output folder; resolve ``--ckpt_path last`` to the newest checkpoint of an earlier run (or start a
        new run when there is none), check that the checkpoint fits this model and resume its W&B run.
        """
        self._check_output_writable()
        config = self.config_init[self.subcommand]
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path:
            return
        if ckpt_path == "last":
            folders = self._checkpoint_folders()
            if folders is None:
                return
            ckpt_path = newest_resumable(folders, Path(self.trainer.default_root_dir))
            if ckpt_path is None:
                rank_zero_info("--ckpt_path last: no checkpoint of an earlier run found, starting a new run")
                config["ckpt_path"] = None
                return
            config["ckpt_path"] = ckpt_path
        elif not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such checkpoint file")
        check_checkpoint(self.model, ckpt_path, path=ckpt_path)
        run_id = stored_wandb_run_id(ckpt_path)
        if run_id is not None and isinstance(self.trainer.logger, ANWandbLogger):
            self.trainer.logger.resume_run(run_id)
        rank_zero_info(f"Resuming from {ckpt_path}" + (f" (W&B run {run_id})" if run_id else ""))

    def instantiate_classes(self) -> None:
        """Lightning's, then the resolved model config goes into every checkpoint (:func:`common.training.runs.load_run`
        rebuilds the module from the checkpoint alone); networks with a ``config`` dict contribute their full
        constructor arguments, the values linked from the data included."""
        super().instantiate_classes()
        stamp = next((cb for cb in self.trainer.callbacks if isinstance(cb, CheckpointStamp)), None)
        if stamp is None:
            return
        config = self.config[self.subcommand] if self.subcommand else self.config
        parser = self._parser(self.subcommand)
        model = (yaml.safe_load(parser.dump(config, skip_link_targets=False, skip_none=False)) or {}).get("model")
        if not isinstance(model, dict):
            return
        for name, child in self.model.named_children():
            net_config = getattr(child, "config", None)
            section = model.get(name)
            if (
                isinstance(net_config, dict)
                and isinstance(section, dict)
                and isinstance(section.get("init_args"), dict)
            ):
                section["init_args"].update(net_config)
        stamp.model_config = model

    def _check_given_checkpoint(self) -> None:
        """``validate`` / ``test`` / ``predict --ckpt_path``: the checkpoint must be this task's and architecture's."""
        ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path not in ("last", "best") and Path(ckpt_path).is_file():
            check_checkpoint(self.model, ckpt_path, path=ckpt_path)

    def _parse_ckpt_path(self) -> None:
        """Lightning copies the checkpoint's hyperparameters into the model config before anything is built; a
        checkpoint of the other task would fail there with a parser error, so name the two tasks first, and a
        checkpoint whose arguments this version does not accept (an older version's) fails with
        :class:`CheckpointVersionError` naming the keys and both versions instead of a bare parser error."""
        subcommand = self.config.get("subcommand") if hasattr(self, "config") else None
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        checkpoint = None
        if ckpt_path and Path(ckpt_path).is_file():
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
            stamp = checkpoint.get(STAMP_KEY) or {}
            # the hyperparameters Lightning is about to build the model from: only this package's classes
            check_class_paths(checkpoint.get("hyper_parameters") or {}, f"checkpoint {ckpt_path}")
            check_class_paths(stamp.get("model_config") or {}, f"checkpoint {ckpt_path}")
            ours = f"{self._model_class.__module__}.{self._model_class.__qualname__}"
            if stamp.get("module") and stamp["module"] != ours:
                raise CheckpointMismatchError(
                    f"checkpoint {ckpt_path} was written by {stamp['module']} (task {stamp['module'].split('.')[0]}) "
                    f"but this is {ours} (task {ours.split('.')[0]}): use it with "
                    f"`python -m {stamp['module'].split('.')[0]}`"
                )
        parsers = [self.parser, *getattr(self, "_subcommand_parsers", {}).values()]
        exits = [p.exit_on_error for p in parsers]
        for p in parsers:  # raise the parser's error here instead of printing it and exiting
            p.exit_on_error = False
        try:
            super()._parse_ckpt_path()
        except ArgumentError as err:
            raise self._version_error(ckpt_path, checkpoint or {}, subcommand, err) from err
        finally:
            for p, exit_on_error in zip(parsers, exits, strict=True):
                p.exit_on_error = exit_on_error

    def _version_error(self, ckpt_path: str, checkpoint: dict, subcommand: str, err: Exception) -> Exception:
        """The error for a checkpoint whose hyperparameters this version's parser refused: the keys this version
        does not know, the parser's message, the version that wrote it (when stamped) and this one, what to do."""
        hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}
        known = set(inspect.signature(self._model_class.__init__).parameters) - {"self"}
        unknown = sorted(k for k in hparams if known and k not in known)
        written = (checkpoint.get(STAMP_KEY) or {}).get("package_version")
        here = package_version()
        task = self._model_class.__module__.split(".")[0]
        if written is None:
            origin = "a version that did not record itself, probably an older one"
        elif written == here:
            origin = f"attentive-norm {written} too, from a checkout with other arguments (the number is not bumped)"
        else:
            origin = f"attentive-norm {written}, probably an older one"
        lines = [
            f"checkpoint {ckpt_path}: its stored model arguments do not match this version of the package "
            f"(attentive-norm {here or 'from a source checkout'}); it was written by {origin}.",
        ]
        if unknown:
            lines.append(f"  arguments this version does not know: {', '.join(unknown)}")
        parser = " ".join(line.strip() for line in str(err).strip().splitlines()[:3]) or type(err).__name__
        lines.append(f"  parser: {parser}")
        lines.append(
            "  use the checkpoint with the version that wrote it"
            + (f" (pip install attentive-norm=={written})" if written else "")
            + f", with that run's config: python -m {task} {subcommand} --config <run>/config.yaml "
            f"--ckpt_path {ckpt_path} (the run folder holds config.yaml next to checkpoints/)"
        )
        return CheckpointVersionError("\n".join(lines))

    def before_validate(self) -> None:
        """Check that ``--ckpt_path`` (if given) is a checkpoint of this task and architecture."""
        self._check_given_checkpoint()

    def before_test(self) -> None:
        """Check that ``--ckpt_path`` (if given) is a checkpoint of this task and architecture."""
        self._check_given_checkpoint()

    def before_predict(self) -> None:
        """Check that ``--ckpt_path`` (if given) is a checkpoint of this task and architecture."""
        self._check_given_checkpoint()

    # ------------------------------------------------------------- reporting
    def _report(self) -> None:
        folder = results_dir(self.trainer)
        lines = [f"results in {folder}"]
        last = checkpoint_dir(self.trainer) / PeriodicCheckpoint.FILENAME
        if last.is_file():
            lines.append(f"  last checkpoint: {last}")
        for cb in self.trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.best_model_path:
                lines.append(f"  best checkpoint: {cb.best_model_path}")
        images = folder / "images"
        if images.is_dir():
            lines.append(f"  pictures: {images}")
        if self.trainer.is_global_zero:
            print("\n".join(lines), flush=True)

    def after_fit(self) -> None:
        """Print where the run's results, checkpoints and pictures are (rank 0)."""
        self._report()

    def after_validate(self) -> None:
        """Print where the run's results, checkpoints and pictures are (rank 0)."""
        self._report()

    def after_test(self) -> None:
        """Print where the run's results, checkpoints and pictures are (rank 0)."""
        self._report()

    def after_predict(self) -> None:
        """Print where the run's results, checkpoints and pictures are (rank 0)."""
        self._report()
