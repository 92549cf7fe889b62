"""The benchmarks' command lines cannot drift apart: the three speed benchmarks take the shared flags with the same
names, destinations, defaults, types and help texts; eval_speed and loader take the ones they share; every option
is spelt with hyphens; every ``python -m benchmarks.*`` command in the README, the Makefile and
``benchmarks/gpu_check.sh`` parses; the GPU script runs nothing, cleanly, without a GPU."""

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import _args, eval_speed, gan_throughput, inpaint_throughput, layers, loader, synthetic_trees

ROOT = Path(__file__).resolve().parents[1]
THREE = {"layers": layers, "gan_throughput": gan_throughput, "inpaint_throughput": inpaint_throughput}
ALL = {**THREE, "eval_speed": eval_speed, "loader": loader}
SHARED = ("--device", "--threads", "--repeats", "--warmup", "--json")


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {opt: a for a in parser._actions for opt in a.option_strings}


def _spec(action: argparse.Action, with_default: bool = True) -> tuple:
    default = action.default if with_default else None
    return action.dest, action.type, action.nargs, action.choices, action.help, default


PARSERS = {name: module.build_parser() for name, module in ALL.items()}
PARSERS["synthetic_trees"] = synthetic_trees.build_parser()  # not a benchmark: the GPU script's data for check


def test_the_three_benchmarks_take_the_shared_flags_alike():
    specs = {name: _actions(PARSERS[name]) for name in THREE}
    for flag in SHARED:
        # --repeats / --warmup / --json defaults are each benchmark's own (help shows them); the rest is identical.
        same_default = flag in ("--device", "--threads")
        seen = {name: _spec(actions[flag], same_default) for name, actions in specs.items()}
        assert len(set(seen.values())) == 1, (flag, seen)
        assert seen["layers"][4] == _args.HELP[flag[2:]]
    assert specs["layers"]["--device"].default == "all" and specs["layers"]["--threads"].default is None
    for name, actions in specs.items():
        assert isinstance(actions["--repeats"].default, int) and actions["--repeats"].default >= 1, name
        assert isinstance(actions["--warmup"].default, int) and actions["--warmup"].default >= 0, name


def test_long_range_is_the_same_flag_in_both_throughput_benchmarks():
    gan = _actions(PARSERS["gan_throughput"])["--long-range"]
    inpaint = _actions(PARSERS["inpaint_throughput"])["--long-range"]
    assert (gan.dest, gan.nargs, gan.help) == (inpaint.dest, inpaint.nargs, inpaint.help)
    for action in (gan, inpaint):
        assert {"an", "sa", "none"} <= set(action.choices) and {"an", "sa", "none"} <= set(action.default)
    assert set(inpaint.choices) == {"an", "sa", "none", "contextual", "contextual+an"}
    assert inpaint.default == ["an", "sa", "none", "contextual"] and gan.default == ["an", "sa", "none"]
    assert "--long-range" not in _actions(PARSERS["layers"]) and "--layers" in _actions(PARSERS["layers"])


@pytest.mark.parametrize(("name", "flags"), [("eval_speed", ("--device", "--threads", "--json")),
                                             ("loader", ("--threads", "--repeats", "--warmup", "--json"))])  # fmt: skip
def test_the_other_benchmarks_share_what_means_the_same(name, flags):
    reference = _actions(PARSERS["layers"])
    actions = _actions(PARSERS[name])
    for flag in flags:
        assert _spec(actions[flag], False) == _spec(reference[flag], False), (name, flag)
    assert "--devices" not in actions and "--iters" not in actions


def test_every_option_is_spelt_with_hyphens():
    for name, parser in PARSERS.items():
        for opt in _actions(parser):
            assert "_" not in opt, (name, opt)


def test_apply_shared_sets_threads_and_checks_values(capsys):
    import torch

    before = torch.get_num_threads()
    parser = layers.build_parser()
    try:
        assert _args.apply_shared(parser, parser.parse_args(["--device", "cpu", "--threads", "1"])) == ["cpu"]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for argv, message in ((["--threads", "0"], "--threads must be at least 1"), (["--warmup", "-1"], "--warmup")):
        with pytest.raises(SystemExit):
            _args.apply_shared(parser, parser.parse_args(argv))
        assert message in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            _args.apply_shared(parser, parser.parse_args(["--device", "cuda"]))
        assert "--device cuda asked for" in capsys.readouterr().err
    assert _args.devices("all") == (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])


GPU_SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _benchmark_commands(paths=(ROOT / "README.md", ROOT / "Makefile", GPU_SCRIPT)) -> list[tuple[str, list[str]]]:
    """``(module, argv)`` of every ``python -m benchmarks.NAME ...`` in the README, the Makefile and the GPU script
    (its continued lines joined)."""
    found = []
    for path in paths:
        for line in path.read_text().replace("\\\n", " ").splitlines():
            for match in re.finditer(r"-m benchmarks\.(\w+)([^`#\n]*)", line):
                found.append((match.group(1), shlex.split(match.group(2))))
    return found


COMMANDS = _benchmark_commands()


def test_the_readme_names_every_benchmark():
    assert {m for m, _ in COMMANDS} >= set(ALL) | {"inpaint_protocol"}


@pytest.mark.parametrize(("module", "argv"), COMMANDS, ids=[" ".join([m, *a])[:80] for m, a in COMMANDS])
def test_readme_benchmark_command_parses(module, argv):
    if module not in PARSERS:
        assert module == "inpaint_protocol"
        return
    PARSERS[module].parse_args(argv)  # exits (SystemExit) on an unknown or misspelt flag


def test_gpu_script_covers_the_cuda_checks():
    script = {
        m for m, a in _benchmark_commands([GPU_SCRIPT]) if "--device" in a and a[a.index("--device") + 1] == "cuda"
    }
    assert script >= {"layers", "gan_throughput", "inpaint_throughput", "eval_speed"}
    assert "tests/common/test_attentive_norm_triton.py" in GPU_SCRIPT.read_text()


@pytest.mark.timeout(120)
def test_gpu_script_without_a_gpu_runs_nothing(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the script would run the GPU checks")
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(GPU_SCRIPT), str(tmp_path / "gpu")], env=env,
                          capture_output=True, text=True, timeout=100, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "gpu" / "summary.txt").read_text()
    assert "sees no CUDA device; nothing run" in summary and "exit" not in summary
