"""Every public name of the package is documented, and no docstring or comment cites a file outside the repository.

The packages are read with ``ast`` and ``tokenize``, never imported, so this runs in a fraction of a second.

Rules (issue 11):

* Public means the name does not start with ``_``. A module, a class, a function and a method that is public (and
  whose enclosing class, if any, is public) needs a docstring. That includes overridden hooks (``forward``,
  ``training_step``, ``setup``...): a one-line docstring says what the override does here. A module whose file name
  starts with ``_`` (``benchmarks/_layer_memory.py``) is private and needs no module docstring; its public functions
  still do. Members of a private class are private.
* Narrow exemptions, each because the thing is documented elsewhere, not because it is dull:
    - dunder methods (``__init__``, ``__call__``, ``__len__``...): the constructor's arguments belong in the class
      docstring (LightningCLI reads them from there), and the others follow the protocol they implement;
    - functions and classes defined inside a function (closures, local helpers) are not reachable from outside;
    - an ``@overload`` stub (the implementation carries the docstring);
    - the ``setter`` / ``deleter`` of a property whose getter has one.
* Citations: a docstring or a comment (Python ``#`` comments, and YAML comments under ``configs/``) may not name
  ``shared/reference`` or a path on one machine's disk (``/work/``, ``/home/``, ``/Users/``); a path-like citation of
  a source or documentation file (``dir/file.md``, ``.py``, ``.yaml``, ``.ipynb``...) must exist in the repository,
  unless the same docstring or comment block names the public repository the file belongs to (one of
  ``PUBLIC_CODE``, e.g. ``pfnet-research/sngan_projection``, ``evaluations/calc_intra_FID.py``). Not citations, so
  not checked: paths the code writes or reads at run time (under ``runs/``, ``lightning_logs/``..., or starting with
  an upper-case placeholder such as ``RUN/`` or ``DIR/``) and absolute example paths such as ``/data/imagenet``.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "an_gan", "an_inpaint", "benchmarks", "configs")

# A path-looking token: at least one "/" and a file suffix of the kind a docstring would cite.
_SUFFIXES = "md|py|ya?ml|ipynb|txt|cfg|toml|json|png"
_PATH = re.compile(rf"(?<![\w.:/-])((?:\.{{1,2}}/)?[\w.-]+(?:/[\w.*{{}}<>-]+)+\.(?:{_SUFFIXES}))\b")
_FORBIDDEN = re.compile(r"shared/reference|(?<![\w.])/(?:work|home|Users)/")
# Paths that a docstring names as something the code writes or reads at run time (an output folder, a user's data
# under the data module's ``root``), not as a citation.
_RUNTIME_ROOTS = ("runs/", "lightning_logs/", "wandb/", "outputs/", "checkpoints/", "samples/", "root/")
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*/")
# The public repositories whose files the package cites by path (facts read there, no code copied).
PUBLIC_CODE = (
    "pfnet-research/sngan_projection",  # SN-GAN with a projection discriminator (Miyato & Koyama 2018)
    "brain-research/self-attention-gan",  # SA-GAN (Zhang et al. 2019)
    "ajbrock/BigGAN-PyTorch",  # BigGAN (Brock et al. 2019)
    "JiahuiYu/generative_inpainting",  # DeepFill v1 / v2 (Yu et al. 2018, 2019)
    "dvlab-research/AttenNorm",  # the AN authors' code (Wang et al. 2020)
    "toshas/torch-fidelity",
    "mseitzer/pytorch-fid",
    "pathak22/context-encoder",
)


def _python_files() -> list[Path]:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert files, f"no Python files found under {ROOT}"
    return files


def _yaml_files() -> list[Path]:
    return sorted((ROOT / "configs").rglob("*.y*ml"))


def _is_public_module(path: Path) -> bool:
    return path.name == "__init__.py" or not path.name.startswith("_")


def _has_decorator(node: ast.AST, name: str) -> bool:
    for dec in getattr(node, "decorator_list", []):
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute) and target.attr == name:
            return True
        if isinstance(target, ast.Name) and target.id == name:
            return True
    return False


def missing_docstrings(path: Path) -> list[str]:
    """Return ``"file:line kind name"`` for each public module / class / function / method without a docstring."""
    rel = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(), filename=rel)
    out = []
    if _is_public_module(path) and ast.get_docstring(tree) is None and tree.body:
        out.append(f"{rel}:1 module")

    def visit(body, owner: str | None) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                if node.name.startswith("_"):
                    continue
                qual = f"{owner}.{node.name}" if owner else node.name
                if ast.get_docstring(node) is None:
                    out.append(f"{rel}:{node.lineno} class {qual}")
                visit(node.body, qual)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = node.name
                if name.startswith("_") or _has_decorator(node, "overload"):
                    continue
                if _has_decorator(node, "setter") or _has_decorator(node, "deleter"):
                    continue
                if ast.get_docstring(node) is None:
                    kind = "method" if owner else "function"
                    out.append(f"{rel}:{node.lineno} {kind} {owner + '.' if owner else ''}{name}")
            elif isinstance(node, ast.If | ast.Try):
                # Definitions under ``if TYPE_CHECKING:`` / ``try: import ... except`` are still module level.
                visit(node.body, owner)
                visit(getattr(node, "orelse", []), owner)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body, owner)

    visit(tree.body, None)
    return out


def _comment_blocks(comments):
    """Merge ``(line, text)`` comments on consecutive lines into blocks ``(first line, "line1\nline2...")``."""
    blocks = []
    for line, text in comments:
        if blocks and line == blocks[-1][0] + blocks[-1][1].count("\n") + 1:
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + "\n" + text)
        else:
            blocks.append((line, text))
    return blocks


def _python_texts(path: Path):
    """Return ``(first line, text)`` for every docstring and every block of comments of a Python file."""
    source = path.read_text()
    texts = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                texts.append((node.body[0].lineno, doc))
    comments = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    return texts + _comment_blocks(comments)


def _yaml_texts(path: Path):
    """Return ``(first line, text)`` for every block of comments of a YAML file (``#`` to the end of the line)."""
    comments = [(i, line[line.index("#") :]) for i, line in enumerate(path.read_text().splitlines(), 1) if "#" in line]
    return _comment_blocks(comments)


def _exists_in_repo(cited: str, path: Path) -> bool:
    cited = cited.rstrip(".")
    if "*" in cited or "{" in cited or "<" in cited:  # a pattern, e.g. ``configs/an_gan/*.yaml``
        parent = cited.split("*")[0].split("{")[0].split("<")[0].rsplit("/", 1)[0]
        return (ROOT / parent).is_dir()
    return (ROOT / cited).exists() or (path.parent / cited).exists()


def bad_citations(path: Path) -> list[str]:
    """Return ``"file:line: cited"`` for each citation of a file outside the repository in a docstring or comment."""
    rel = path.relative_to(ROOT).as_posix()
    texts = _python_texts(path) if path.suffix == ".py" else _yaml_texts(path)
    out = []
    for line0, text in texts:
        names_public_code = any(repo in text for repo in PUBLIC_CODE)
        for offset, text_line in enumerate(text.splitlines()):
            line = line0 + offset
            for m in _FORBIDDEN.finditer(text_line):
                out.append(f"{rel}:{line}: names a path outside the repository ({m.group(0)!r}): {text_line.strip()}")
            for m in _PATH.finditer(text_line):
                cited = m.group(1)
                if cited.startswith(_RUNTIME_ROOTS) or _PLACEHOLDER.match(cited) or _FORBIDDEN.search(cited):
                    continue
                if not names_public_code and not _exists_in_repo(cited, path):
                    out.append(f"{rel}:{line}: cites {cited!r}, which is not in the repository")
    return out


def test_every_public_name_has_a_docstring():
    offenders = [o for p in _python_files() for o in missing_docstrings(p)]
    assert not offenders, f"{len(offenders)} public names without a docstring:\n" + "\n".join(offenders)


def test_no_docstring_or_comment_cites_a_file_outside_the_repository():
    offenders = [o for p in [*_python_files(), *_yaml_files()] for o in bad_citations(p)]
    assert not offenders, f"{len(offenders)} citations of files outside the repository:\n" + "\n".join(offenders)


# The checker itself must be able to fail: each rule on a small synthetic file.
_UNDOCUMENTED = '''"""Module doc."""
class Public:
    """Doc."""
    def forward(self, x):
        return x
    def __init__(self):
        pass
    def _private(self):
        pass
    @property
    def size(self):
        """Doc."""
        return 1
    @size.setter
    def size(self, value):
        pass
class _Hidden:
    def visible(self):
        pass
def helper():
    def inner():
        pass
    return inner
'''

_CITING = '''"""See shared/reference/an-layer-spec.md for the layer and docs/missing_spec.md for more."""
X = 1  # from /work/main/notes.txt
Y = 2  # the demo in configs/an_gan/demo.yaml and the folders runs/demo/config.yaml, RUN/config.yaml are fine
# pfnet-research/sngan_projection, evaluations/calc_intra_FID.py: a public file, its repository named in the block

Z = 3  # but evaluations/calc_ref_stats.py alone is not a citation anyone can follow
'''


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    (tmp_path / "configs" / "an_gan").mkdir(parents=True)
    (tmp_path / "configs" / "an_gan" / "demo.yaml").write_text("{}\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    return tmp_path


def test_checker_names_each_undocumented_public_name(fake_root):
    path = fake_root / "mod.py"
    path.write_text(_UNDOCUMENTED)
    assert missing_docstrings(path) == ["mod.py:4 method Public.forward", "mod.py:20 function helper"]
    path.write_text("X = 1\n")
    assert missing_docstrings(path) == ["mod.py:1 module"]
    private = fake_root / "_private_mod.py"
    private.write_text("X = 1\n")
    assert missing_docstrings(private) == []


def test_checker_names_each_outside_citation(fake_root):
    path = fake_root / "mod.py"
    path.write_text(_CITING)
    found = bad_citations(path)
    assert len(found) == 4, found
    assert "mod.py:1:" in found[0] and "shared/reference" in found[0]
    assert "mod.py:1:" in found[1] and "docs/missing_spec.md" in found[1]
    assert "mod.py:2:" in found[2] and "/work/" in found[2]
    assert "mod.py:6:" in found[3] and "calc_ref_stats.py" in found[3]
    yaml = fake_root / "configs" / "an_gan" / "x.yaml"
    yaml.write_text("model:\n  lr: 1.0e-4  # shared/reference/gan-anchors.md\n  n: 16  # configs/an_gan/demo.yaml\n")
    assert [f.split(":")[1] for f in bad_citations(yaml)] == ["2"]
