"""Every ``python -m an_gan|an_inpaint ...`` command line in the README parses with today's CLI (so the README
cannot drift from it): each command is run through the task's ``cli_main`` up to the end of argument parsing.

Placeholders are mapped to real files: ``RUN/config.yaml`` to the task's demo config; data roots, checkpoint and
output paths are only parsed (nothing is read or written)."""

import re
import shlex
from pathlib import Path

import jsonargparse
import pytest

from an_gan.cli import cli_main as gan_cli
from an_inpaint.cli import cli_main as inpaint_cli

ROOT = Path(__file__).resolve().parents[1]
CLIS = {"an_gan": gan_cli, "an_inpaint": inpaint_cli}


def readme_commands() -> list[tuple[str, list[str]]]:
    """``(task, argv)`` of every indented command line of the README that runs ``-m an_gan`` / ``-m an_inpaint``
    (``\\`` continuations joined, comments dropped)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    commands, current = [], ""
    for line in lines:
        if not line.startswith("    ") and not current:
            continue
        current += " " + line.strip().rstrip("\\")
        if line.rstrip().endswith("\\"):
            continue
        tokens = shlex.split(current, comments=True)
        current = ""
        if "-m" in tokens:
            i = tokens.index("-m")
            if i + 1 < len(tokens) and tokens[i + 1] in CLIS:
                commands.append((tokens[i + 1], tokens[i + 2 :]))
    return commands


COMMANDS = readme_commands()


class _Parsed(Exception):
    pass


def test_the_readme_has_commands_of_both_tasks():
    tasks = {task for task, _ in COMMANDS}
    assert tasks == {"an_gan", "an_inpaint"} and len(COMMANDS) >= 15
    subcommands = {args[0] for _, args in COMMANDS if args}
    assert {"fit", "validate", "test", "predict", "evaluate", "baseline"} <= subcommands


@pytest.mark.parametrize(("task", "args"), COMMANDS, ids=[" ".join([t, *a])[:90] for t, a in COMMANDS])
def test_readme_command_parses(task, args, monkeypatch):
    monkeypatch.chdir(ROOT)
    demo = f"configs/{task}/demo.yaml"
    args = [demo if a == "RUN/config.yaml" else a for a in args]
    original = jsonargparse.ArgumentParser.parse_args

    def parse_then_stop(self, *a, **k):
        original(self, *a, **k)
        raise _Parsed

    monkeypatch.setattr(jsonargparse.ArgumentParser, "parse_args", parse_then_stop)
    with pytest.raises(_Parsed):
        CLIS[task](args)


def test_the_check_catches_a_wrong_option(monkeypatch):
    original = jsonargparse.ArgumentParser.parse_args

    def parse_then_stop(self, *a, **k):
        original(self, *a, **k)
        raise _Parsed

    monkeypatch.setattr(jsonargparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.chdir(ROOT)
    for argv in (["fit", "--trainer.no_such_flag", "1"], ["evaluate", "--samples", "s", "--no_such_flag", "1"]):
        with pytest.raises(SystemExit):
            gan_cli(argv)
    assert re.search(r"python -m an_gan fit", (ROOT / "README.md").read_text())
