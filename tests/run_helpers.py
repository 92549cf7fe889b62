"""Helpers of the task-level tests: run a task's ``fit`` with a step recorder and a simulated crash.

Used by the exact-resume and mixed-precision tests of both tasks (``tests/an_gan``, ``tests/an_inpaint``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger

from common.training.callbacks.checkpointing import InterruptCheckpoint


class StepRecorder(pl.Callback):
    """Per training batch: what the module logged in that batch and a checksum of all its parameters.

    The module's ``log`` / ``log_dict`` are wrapped for the run, so a row holds exactly the values logged during the
    batch (not the stale ones ``trainer.callback_metrics`` keeps).
    """

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._current: dict[str, float] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log_dict, log = pl_module.log_dict, pl_module.log

        def record(values: dict) -> None:
            for key, value in values.items():
                self._current[key] = float(torch.as_tensor(value).detach().float())

        def wrapped_log_dict(values, *args, **kwargs):
            record(values)
            return log_dict(values, *args, **kwargs)

        def wrapped_log(name, value, *args, **kwargs):
            record({name: value})
            return log(name, value, *args, **kwargs)

        pl_module.log_dict, pl_module.log = wrapped_log_dict, wrapped_log

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        checksum = sum(float(p.detach().double().sum()) for p in pl_module.parameters())
        self.rows.append({"step": trainer.global_step, "logs": dict(self._current), "params": checksum})
        self._current = {}


class MetricsRecorder(Logger):
    """A logger that keeps every ``log_metrics`` call (the ``train/`` values, as floats)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, {k: float(v) for k, v in metrics.items() if k.startswith("train/")}))


class CrashAt(pl.Callback):
    """Raise ``RuntimeError`` when the ``batch``-th training batch of this process (1-based) is about to start."""

    def __init__(self, batch: int) -> None:
        self.batch, self.started = batch, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.started += 1
        if self.started == self.batch:
            raise RuntimeError(f"simulated crash before batch {self.batch}")


def fit_recorded(
    make_cli: Callable[[list[str]], object], args: list[str], ckpt_path: str | None = None, crash_at: int | None = None
) -> tuple[list[dict], pl.Trainer]:
    """``make_cli(args)`` (a task's ``cli_main(args, run=False)``), then ``trainer.fit`` with a :class:`StepRecorder`
    (and a :class:`CrashAt` when ``crash_at`` is given); returns the recorded rows and the trainer."""
    cli = make_cli(args)
    recorder = StepRecorder()
    cli.trainer.callbacks.append(recorder)
    if crash_at is not None:
        cli.trainer.callbacks.append(CrashAt(crash_at))
    with contextlib.suppress(RuntimeError) if crash_at is not None else contextlib.nullcontext():
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    return recorder.rows, cli.trainer


def interrupt_checkpoint(root: Path) -> str:
    """The ``on_exception.ckpt`` a crashed run left under ``root``."""
    found = sorted(Path(root).rglob(InterruptCheckpoint.FILENAME))
    assert len(found) == 1, found
    return str(found[0])


def assert_same_steps(resumed: list[dict], reference: list[dict]) -> None:
    """Every recorded row equal: the step, each logged value and the parameter checksum, exactly."""
    assert len(resumed) == len(reference)
    for got, want in zip(resumed, reference, strict=True):
        assert got["step"] == want["step"]
        assert got["logs"].keys() == want["logs"].keys(), (got["step"], got["logs"].keys() ^ want["logs"].keys())
        for key, value in want["logs"].items():
            assert got["logs"][key] == value, (got["step"], key, got["logs"][key], value)
        assert got["params"] == want["params"], got["step"]


def run_cli_processes(task: str, commands: list[list[str]], folder: Path, timeout: int = 500) -> dict:
    """Run ``commands`` of ``python -m <task>`` through ``tests/ddp_cli_script.py`` in a fresh process (which
    Lightning's DDP launcher re-runs for the other ranks); returns rank 0's ``{"world_size", "metrics"}``."""
    import json
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    folder.mkdir(parents=True, exist_ok=True)
    spec, output = folder / "commands.json", folder / "metrics.json"
    spec.write_text(json.dumps(commands))
    script = Path(__file__).resolve().parent / "ddp_cli_script.py"
    done = subprocess.run(
        [sys.executable, str(script), task, str(output), str(spec)],
        env=env, cwd=folder, timeout=timeout, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(
            f"{task} {commands} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        )
    return json.loads(output.read_text())


class StopAt(pl.Callback):
    """Fault injection for subprocess tests (``--trainer.callbacks+=...``, with ``tests/`` on ``PYTHONPATH``).

    At optimiser step ``step`` (``trainer.global_step`` when an optimiser is about to step, i.e. inside a training
    step, after that update's backward) on rank ``rank`` (``None``: every rank): ``how`` = ``"kill"`` (SIGKILL this
    process), ``"sigint"`` / ``"sigterm"`` (send it that signal), ``"raise"`` (raise ``RuntimeError``);
    ``"raise_between"``: raise before the batch whose first optimiser step would be ``step`` starts (what a corrupt
    image in one rank's shard does).
    """

    def __init__(self, step: int, how: str = "kill", rank: int | None = None) -> None:
        self.step, self.how, self.rank, self.done = step, how, rank, False

    def _now(self, trainer) -> bool:
        return not self.done and trainer.global_step == self.step and self.rank in (None, trainer.global_rank)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.how == "raise_between" and self._now(trainer):
            self.done = True
            raise RuntimeError(f"simulated failure before optimiser step {self.step} on rank {trainer.global_rank}")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        import os
        import signal

        if self.how == "raise_between" or not self._now(trainer):
            return
        self.done = True
        if self.how == "raise":
            raise RuntimeError(f"simulated failure at optimiser step {self.step} on rank {trainer.global_rank}")
        signum = {"kill": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}[self.how]
        os.kill(os.getpid(), signum)


def run_task(task: str, args: list[str], folder: Path, timeout: int = 600):
    """``python -m <task> *args`` in a fresh process in ``folder`` (1 CPU thread, W&B off, ``tests/`` importable for
    :class:`StopAt`, a free port for DDP); returns the ``CompletedProcess`` (the test checks the exit status)."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "tests"), env.get("PYTHONPATH", "")])
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", task, *args], env=env, cwd=folder, timeout=timeout, capture_output=True, text=True
    )


def stop_at(step: int, how: str, rank: int | None = None) -> str:
    """The ``--trainer.callbacks+=`` argument that adds a :class:`StopAt`."""
    import json

    init = {"step": step, "how": how, "rank": rank}
    return "--trainer.callbacks+=" + json.dumps({"class_path": "run_helpers.StopAt", "init_args": init})


def assert_same_final_state(a: Path, b: Path) -> None:
    """The two checkpoints hold the same step, weights, buffers and optimiser states, exactly."""
    import torch

    left, right = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    assert left["global_step"] == right["global_step"]
    assert left["state_dict"].keys() == right["state_dict"].keys()
    for key, value in left["state_dict"].items():
        assert torch.equal(value, right["state_dict"][key]), key

    def flat(obj, prefix=""):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from flat(v, f"{prefix}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                yield from flat(v, f"{prefix}/{i}")
        else:
            yield prefix, obj

    opt_left, opt_right = dict(flat(left["optimizer_states"])), dict(flat(right["optimizer_states"]))
    assert opt_left.keys() == opt_right.keys()
    for key, value in opt_left.items():
        same = torch.equal(value, opt_right[key]) if isinstance(value, torch.Tensor) else value == opt_right[key]
        assert same, key
