"""Running a study: K arms x S seeds of one task, trained with the same step budget and evaluated alike; resumable.

An *arm* is a list of config files (composed in order, like repeated ``--config``) plus optional arguments; a *unit* is
one arm trained with one seed. Every unit runs ``python -m <task> fit`` in a subprocess with::

    --config <each config of the arm> <extra_args> <the arm's args> --seed_everything <seed>
    --trainer.max_steps <max_steps> --trainer.max_epochs -1 --trainer.default_root_dir OUT/<arm>/seed<seed>
    --trainer.logger false

so every arm gets the same number of optimiser steps (not the same time), and the unit's run folder (``config.yaml``,
``checkpoints/last.ckpt``) is ``OUT/<arm>/seed<seed>/``; the arguments the study controls may not be given in
``extra_args`` or an arm's args. The fit's output goes to ``OUT/<arm>/seed<seed>/fit.log`` (and to the console unless
``quiet``). Units run seed by seed (every arm on the first seed, then on the next), so an interrupted study already
holds complete comparisons of its first seeds. After the fit the task's evaluation writes ``scores.json``.

Resuming: run the same command again. A unit with ``scores.json`` is finished and skipped; a unit whose
``checkpoints/last.ckpt`` is at ``max_steps`` is only evaluated; a unit with any checkpoint resumes its fit with
``--ckpt_path last`` (the newest checkpoint that resumes exactly, :func:`common.training.cli.newest_resumable`); other
units start. ``unit.json`` records what defines a unit (its configs with a hash of their contents, its arguments, the
step budget): running the study again with a different definition of an existing unit is an error, not a silent mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from jsonargparse import Path as ArgPath
from jsonargparse.typing import Path_fr

from common.training.runs import RunFolder

__all__ = ["CONTROLLED", "StudyError", "StudyRunner", "StudySpec", "Unit", "add_study_arguments", "fit_state"]

#: The arguments the study sets for every unit (never in ``extra_args`` or an arm's args).
CONTROLLED = (
    "--config",
    "-c",
    "--seed_everything",
    "--trainer.max_steps",
    "--trainer.max_epochs",
    "--trainer.default_root_dir",
    "--trainer.logger",
    "--ckpt_path",
)
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class StudyError(RuntimeError):
    """A step of the study failed or its folder holds another study's units."""


@dataclass(frozen=True)
class Unit:
    """One arm trained with one seed: the ``index``-th of ``total`` units, in ``folder``."""

    arm: str
    seed: int
    index: int
    total: int
    folder: Path

    @property
    def name(self) -> str:
        """``"<arm> seed <seed>"``."""
        return f"{self.arm} seed {self.seed}"

    @property
    def scores(self) -> Path:
        """``scores.json``: written last, its presence marks the unit finished."""
        return self.folder / "scores.json"

    @property
    def run(self) -> RunFolder:
        """The unit's run folder (the fit's ``default_root_dir``, no logger)."""
        return RunFolder(self.folder)


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class StudySpec:
    """What a study trains (module docstring).

    Args:
        task: The task package (``"an_inpaint"``), run as ``python -m <task>``.
        arms: ``{arm name: config files}``, composed in order; names become folder names (letters, digits, ``_.+-``).
        seeds: The seeds, the same for every arm (``--seed_everything``).
        max_steps: The optimiser-step budget of every unit.
        out_dir: The study's folder (``OUT/<arm>/seed<seed>/`` per unit).
        extra_args: Arguments of ``fit`` for every arm (after the configs).
        arm_args: ``{arm name: arguments}`` for one arm (after ``extra_args``).

    Raises:
        ValueError: No arm or seed, a bad or repeated name, an arm without configs, a missing config file, a repeated
            seed, ``max_steps < 1``, arguments for an unknown arm or an argument the study controls.
    """

    task: str
    arms: Mapping[str, tuple[Path, ...]]
    seeds: tuple[int, ...]
    max_steps: int
    out_dir: Path
    extra_args: tuple[str, ...] = ()
    arm_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("a study needs at least one arm (--arms or `arms:` in the study file)")
        for arm, configs in self.arms.items():
            if not _ARM_NAME.match(arm):
                raise ValueError(f"arm name {arm!r}: use letters, digits and _ . + - (it names the arm's folder)")
            if not configs:
                raise ValueError(f"arm {arm!r} has no config file")
            for config in configs:
                if not Path(config).is_file():
                    raise ValueError(f"arm {arm!r}: config file {config} does not exist")
        if not self.seeds:
            raise ValueError("a study needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must differ, got {list(self.seeds)}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        unknown = sorted(set(self.arm_args) - set(self.arms))
        if unknown:
            raise ValueError(f"arm_args names arm(s) {unknown} that are not among the arms {list(self.arms)}")
        for where, args in [
            ("extra_args", self.extra_args),
            *((f"arm_args of {a}", v) for a, v in self.arm_args.items()),
        ]:
            for arg in args:
                if arg.split("=", 1)[0] in CONTROLLED:
                    raise ValueError(
                        f"{where}: {arg.split('=', 1)[0]} is set by the study for every unit ({', '.join(CONTROLLED)})"
                        "; use the study's arms / seeds / max_steps instead"
                    )

    def units(self) -> list[Unit]:
        """Every unit, seed by seed (all arms on the first seed first)."""
        pairs = [(arm, seed) for seed in self.seeds for arm in self.arms]
        return [
            Unit(arm, seed, i + 1, len(pairs), Path(self.out_dir) / arm / f"seed{seed}")
            for i, (arm, seed) in enumerate(pairs)
        ]

    def definition(self, unit: Unit) -> dict:
        """What defines ``unit`` (recorded in its ``unit.json``): its configs' content hashes, arguments and budget
        (and, for information only, the configs' paths)."""
        configs = [_file_hash(Path(c)) for c in self.arms[unit.arm]]
        args = [*self.extra_args, *self.arm_args.get(unit.arm, ())]
        paths = [str(Path(c).resolve()) for c in self.arms[unit.arm]]
        return {
            "task": self.task,
            "arm": unit.arm,
            "seed": unit.seed,
            "config_sha256": configs,
            "args": args,
            "max_steps": self.max_steps,
            "config_paths": paths,
        }

    def fit_args(self, unit: Unit, resume: bool) -> list[str]:
        """The arguments of ``python -m <task>`` that train ``unit`` (``fit ...``; ``--ckpt_path last`` when
        ``resume``)."""
        argv = ["fit"]
        for config in self.arms[unit.arm]:
            argv += ["--config", str(Path(config).resolve())]
        argv += [*self.extra_args, *self.arm_args.get(unit.arm, ())]
        argv += [f"--seed_everything={unit.seed}", f"--trainer.max_steps={self.max_steps}", "--trainer.max_epochs=-1"]
        argv += [f"--trainer.default_root_dir={unit.folder.resolve()}", "--trainer.logger=false"]
        return argv + (["--ckpt_path=last"] if resume else [])

    def as_dict(self) -> dict:
        """The spec as JSON-ready values."""
        return {
            "task": self.task,
            "arms": {arm: [str(c) for c in configs] for arm, configs in self.arms.items()},
            "arm_args": {arm: list(args) for arm, args in self.arm_args.items()},
            "seeds": list(self.seeds),
            "max_steps": self.max_steps,
            "out_dir": str(self.out_dir),
            "extra_args": list(self.extra_args),
        }


def add_study_arguments(parser: ArgumentParser) -> None:
    """The options every task's ``study`` command has: ``--config`` (a study file), ``--arms``, ``--arm_args``,
    ``--seeds``, ``--max_steps``, ``--out_dir``, ``--extra_args``, ``--quiet``. Relative config paths in a study file
    are resolved from the study file's folder."""
    parser.add_argument("--config", action=ActionConfigFile, help="a study file (YAML) holding the options below")
    parser.add_argument(
        "--arms",
        type=dict[str, list[Path_fr]],
        required=True,
        help="{arm: [config files]}, composed in order, e.g. '{AN: [a.yaml], CA: [a.yaml, arms/ca.yaml]}'",
    )
    parser.add_argument("--arm_args", type=dict[str, list[str]], default={}, help="{arm: [fit arguments]}")
    parser.add_argument("--seeds", type=list[int], default=[0, 1, 2], help="--seed_everything of each run")
    parser.add_argument("--max_steps", type=int, required=True, help="optimiser steps of every run (same budget)")
    parser.add_argument("--out_dir", type=str, required=True, help="the study's folder (OUT/<arm>/seed<s>/ per run)")
    parser.add_argument("--extra_args", type=list[str], default=[], help="fit arguments for every arm")
    parser.add_argument("--quiet", type=bool, default=False, help="fit / predict output only to the runs' log files")


def spec_from_config(task: str, cfg) -> StudySpec:
    """The :class:`StudySpec` of parsed :func:`add_study_arguments` options."""
    arms = {arm: tuple(Path(c.absolute if isinstance(c, ArgPath) else c) for c in cfg.arms[arm]) for arm in cfg.arms}
    return StudySpec(
        task=task,
        arms=arms,
        seeds=tuple(cfg.seeds),
        max_steps=cfg.max_steps,
        out_dir=Path(cfg.out_dir),
        extra_args=tuple(cfg.extra_args),
        arm_args={arm: tuple(args) for arm, args in (cfg.arm_args or {}).items()},
    )


def fit_state(unit: Unit, max_steps: int) -> tuple[str, int | None]:
    """``("done", step)`` when ``last.ckpt`` is at ``max_steps`` or beyond, ``("resume", step or None)`` when the run
    has any checkpoint, else ``("new", None)``."""
    step = None
    if unit.run.last_checkpoint.is_file():
        step = int(
            torch.load(unit.run.last_checkpoint, map_location="cpu", weights_only=True, mmap=True)["global_step"]
        )
        if step >= max_steps:
            return "done", step
    if unit.run.checkpoints.is_dir() and any(unit.run.checkpoints.glob("*.ckpt")):
        return "resume", step
    return "new", None


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def write_json_atomic(data: dict, path: Path) -> Path:
    """Write ``data`` as JSON through a temporary file and a rename (a killed study never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


class StudyRunner:
    """Runs the units of a :class:`StudySpec` (module docstring), printing ``[k/n] <arm> seed <s>: <stage>`` lines with
    the time each stage took and the time since the study started.

    Args:
        spec: The study.
        quiet: Send the subprocesses' output only to the units' log files.
        python: The interpreter of the subprocesses.
    """

    def __init__(self, spec: StudySpec, quiet: bool = False, python: str = sys.executable) -> None:
        self.spec, self.quiet, self.python = spec, quiet, python
        self.start = time.monotonic()

    def say(self, message: str) -> None:
        """Print a progress line with the time since the study started."""
        print(f"{message} (study {_clock(time.monotonic() - self.start)})", flush=True)

    def run_task(self, unit: Unit, stage: str, args: Sequence[str]) -> None:
        """``python -m <task> <args>`` for ``unit``, its output appended to ``<unit folder>/<stage>.log``.

        Raises:
            StudyError: The command failed (the message holds the end of its log).
        """
        argv = [self.python, "-m", self.spec.task, *args]
        log_path = unit.folder / f"{stage}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        began = time.monotonic()
        self.say(f"[{unit.index}/{unit.total}] {unit.name}: {stage} (log {log_path})")
        with log_path.open("ab") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
            try:
                for chunk in iter(lambda: process.stdout.read1(1 << 16), b""):
                    log.write(chunk)
                    log.flush()
                    if not self.quiet:
                        sys.stdout.write(chunk.decode(errors="replace"))
                        sys.stdout.flush()
                status = process.wait()
            finally:
                if process.poll() is None:  # interrupted: stop the child too (it saves on_exception.ckpt on SIGTERM)
                    process.terminate()
                    process.wait(timeout=120)
        if status != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise StudyError(f"{unit.name}: `{stage}` failed with exit status {status}; end of {log_path}:\n{tail}")
        self.say(f"[{unit.index}/{unit.total}] {unit.name}: {stage} done in {_clock(time.monotonic() - began)}")

    def _check_definition(self, unit: Unit) -> None:
        record, definition = unit.folder / "unit.json", self.spec.definition(unit)
        if record.is_file():
            earlier = json.loads(record.read_text())
            changed = sorted(k for k in definition if k != "config_paths" and earlier.get(k) != definition[k])
            if changed:
                raise StudyError(
                    f"{unit.folder} holds {unit.name} of another study definition (changed: {', '.join(changed)}; "
                    f"see {record}): use another --out_dir, or remove the folder to retrain this unit"
                )
        else:
            write_json_atomic(definition, record)

    def fit(self, unit: Unit) -> RunFolder:
        """Train ``unit`` (start, resume or skip, module docstring); returns its run folder.

        Raises:
            StudyError: The fit failed or stopped before ``max_steps`` (e.g. a ``max_time`` in a config).
        """
        self._check_definition(unit)
        state, step = fit_state(unit, self.spec.max_steps)
        if state == "done":
            self.say(f"[{unit.index}/{unit.total}] {unit.name}: fit already at step {step}")
            return unit.run
        if state == "resume":
            self.say(
                f"[{unit.index}/{unit.total}] {unit.name}: resuming the fit" + (f" from step {step}" if step else "")
            )
        self.run_task(unit, "fit", self.spec.fit_args(unit, resume=state == "resume"))
        state, step = fit_state(unit, self.spec.max_steps)
        if state != "done":
            raise StudyError(
                f"{unit.name}: fit ended at step {step} of {self.spec.max_steps} (no {unit.run.last_checkpoint} at the "
                "budget): every arm must train for the same number of steps; remove what stops it early (max_time, "
                "early stopping) from the arm's configs"
            )
        return unit.run

    def run(self, evaluate: Callable[[Unit, RunFolder], dict]) -> dict[Unit, dict]:
        """Fit every unfinished unit, then ``evaluate(unit, run)`` and write its result as ``scores.json``; returns
        ``{unit: scores}`` of every unit (finished ones read back)."""
        results = {}
        for unit in self.spec.units():
            if unit.scores.is_file():
                self._check_definition(unit)
                self.say(f"[{unit.index}/{unit.total}] {unit.name}: finished earlier ({unit.scores})")
            else:
                run = self.fit(unit)
                write_json_atomic(evaluate(unit, run), unit.scores)
            results[unit] = json.loads(unit.scores.read_text())
        return results
