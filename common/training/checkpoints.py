"""Checkpoints: written atomically, and stamped with the task and architecture that wrote them.

**Atomic writes.** Checkpoints written atomically: a crash or a full disk while saving never leaves a corrupt
``last.ckpt``.
:class:`AtomicCheckpointIO` serialises the checkpoint in memory, writes it to a temporary file next to the target,
flushes it to disk (``fsync``) and only then renames it over the target (``os.replace``, atomic on POSIX file
systems), so a reader sees either the previous complete checkpoint or the new complete one. A failed write (no
space left, no permission, ...) removes the temporary file, leaves the previous checkpoint in place and raises an
``OSError`` that names the file and the cause. Remote paths (``s3://`` ...) go through Lightning's own
``TorchCheckpointIO``. The task CLIs install it as the trainer's checkpoint plugin.

**Stamps.** Which task and which architecture wrote a checkpoint, and a clear error when they are not this run's.
Every checkpoint of the package carries a small stamp (:data:`STAMP_KEY`, written by :class:`CheckpointStamp`):
the LightningModule class that wrote it and a one-line description of each of its networks. Before ``fit``,
``validate``, ``test`` or ``predict`` loads a checkpoint, :func:`check_checkpoint` compares it with the model the
command built and raises :class:`CheckpointMismatchError` naming both sides when

* the checkpoint was written by the other task (``an_inpaint`` vs ``an_gan``), or
* its networks differ from this run's (missing or unexpected weights, or weights of another shape, e.g. AN vs
  SA-GAN attention, another width or another number of AN entities),

instead of Lightning's long ``load_state_dict`` traceback or, worse, a run that starts from the wrong weights.
Checkpoints without a stamp (written before it existed) are checked by their weights alone. The stamp also records
the package version that wrote the checkpoint (:func:`package_version`), which the CLI names when a checkpoint's
stored arguments do not parse in this version (:class:`CheckpointVersionError`).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

__all__ = [
    "STAMP_KEY",
    "AtomicCheckpointIO",
    "ALLOWED_CLASS_PREFIXES",
    "CheckpointMismatchError",
    "CheckpointStamp",
    "CheckpointVersionError",
    "CheckpointWriteError",
    "ForeignClassError",
    "check_class_paths",
    "check_checkpoint",
    "describe_networks",
    "package_version",
    "stamp_checkpoint",
]


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous file at that path (if any) is unchanged."""


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


#: A temporary checkpoint file this old, of a process that no longer runs here, is left over from a killed write.
STALE_TEMPORARY_S = 600.0


def _remove_stale_temporaries(target: Path) -> None:
    """Remove ``.<name>.tmp-<pid>`` files next to ``target`` left by writes that were killed (``kill -9`` mid-save):
    older than :data:`STALE_TEMPORARY_S` and of a process id that is not running on this machine."""
    now = time.time()
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        pid = tmp.name.rpartition("-")[2]
        with contextlib.suppress(OSError, ValueError):
            if now - tmp.stat().st_mtime < STALE_TEMPORARY_S or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # still running: its write may be in progress
            except ProcessLookupError:
                tmp.unlink()


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are write-to-temporary, fsync, rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        """Save atomically to a local path (temporary file, fsync, rename); remote URLs go through
        ``TorchCheckpointIO``.

        Raises:
            CheckpointWriteError: the write failed; the previous file at ``path`` (if any) is unchanged.
            TypeError: ``storage_options`` given for a local path.
        """
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options for local checkpoints")
        target = Path(str(path).removeprefix("file://"))
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_bytes(tmp, buffer.getvalue())
            os.replace(tmp, target)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            previous = "the previous checkpoint there is unchanged" if target.is_file() else "no file was written"
            raise CheckpointWriteError(
                err.errno, f"could not write checkpoint {target}: {err.strerror or err}; {previous}"
            ) from err
        with contextlib.suppress(OSError):  # make the rename itself durable (best effort)
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _remove_stale_temporaries(target)

    def __eq__(self, other: object) -> bool:  # stateless: every instance behaves the same (configs compare equal)
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ----------------------------------------------------------------------------------------------------
# Stamps

#: Key of the stamp in a checkpoint dict.
STAMP_KEY = "an_run"


#: Where the classes a checkpoint may name (``class_path`` in its stored configuration) come from: this package's own
#: modules, torch's optimisers and layers. A checkpoint is data: it never chooses code outside these.
ALLOWED_CLASS_PREFIXES: tuple[str, ...] = ("common.", "an_gan.", "an_inpaint.", "torch.optim.", "torch.nn.")


class ForeignClassError(ValueError):
    """A checkpoint's stored configuration names a class outside :data:`ALLOWED_CLASS_PREFIXES`."""


def check_class_paths(config: Any, source: str) -> None:
    """Refuse a stored configuration (``dict`` / ``list`` tree) that names a class outside this package.

    Every ``class_path`` / ``_class_path`` value (and a bare dotted string under those keys anywhere in the tree)
    must start with one of :data:`ALLOWED_CLASS_PREFIXES`; ``source`` names where the configuration came from.

    Raises:
        ForeignClassError: naming the class, the key path and what to do instead.
    """

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{where}.{key}" if where else str(key)
                if key in ("class_path", "_class_path") and not (
                    isinstance(value, str) and value.startswith(ALLOWED_CLASS_PREFIXES)
                ):
                    raise ForeignClassError(
                        f"{source} names the class {value!r} at {here}, which is not one of this package's classes "
                        f"(allowed: {', '.join(p + '*' for p in ALLOWED_CLASS_PREFIXES)}); a checkpoint is data and "
                        "may not choose code to run: refused. Build the run from your own config instead "
                        "(--config <run>/config.yaml, or load_run(checkpoint, config=...))"
                    )
                walk(value, here)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(config, "")


class CheckpointMismatchError(ValueError):
    """A checkpoint written by another task or for another architecture than the run that loads it."""


class CheckpointVersionError(CheckpointMismatchError):
    """A checkpoint whose stored arguments this version of the package does not accept (written by another,
    usually older, version)."""


#: The distribution name of this package (``setup.cfg``).
DISTRIBUTION = "attentive-norm"


def package_version() -> str | None:
    """The installed version of this package (``importlib.metadata``), None when it is not installed (a bare
    checkout on ``PYTHONPATH``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return None


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(net: nn.Module) -> str:
    config = getattr(net, "config", None)
    count = sum(p.numel() for p in net.parameters())
    if isinstance(config, dict) and config:
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{_qualname(net)}({args})"
    return f"{_qualname(net)} ({count:,} parameters)"


def describe_networks(module: nn.Module) -> dict[str, str]:
    """``{child name: description}`` of the module's top-level sub-networks that hold parameters."""
    return {name: _describe(child) for name, child in module.named_children() if any(True for _ in child.parameters())}


class CheckpointStamp(pl.Callback):
    """Writes the stamp into every checkpoint: the module class, a description of each network and, when the CLI
    set :attr:`model_config`, the resolved ``model`` section of the run's config (what
    :func:`common.training.runs.load_run` rebuilds the module from)."""

    def __init__(self) -> None:
        self.model_config: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """Write the stamp (:func:`stamp_checkpoint`) into the checkpoint dict."""
        stamp_checkpoint(pl_module, checkpoint, self.model_config)


def stamp_checkpoint(
    module: nn.Module,
    checkpoint: dict,
    model_config: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Write the stamp into ``checkpoint`` unless one is there (the CLI's callback runs before the module's hook).

    Besides the module class, the package version (:func:`package_version`, ``None`` when not installed) and the
    network descriptions it records ``network_configs``: ``{name: {"class_path",
    "init_args"}}`` of the networks that expose their constructor arguments as a ``config`` dict, so that a module
    trained through the plain ``Trainer`` API can be rebuilt too (:func:`common.training.runs.load_run`), with
    ``settings``:
    other constructor arguments that are not hyperparameters (plain values, e.g. a settings dataclass as a dict).
    """
    if checkpoint.get(STAMP_KEY):
        return
    configs = {
        name: {"class_path": _qualname(child), "init_args": dict(child.config)}
        for name, child in module.named_children()
        if isinstance(getattr(child, "config", None), dict)
    }
    checkpoint[STAMP_KEY] = {
        "module": _qualname(module),
        "package_version": package_version(),
        "networks": describe_networks(module),
        "network_configs": configs,
        "settings": settings or {},
        "model_config": model_config,
    }


def _examples(keys, limit: int = 3) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")


def _task(name: str) -> str:
    return name.split(".", 1)[0]


def check_checkpoint(module: nn.Module, checkpoint: dict | str | Path, path: str | Path | None = None) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``checkpoint`` (a dict or a file) fits ``module``.

    Raises:
        FileNotFoundError: ``checkpoint`` names a file that does not exist.
        CheckpointMismatchError: another task's checkpoint, or weights that do not fit the module (message: both
            modules or both architectures, and examples of the weights that differ).
    """
    if not isinstance(checkpoint, dict):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    source = f"checkpoint {path}" if path is not None else "the checkpoint"
    stamp = checkpoint.get(STAMP_KEY) or {}
    here = _qualname(module)
    if stamp.get("module") and stamp["module"] != here:
        raise CheckpointMismatchError(
            f"{source} was written by {stamp['module']} (task {_task(stamp['module'])}) but this run is {here} "
            f"(task {_task(here)}): use it with `python -m {_task(stamp['module'])}`, or pass a checkpoint of "
            f"{_task(here)}"
        )
    theirs = checkpoint.get("state_dict")
    if theirs is None:
        raise CheckpointMismatchError(f"{source} has no state_dict: it is not a Lightning checkpoint of {here}")
    own = module.state_dict()
    missing, unexpected = own.keys() - theirs.keys(), theirs.keys() - own.keys()
    if not stamp and missing and not own.keys() & theirs.keys():
        raise CheckpointMismatchError(f"{source} holds none of the weights of {here}: it was written by another task")
    reshaped = {k for k in own.keys() & theirs.keys() if tuple(own[k].shape) != tuple(theirs[k].shape)}
    if missing or unexpected or reshaped:
        ours = describe_networks(module)
        saved = stamp.get("networks") or {}
        names = [n for n in {**saved, **ours} if saved.get(n) != ours.get(n)] or list(ours)
        lines = [f"{source} was written for another architecture than this run's {here}:"]
        for name in names:
            lines.append(f"  {name}: checkpoint {saved.get(name, '(not recorded)')}")
            lines.append(f"  {' ' * len(name)}  this run   {ours.get(name, '(none)')}")
        if missing:
            lines.append(f"  {len(missing)} weights of this run are not in the checkpoint ({_examples(missing)})")
        if unexpected:
            lines.append(f"  {len(unexpected)} weights of the checkpoint are not in this run ({_examples(unexpected)})")
        if reshaped:
            key = sorted(reshaped)[0]
            lines.append(
                f"  {len(reshaped)} weights differ in shape (e.g. {key}: checkpoint {tuple(theirs[key].shape)}, "
                f"this run {tuple(own[key].shape)})"
            )
        lines.append("  resume or evaluate with the run's own config (its config.yaml next to checkpoints/)")
        raise CheckpointMismatchError("\n".join(lines))
