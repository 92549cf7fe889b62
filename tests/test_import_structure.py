"""The packages' import structure: no circles, the tasks independent, ``common`` below both.

Every ``import`` statement of every module counts, at the top of a file or inside a function, so an import moved into
a function to dodge a circle is still a circle here. ``from pkg import name`` is an edge to the module ``pkg.name``
when that is a module, else to ``pkg`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "an_gan", "an_inpaint", "configs", "benchmarks")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that ``name`` (a dotted import target) loads, or None for outside modules."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """``{module: project modules it imports}`` from every import statement in the module's file."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            else:
                continue
            edges.update(t for t in (_resolve(name, modules) for name in targets) if t and t != module)
        graph[module] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_files())


def test_the_graph_is_read(graph):
    # the reader must see real edges, or the checks below pass vacuously
    assert "common.layers.attentive_norm" in graph["common.layers"]
    assert "an_gan.networks" in graph["an_gan.module"]
    assert "common.training.cli" in graph["an_inpaint.cli"]
    assert len(graph) > 80


def test_no_import_circles(graph):
    assert circles(graph) == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("common", {"an_gan", "an_inpaint", "benchmarks"}),
        ("an_gan", {"an_inpaint", "benchmarks"}),
        ("an_inpaint", {"an_gan", "benchmarks"}),
        ("configs", {"common", "an_gan", "an_inpaint", "benchmarks"}),
    ],
)
def test_layering(graph, package, forbidden):
    bad = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if _top(module) == package
        for target in targets
        if _top(target) in forbidden
    )
    assert bad == []


def test_the_checks_fail_on_a_planted_circle_and_a_cross_import(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "an_gan" / "a.py").write_text("from an_gan import b\n")
    # the circle is closed by an import inside a function: it still counts
    (tmp_path / "an_gan" / "b.py").write_text("def f():\n    from an_gan.a import x\n")
    (tmp_path / "an_inpaint" / "c.py").write_text("from . import d\nimport an_gan.a\n")
    (tmp_path / "an_inpaint" / "d.py").write_text("")
    planted = import_graph(module_files(tmp_path))
    assert circles(planted) == [["an_gan.a", "an_gan.b"]]
    assert planted["an_inpaint.c"] == {"an_inpaint.d", "an_gan.a"}
