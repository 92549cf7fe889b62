"""Checkpoints written atomically: a crash or a full disk while saving never leaves a corrupt ``last.ckpt``.

:class:`AtomicCheckpointIO` serialises the checkpoint in memory, writes it to a temporary file next to the target,
flushes it to disk (``fsync``) and only then renames it over the target (``os.replace``, atomic on POSIX file
systems), so a reader sees either the previous complete checkpoint or the new complete one. A failed write (no
space left, no permission, ...) removes the temporary file, leaves the previous checkpoint in place and raises an
``OSError`` that names the file and the cause. Remote paths (``s3://`` ...) go through Lightning's own
``TorchCheckpointIO``. The task CLIs install it as the trainer's checkpoint plugin.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "CheckpointWriteError"]


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous file at that path (if any) is unchanged."""


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


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

    def __eq__(self, other: object) -> bool:  # stateless: every instance behaves the same (configs compare equal)
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
