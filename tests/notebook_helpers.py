"""Execute a notebook of ``notebooks/`` in a real Jupyter kernel (nbclient), with its parameters overridden.

Each notebook has one code cell tagged ``parameters`` (the papermill convention) holding its defaults; the test
inserts a cell after it with the smallest settings, runs the notebook in ``notebooks/`` (Jupyter's working folder)
and reads back the values it names from a last, injected cell.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
_MARK = "NOTEBOOK-TEST-VALUES:"


def parameters_cell_index(notebook) -> int:
    """Index of the code cell tagged ``parameters``; exactly one must exist."""
    found = [i for i, c in enumerate(notebook.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"expected one cell tagged 'parameters', found {len(found)}"
    return found[0]


def run_notebook(name: str, parameters: dict[str, Any], values: tuple[str, ...] = (), timeout: int = 300) -> dict:
    """Run ``notebooks/<name>`` top to bottom with ``parameters`` overriding its defaults.

    Returns ``{expression: value}`` for each of ``values`` (evaluated in the kernel after the last cell, passed
    through JSON). Any cell's exception fails the call (nbclient's ``CellExecutionError``).
    """
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    overrides = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    notebook.cells.insert(parameters_cell_index(notebook) + 1, nbformat.v4.new_code_cell(overrides))
    probe = f"import json as _json\nprint({_MARK!r} + _json.dumps({{e: eval(e) for e in {list(values)!r}}}))"
    notebook.cells.append(nbformat.v4.new_code_cell(probe))
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    # The kernel imports this checkout's packages (not another installed copy): it inherits PYTHONPATH.
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved]))
    try:
        client.execute()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved
    for output in notebook.cells[-1].outputs:
        if output.get("name") == "stdout" and _MARK in output["text"]:
            return json.loads(output["text"].split(_MARK, 1)[1])
    raise AssertionError(f"{name}: the probe cell printed nothing")
