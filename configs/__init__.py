"""The package's LightningCLI configs (``configs/<task>/<name>.yaml``), shipped as package data.

The YAML files are the configuration: the paper's settings, the baselines, the ablations and the bundled demos.
They ship with the installed package so that ``python -m an_gan fit`` / ``python -m an_inpaint fit`` find their
demo file from any working folder; :func:`config_path` locates a file.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG_ROOT", "config_path", "list_configs"]

#: The folder holding ``an_gan/`` and ``an_inpaint/`` (inside the source tree or the installed package).
CONFIG_ROOT = Path(__file__).resolve().parent


def config_path(task: str, name: str) -> Path:
    """The path of ``configs/<task>/<name>`` (``name`` with or without ``.yaml``).

    Raises:
        FileNotFoundError: if the package has no such config (the message lists the ones it has).
    """
    filename = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    path = CONFIG_ROOT / task / filename
    if not path.is_file():
        have = ", ".join(p.name for p in list_configs(task)) or "none"
        raise FileNotFoundError(f"no config {filename!r} for task {task!r} in {CONFIG_ROOT / task} (have: {have})")
    return path


def list_configs(task: str) -> list[Path]:
    """Every YAML config of ``task``, sorted by name."""
    return sorted((CONFIG_ROOT / task).glob("*.yaml"))
