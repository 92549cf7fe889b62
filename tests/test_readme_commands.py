"""The README and the pages under ``docs/`` cannot drift from the code.

* Every command line in their code blocks (fenced, or indented by four spaces) that runs ``python -m an_gan``,
  ``python -m an_inpaint``, ``python -m benchmarks.NAME`` or ``python -m common.data.prepare`` (also under
  ``torchrun ... -m`` and ``srun python -m``) parses with today's command line, up to the end of argument parsing.
  Placeholders are mapped to real files: ``RUN/config.yaml`` to the task's demo config; data roots, checkpoint and
  output paths are only parsed (nothing is read or written).
* Every ``import`` of the package in a ``python`` block works, every dotted name of the package written as inline code
  (``common.layers.AttentiveNorm2d``) resolves, and every repository path (``configs/an_gan/sagan.yaml``), config
  file name (``sagan.yaml``) and relative link (with its ``#anchor``) exists.
* ``README.md`` stays a front door (at most 250 lines), every page under ``docs/`` at most 300 lines, and the README
  links every page (and every page it links exists).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import jsonargparse
import pytest

from an_gan.cli import cli_main as gan_cli
from an_inpaint.cli import cli_main as inpaint_cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *PAGES]
README_MAX_LINES = 250
PAGE_MAX_LINES = 300

CLIS = {"an_gan": gan_cli, "an_inpaint": inpaint_cli}
PACKAGES = ("common", "an_gan", "an_inpaint", "benchmarks", "configs")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "indented"}
LAUNCHERS = {"python", "python3", "torchrun"}
# Files a run writes (not in the repository) that the pages name as placeholders.
RUN_FILES = {"config.yaml"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---------------------------------------------------------------------------------------------------------------------
# Reading the pages


def code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """``(language, lines)`` of every fenced block (language as written after the fence, ``""`` if none) and every
    block indented by four spaces outside fences (language ``"indented"``) of a markdown text."""
    blocks: list[tuple[str, list[str]]] = []
    fence: str | None = None
    language, current = "", []
    indented: list[str] = []
    previous_blank = True
    for line in text.splitlines():
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence) and stripped.strip("`~") == "":
                blocks.append((language, current))
                fence, current = None, []
            else:
                current.append(line)
            continue
        match = re.match(r"^\s{0,3}(```+|~~~+)\s*([\w+-]*)", line)
        if match:
            if indented:
                blocks.append(("indented", indented))
                indented = []
            fence, language, current = match.group(1), match.group(2).lower(), []
            continue
        if line.startswith("    ") and (indented or previous_blank):
            indented.append(line[4:])
        elif indented and not stripped:
            indented.append("")
        elif indented:
            blocks.append(("indented", indented))
            indented = []
        previous_blank = not stripped
    if indented:
        blocks.append(("indented", indented))
    return blocks


def shell_lines(lines: list[str]) -> list[str]:
    """Logical command lines of a shell block: ``\\`` continuations joined, blank lines dropped."""
    logical, current = [], ""
    for line in lines:
        stripped = line.strip()
        if stripped.endswith("\\"):
            current += " " + stripped[:-1]
            continue
        current += " " + stripped
        if current.strip():
            logical.append(current.strip())
        current = ""
    if current.strip():
        logical.append(current.strip())
    return logical


def parse_command(line: str) -> tuple[str, list[str]] | None:
    """``(module, argv)`` of a command line that runs ``-m MODULE`` under python / torchrun (``srun``, a ``$``
    prompt and ``VAR=value`` prefixes allowed), else None."""
    tokens = shlex.split(line, comments=True)
    if "-m" not in tokens:
        return None
    i = tokens.index("-m")
    if i + 1 >= len(tokens) or not any(t.rsplit("/", 1)[-1] in LAUNCHERS for t in tokens[:i]):
        return None
    return tokens[i + 1], tokens[i + 2 :]


def document_commands(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, argv)`` of every ``-m`` command in the shell blocks of one page."""
    commands = []
    for language, lines in code_blocks(path.read_text()):
        if language in SHELL_LANGUAGES:
            commands.extend(c for c in map(parse_command, shell_lines(lines)) if c is not None)
    return commands


COMMANDS = [(_rel(path), module, argv) for path in DOCUMENTS for module, argv in document_commands(path)]


# ---------------------------------------------------------------------------------------------------------------------
# Parsing a command without running it


class _Parsed(Exception):
    pass


def _stop_after_parsing(monkeypatch, cls) -> None:
    original = cls.parse_args

    def parse_then_stop(self, *a, **k):
        original(self, *a, **k)
        raise _Parsed

    monkeypatch.setattr(cls, "parse_args", parse_then_stop)


def check_command(module: str, argv: list[str], monkeypatch) -> None:
    """Run ``module``'s command line on ``argv`` up to the end of its argument parsing (raises on a bad option)."""
    monkeypatch.chdir(ROOT)
    if module in CLIS and argv[:1] == ["check"]:  # its own options, then fit's arguments as fit parses them
        from common.training.check import split_options

        argv = ["fit", *split_options(argv[1:])[1]]
    if module in CLIS:
        demo = f"configs/{module}/demo.yaml"
        argv = [demo if a == "RUN/config.yaml" else a for a in argv]
        _stop_after_parsing(monkeypatch, jsonargparse.ArgumentParser)
        with pytest.raises(_Parsed):
            CLIS[module](argv)
    elif module.startswith("benchmarks."):
        _stop_after_parsing(monkeypatch, argparse.ArgumentParser)
        with pytest.raises(_Parsed):
            importlib.import_module(module).main(argv)
    elif module == "common.data.prepare":
        _stop_after_parsing(monkeypatch, jsonargparse.ArgumentParser)
        with pytest.raises(_Parsed):
            importlib.import_module(module).main(argv)
    else:
        pytest.fail(f"no check for `python -m {module}`: add one to tests/test_readme_commands.py")


@pytest.mark.parametrize(
    ("page", "module", "args"), COMMANDS, ids=[f"{p}: " + " ".join([m, *a])[:80] for p, m, a in COMMANDS]
)
def test_documented_command_parses(page, module, args, monkeypatch):
    check_command(module, args, monkeypatch)


def test_the_pages_have_the_commands_of_both_tasks():
    readme = {(m, a[0]) for p, m, a in COMMANDS if p == "README.md" and a}
    for task in CLIS:  # the README's quick start: demo, paper config, evaluate
        assert {(task, "fit"), (task, "test"), (task, "predict"), (task, "evaluate")} <= readme, task
    everywhere = {(m, a[0]) for _, m, a in COMMANDS if a and m in CLIS}
    for task, subcommands in {
        "an_gan": {"fit", "validate", "test", "predict", "evaluate", "prepare", "check"},
        "an_inpaint": {"fit", "predict", "baseline", "evaluate", "prepare", "check"},
    }.items():
        assert {(task, s) for s in subcommands} <= everywhere, task
    assert {m for _, m, _ in COMMANDS if m.startswith("benchmarks.")} >= {
        "benchmarks.layers",
        "benchmarks.gan_throughput",
        "benchmarks.inpaint_throughput",
        "benchmarks.inpaint_protocol",
        "benchmarks.loader",
        "benchmarks.eval_speed",
    }


_EXAMPLE = """\
Text.

    python -m an_gan fit --config RUN/config.yaml \\
        --trainer.max_steps 5   # indented

```bash
# a comment
torchrun --nnodes 2 --nproc-per-node 4 -m an_gan fit --trainer.devices 4
#SBATCH --nodes 2
srun python -m an_inpaint test --ckpt_path last
.venv/bin/python -m benchmarks.layers --quick
make test
```

```python
import common  # not a command: python -m an_gan fit
```

  - a list item
    continued: python -m an_gan nothing
"""


def test_the_reader_finds_every_kind_of_command():
    found = [c for lang, lines in code_blocks(_EXAMPLE) if lang in SHELL_LANGUAGES for c in shell_lines(lines)]
    parsed = [parse_command(line) for line in found]
    assert [p for p in parsed if p] == [
        ("an_gan", ["fit", "--config", "RUN/config.yaml", "--trainer.max_steps", "5"]),
        ("an_gan", ["fit", "--trainer.devices", "4"]),
        ("an_inpaint", ["test", "--ckpt_path", "last"]),
        ("benchmarks.layers", ["--quick"]),
    ]


def test_the_check_catches_a_wrong_option(monkeypatch):
    for module, argv in (
        ("an_gan", ["fit", "--trainer.no_such_flag", "1"]),
        ("an_gan", ["evaluate", "--samples", "s", "--no_such_flag", "1"]),
        ("an_inpaint", ["fit", "--model.no_such_argument", "1"]),
        ("benchmarks.layers", ["--no-such-flag"]),
    ):
        with pytest.raises(SystemExit):
            check_command(module, argv, monkeypatch)
        monkeypatch.undo()


# ---------------------------------------------------------------------------------------------------------------------
# Names, paths and links


def _inline_code(text: str) -> list[str]:
    """Inline code spans outside code blocks."""
    outside = re.sub(r"^\s{0,3}(```|~~~).*?^\s{0,3}\1\s*$", "", text, flags=re.M | re.S)
    return re.findall(r"`([^`\n]+)`", outside)


def resolve(dotted: str) -> object:
    """The object named ``package.module.attr...`` (imports the longest importable module prefix)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and error.name.split(".")[0] not in PACKAGES:
                pytest.skip(f"{dotted}: needs {error.name}, not installed here")
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _dotted_names(path: Path) -> list[str]:
    pattern = re.compile(rf"((?:{'|'.join(PACKAGES)})(?:\.\w+)+)(\(.*\))?")
    names = []
    for span in _inline_code(path.read_text()):
        match = pattern.fullmatch(span.strip())
        if match and not re.search(r"\.(py|yaml|md|ipynb|sh|json|txt)$", match.group(1)):
            names.append(match.group(1))
    return names


NAMES = sorted({(_rel(p), n) for p in DOCUMENTS for n in _dotted_names(p)})


@pytest.mark.parametrize(("page", "name"), NAMES, ids=[f"{p}: {n}" for p, n in NAMES])
def test_named_object_exists(page, name):
    try:
        resolve(name)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{page} names `{name}`, which does not resolve: {error}")


def test_python_snippets_import():
    for path in DOCUMENTS:
        for language, lines in code_blocks(path.read_text()):
            if language != "python":
                continue
            tree = ast.parse("\n".join(lines))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        found = hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}")
                        assert found, f"{_rel(path)}: from {node.module} import {alias.name}"
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.split(".")[0] in PACKAGES:
                            importlib.import_module(alias.name)


_PATH = re.compile(r"(?<![\w/.-])(?:common|an_gan|an_inpaint|configs|benchmarks|notebooks|tests|docs)/[\w./*-]*\.\w+")


def test_named_paths_and_config_files_exist():
    configs = {p.name for p in (ROOT / "configs").glob("*/*.yaml")}
    missing = []
    for path in DOCUMENTS:
        text = path.read_text()
        # (``text`` blocks draw trees of relative names; every other block and inline code name real paths)
        blocks = [line for lang, lines in code_blocks(text) if lang != "text" for line in lines]
        for span in _inline_code(text) + blocks:
            for named in _PATH.findall(span):
                if not any(ROOT.glob(named)):
                    missing.append(f"{_rel(path)}: {named}")
            for name in re.findall(r"(?<![\w/.-])([\w-]+\.yaml)\b", span):
                if name not in configs and name not in RUN_FILES:
                    missing.append(f"{_rel(path)}: config {name}")
    assert not missing, "named but not in the repository:\n" + "\n".join(missing)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file."""
    anchors = set()
    in_fence = False
    for line in path.read_text().splitlines():
        if re.match(r"^\s{0,3}(```|~~~)", line):
            in_fence = not in_fence
        match = None if in_fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            heading = match.group(1).lower().replace("`", "")
            anchors.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return anchors


def _links(path: Path) -> list[str]:
    text = re.sub(r"^\s{0,3}(```|~~~).*?^\s{0,3}\1\s*$", "", path.read_text(), flags=re.M | re.S)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


def test_relative_links_and_anchors_exist():
    broken = []
    for path in DOCUMENTS:
        for link in _links(path):
            target, _, anchor = link.partition("#")
            file = (path.parent / target).resolve() if target else path
            if not file.exists():
                broken.append(f"{_rel(path)}: {link}")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{_rel(path)}: {link} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


# ---------------------------------------------------------------------------------------------------------------------
# The README is a front door


def test_readme_and_pages_stay_short():
    too_long = [f"README.md: {n} lines" for n in [len(README.read_text().splitlines())] if n > README_MAX_LINES]
    too_long += [f"{_rel(p)}: {n} lines" for p in PAGES if (n := len(p.read_text().splitlines())) > PAGE_MAX_LINES]
    assert not too_long, f"README at most {README_MAX_LINES} lines, docs pages at most {PAGE_MAX_LINES}: {too_long}"


def test_readme_links_every_page_and_every_linked_page_exists():
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in _links(README) if link.startswith("docs/")}
    assert linked, "the README links no page under docs/"
    assert all(p.exists() for p in linked), sorted(str(p) for p in linked if not p.exists())
    unlinked = [_rel(p) for p in PAGES if p.resolve() not in linked]
    assert not unlinked, f"pages under docs/ that the README does not link: {unlinked}"


def test_readme_has_the_two_setup_commands_and_the_picture():
    text = README.read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = [lines for lang, lines in code_blocks(setup) if lang in SHELL_LANGUAGES]
    commands = [shlex.split(line, comments=True) for lines in blocks for line in shell_lines(lines)]
    assert [c for c in commands if c] == [["make", "demo"], ["make", "test"]]
    assert "](docs/an_layout_digits.png)" in text and (ROOT / "docs" / "an_layout_digits.png").exists()
