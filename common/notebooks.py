"""Helpers for the notebooks in ``notebooks/``: the repository root, the newest run checkpoint, saving figures.

Jupyter starts a kernel in the notebook's folder (or wherever the server was started), so a notebook must not look
for ``runs/`` relative to its working folder: :func:`repository_root` walks up from it to the folder that holds
``setup.cfg`` and ``common/`` (falling back to the checkout this package was imported from), and
:func:`newest_checkpoint` searches ``<root>/runs/<task>`` there.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["newest_checkpoint", "repository_root", "run_checkpoints", "save_figure"]


def _is_root(folder: Path) -> bool:
    return (folder / "setup.cfg").is_file() and (folder / "common" / "__init__.py").is_file()


def repository_root(start: str | Path | None = None) -> Path:
    """The repository folder: the first of ``start`` (default: the working folder) and its parents that holds
    ``setup.cfg`` and ``common/``; else the checkout this package was imported from; else ``start`` itself."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_root(folder):
            return folder
    package_parent = Path(__file__).resolve().parents[1]
    return package_parent if _is_root(package_parent) else here


def run_checkpoints(folder: str | Path) -> list[Path]:
    """Every ``last*.ckpt`` in a ``checkpoints/`` folder under ``folder``, the most recently written first."""
    return sorted(Path(folder).glob("**/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)


def newest_checkpoint(task: str, root: str | Path | None = None, required: bool = True) -> Path | None:
    """The most recently written ``last*.ckpt`` under ``<root>/runs/<task>`` (``root``: :func:`repository_root`).

    Args:
        task: ``"an_gan"`` or ``"an_inpaint"`` (the run folder's name).
        root: the repository folder.
        required: raise when there is none (else return ``None``).

    Raises:
        FileNotFoundError: no checkpoint and ``required``; the message names the folder and the training command.
    """
    runs = Path(root if root is not None else repository_root()) / "runs" / task
    found = run_checkpoints(runs)
    if found:
        return found[0]
    if required:
        raise FileNotFoundError(f"no checkpoint under {runs}: train one first (python -m {task} fit)")
    return None


def save_figure(figure, name: str, folder: str | Path | None) -> Path | None:
    """Save a matplotlib ``figure`` as ``<folder>/<name>.png`` (150 dpi) when ``folder`` is set; returns the path."""
    if folder is None:
        return None
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150, bbox_inches="tight")
    return path
