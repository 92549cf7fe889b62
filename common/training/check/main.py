"""``python -m an_gan check`` / ``python -m an_inpaint check``: takes the arguments of ``fit`` and tells, in minutes,
whether the run will go through and how long it takes (docs/check.md).

The configured run is built twice through the task's own CLI (``cli_main([... "fit", ...], run=False)``): once as
given (its trainer's run length, devices, logger and output folder are what is checked and projected) and once for
a short real ``fit`` in a ``check/`` folder of the run's root (no logger, validation off during the timed batches).
Task-specific knowledge (the splits, the paper's numbers, the evaluator's inputs) comes from a :class:`TaskCheck`
subclass in each task's ``cli.py``. The verdict is printed as a table and written as ``check.json``; the exit status
is 1 when an item fails.
"""

from __future__ import annotations

import math
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import ArgumentParser

from common.training.check.nodes import NodeFile, NodeFiles
from common.training.check.report import Report, format_duration
from common.training.check.sections import (
    Clock,
    check_checkpoint_io,
    check_logging,
    checkpoints_kept,
    data_items,
    loader_item,
    loader_speed,
    peak_memory,
)
from common.training.cli import with_demo_config

__all__ = ["TaskCheck", "check_main", "format_duration", "split_options"]

PREFIX = "--check."


class TaskCheck(ABC):
    """What ``check`` needs to know about a task; subclassed in each task's ``cli.py``."""

    task = "an"
    #: the task's CLI class (its demo file is checked when neither ``--config`` nor ``--data`` is given, as ``fit``)
    cli_class: Any = None

    def __init__(self, cli_class: Any = None) -> None:
        if cli_class is not None:
            self.cli_class = cli_class

    #: the paper's global batch (images per optimiser step over all devices)
    paper_batch: int | None = None
    #: how to make a prepared (streaming) copy of the data
    prepare_hint = ""

    @abstractmethod
    def splits(self, datamodule: Any) -> dict[str, Any]:
        """The datasets of every split, built by the DataModule itself (a broken layout raises)."""

    def expected(self, datamodule: Any) -> dict[str, int] | None:
        """The paper's counts for this DataModule (``{"train": ..., "classes": ...}``), or None."""
        return None

    def num_classes(self, datamodule: Any) -> int | None:
        """Classes of the data (None: not a class-conditional task)."""
        return None

    def node_files(self, cli: Any) -> list[NodeFile]:
        """Files every node needs (the evaluators' weights): looked for by every process (:mod:`.nodes`)."""
        return []

    def evaluation(self, report: Report, cli: Any, budget: int) -> dict[str, Any]:
        """Evaluation items (inputs present); returns ``{"validate": images or None, "test": ...}``: the images one
        validation / test handles (timed only when at most ``budget``)."""
        return {}

    def estimate(self, cli: Any, stage: str, device: Any) -> dict[str, float] | None:
        """``{"seconds": ...}`` (and how they were reached) of one validation / test too large to run here
        (``--check.max_eval_images``), from a timed part of it; None: no estimate."""
        return None

    def extra_validations(self, cli: Any) -> int:
        """Validations a ``fit`` runs besides the trainer's schedule (e.g. one before training)."""
        return 0

    def extra_tests(self, cli: Any) -> int:
        """Test passes a ``fit`` runs (e.g. one after training)."""
        return 0


def split_options(argv: list[str]) -> tuple[Any, list[str]]:
    """The check's own options (``--check.*``, parsed) and the rest of ``argv`` (``fit``'s arguments)."""
    parser = ArgumentParser(prog="check", description="the check's own options (--check.*)")
    parser.add_argument("--check.warmup", type=int, default=3, help="training batches run before timing")
    parser.add_argument("--check.batches", type=int, default=10, help="training batches timed")
    parser.add_argument("--check.decode_per_split", type=int, default=32, help="files decoded per split")
    parser.add_argument("--check.loader_batches", type=int, default=10, help="loader batches timed")
    parser.add_argument(
        "--check.max_eval_images",
        type=int,
        default=5000,
        help="time one validation / test only when it handles at most this many images",
    )
    parser.add_argument("--check.seed", type=int, default=0, help="seed of the decoded sample")
    ours: list[str] = []
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg.startswith(PREFIX):
            ours.append(arg)
            if "=" not in arg:
                ours.append(next(it, ""))
        else:
            rest.append(arg)
    return parser.parse_args(ours).check, rest


def _writable(cli: Any) -> tuple[bool, str]:
    try:
        cli._check_output_writable()
    except PermissionError as error:
        return False, str(error)
    return True, ""


def _validations(trainer: pl.Trainer, total_batches: float, batches_per_epoch: float) -> float:
    """Validations the configured trainer runs over ``total_batches`` training batches."""
    if trainer.limit_val_batches == 0:
        return 0
    vci = trainer.val_check_interval
    every = trainer.check_val_every_n_epoch
    if every is None:
        return math.floor(total_batches / vci) if isinstance(vci, int) else 0
    per_epoch = math.floor(1 / vci) if isinstance(vci, float) else math.floor(batches_per_epoch / vci)
    return math.floor(total_batches / batches_per_epoch / every) * max(per_epoch, 1)


def _build(report: Report, cli_main: Callable[..., Any], args: list[str], task: TaskCheck) -> Any:
    """The task's CLI on ``args`` (``run=False``); an error building the run is a fail line (printed), not a crash."""
    try:
        return cli_main(args, run=False)
    except Exception as error:  # a wrong option is a parser error (SystemExit) and exits as for fit
        report.add(
            "setup",
            "build the run",
            "fail",
            f"{type(error).__name__}: {error}",
            f"the message names the problem; `python -m {task.task} fit --print_config` shows the settings",
        )
        print(report.format_table(), flush=True)
        return None


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def check_main(cli_main: Callable[..., Any], argv: list[str], task: TaskCheck) -> Report:
    """Run the check of ``fit`` with ``argv`` (the arguments after ``check``); print the verdict, write it as JSON."""
    opts, rest = split_options(argv)
    demo = task.cli_class.demo_config_path() if task.cli_class is not None else None
    rest = with_demo_config(["fit", *rest], demo)[1:]  # a bare check checks the demo, as a bare fit trains it
    report = Report(context={"task": task.task, "arguments": rest})
    user = _build(report, cli_main, rest, task)
    if user is None:
        return report
    run_root = Path(user.trainer.default_root_dir)
    report.context["run_root"] = str(run_root)
    ok, why = _writable(user)
    if ok:
        report.add("checkpoints", "run folder", "pass", f"{run_root} is writable")
        folder = run_root / "check"
    else:
        report.add("checkpoints", "run folder", "fail", why, "choose a writable --trainer.default_root_dir")
        folder = Path(tempfile.mkdtemp(prefix=f"{task.task}-check-"))
    short = [
        "--trainer.default_root_dir",
        str(folder),
        "--trainer.logger",
        "false",
        "--trainer.limit_val_batches",
        "0",
        "--trainer.num_sanity_val_steps",
        "0",
        "--trainer.enable_progress_bar",
        "false",
    ]
    cli = _build(report, cli_main, [*rest, *short], task)
    if cli is None:
        return report
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    report.context.update(
        device=str(trainer.strategy.root_device),
        precision=str(trainer.precision),
        devices=trainer.num_devices,
        nodes=trainer.num_nodes,
        check_folder=str(folder),
    )
    nodes = NodeFiles.of_task(report, task, cli)
    trainer.callbacks.append(nodes)  # every process looks for the files at the start of the short fit
    name = type(dm).__name__
    try:
        splits = task.splits(dm)
    except Exception as error:
        report.add("data", "layout", "fail", f"{name}: {type(error).__name__}: {error}", "see docs/data.md")
        splits = None
    data_ok = splits is not None and data_items(
        report, splits, task.expected(dm), task.num_classes(dm), opts.decode_per_split, opts.seed, name
    )
    timing: dict[str, Any] = {}
    if data_ok:
        try:
            speed: dict[str, Any] | Exception = loader_speed(dm.train_dataloader(), opts.loader_batches)
        except Exception as error:  # reported below, next to the training speed
            speed = error
        timing = _training(report, cli, user.trainer, opts, task)
    else:
        report.add("training", "iterations", "fail", "not run: the data section failed", "fix the data first")
    if data_ok:
        loader_item(report, dm, speed, timing, task.prepare_hint)
    if not timing:
        report.add("checkpoints", "write + reload", "fail", "not checked: training did not run", "fix training first")
    else:
        check_checkpoint_io(report, trainer, model, folder, run_root, checkpoints_kept(user.trainer))
    nodes.report(report, trainer, user.trainer.num_devices * user.trainer.num_nodes)
    if data_ok:
        _evaluation(report, cli, user.trainer, timing, opts, task)
    else:
        report.add("evaluation", "inputs", "fail", "not checked: the data section failed", "fix the data first")
    check_logging(report, user.trainer.logger)
    print(report.format_table(), flush=True)
    if ok:
        path = report.write_json(folder / "check.json")
        print(f"written to {path}", flush=True)
    return report


def _training(report: Report, cli: Any, configured: pl.Trainer, opts: Any, task: TaskCheck) -> dict[str, Any]:
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    clock = Clock(opts.warmup, opts.batches)
    trainer.callbacks.append(clock)
    try:
        trainer.fit(model, datamodule=dm)
        measured = clock.summary()
    except Exception as error:
        memory = "out of memory" in str(error).lower()
        fix = "lower the per-device batch (--data.init_args.batch_size)" if memory else "the message names the problem"
        report.add("training", "iterations", "fail", f"{type(error).__name__}: {str(error)[:400]}", fix)
        return {}
    memory_name, memory = peak_memory(trainer.strategy.root_device)
    report.add(
        "training",
        "iterations",
        "pass",
        f"{measured['batches_timed']} batches timed after {opts.warmup} warm-up: "
        f"{measured['seconds_per_batch']:.3f} s/batch ({measured['steps_per_batch']:g} optimiser steps each), "
        f"{measured['images_per_s']:.1f} images/s per device; {memory_name} {memory:.2f} GiB on "
        f"{trainer.strategy.root_device}, precision {trainer.precision}",
        peak_memory_gib=memory,
        **measured,
    )
    per_device = getattr(dm, "batch_size", None)
    if per_device:
        accumulation = configured.accumulate_grad_batches
        global_batch = per_device * configured.num_devices * configured.num_nodes * accumulation
        detail = (
            f"{per_device} per device x {configured.num_devices} device(s) x {configured.num_nodes} node(s) x "
            f"{accumulation} accumulation = {global_batch}"
        )
        if task.paper_batch and global_batch != task.paper_batch:
            report.add(
                "training",
                "global batch",
                "warn",
                f"{detail}; the paper's: {task.paper_batch}",
                "set --trainer.devices / --data.init_args.batch_size so the product is the paper's",
                global_batch=global_batch,
            )
        else:
            report.add("training", "global batch", "pass", detail, global_batch=global_batch)
    batches_per_epoch = float(trainer.num_training_batches)
    if configured.max_steps and configured.max_steps > 0:
        total = configured.max_steps / max(measured["steps_per_batch"], 1e-9)
        length = f"max_steps {configured.max_steps:,}"
    elif configured.max_epochs and configured.max_epochs > 0:
        total = configured.max_epochs * batches_per_epoch
        length = f"max_epochs {configured.max_epochs} x {batches_per_epoch:,.0f} batches"
    else:
        report.add(
            "training",
            "projection",
            "fail",
            "neither max_steps nor max_epochs: the run never ends",
            "set --trainer.max_steps",
        )
        return measured
    validations = _validations(configured, total, batches_per_epoch) + task.extra_validations(cli)
    return {**measured, "total_batches": total, "length": length, "validations": validations}


def _evaluation(
    report: Report, cli: Any, configured: pl.Trainer, timing: dict[str, Any], opts: Any, task: TaskCheck
) -> None:
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    try:
        images = task.evaluation(report, cli, opts.max_eval_images)
    except Exception as error:
        report.add("evaluation", "inputs", "fail", f"{type(error).__name__}: {error}", "the message names the problem")
        return
    seconds: dict[str, float] = {}
    trainer.limit_val_batches = configured.limit_val_batches
    for stage, run in (("validate", trainer.validate), ("test", trainer.test)):
        count = images.get(stage)
        if count is None or not timing:
            continue
        if count > opts.max_eval_images:
            flag = f"--check.max_eval_images {count}"
            try:
                estimate = task.estimate(cli, stage, trainer.strategy.root_device)
            except Exception as error:
                _evaluation_failed(report, stage, error)
                continue
            if estimate is None:
                report.add(
                    "evaluation",
                    f"one {stage}",
                    "warn",
                    f"{count:,} images: not timed here",
                    f"time it with {flag} (minutes to hours on a CPU)",
                )
                continue
            seconds[stage] = estimate["seconds"]
            report.add(
                "evaluation",
                f"one {stage}",
                "pass",
                f"about {format_duration(estimate['seconds'])} ({count:,} images; "
                f"estimated from one timed batch of generation + features; {flag} runs it in full)",
                estimated=True,
                **estimate,
            )
            continue
        try:
            seconds[stage] = _timed(lambda run=run: run(model, datamodule=dm, verbose=False))
        except Exception as error:
            _evaluation_failed(report, stage, error)
            continue
        report.add(
            "evaluation",
            f"one {stage}",
            "pass",
            f"{format_duration(seconds[stage])} ({count:,} images)",
            seconds=seconds[stage],
        )
    if not timing or "total_batches" not in timing:
        return
    train_s = timing["startup_s"] + timing["total_batches"] * timing["seconds_per_batch"]
    val_s = seconds.get("validate")
    tests = task.extra_tests(cli)
    wall = train_s + timing["validations"] * (val_s or 0.0) + tests * seconds.get("test", 0.0)
    after = f" + {tests} test(s) x {format_duration(seconds['test'])}" if tests and "test" in seconds else ""
    detail = (
        f"{timing['length']}: {timing['total_batches']:,.0f} batches x {timing['seconds_per_batch']:.3f} s = "
        f"{format_duration(train_s)} of training + {timing['validations']} validation(s) x "
        f"{format_duration(val_s) if val_s is not None else 'untimed'}{after} = {format_duration(wall)} on "
        f"{configured.num_devices} x {trainer.strategy.root_device.type}"
    )
    status = "pass" if val_s is not None or not timing["validations"] else "warn"
    report.add(
        "training",
        "projected wall time",
        status,
        detail,
        "validations untimed: see the evaluation items",
        projected_s=wall,
        training_s=train_s,
        validation_s=val_s,
    )
    report.context["projected_wall_s"] = wall


def _evaluation_failed(report: Report, stage: str, error: Exception) -> None:
    """The fail line of a validation / test (or its estimate) that raised."""
    report.add(
        "evaluation",
        f"one {stage}",
        "fail",
        f"{type(error).__name__}: {str(error)[:400]}",
        "the message names the problem; a real fit stops the same way at its first validation",
    )
