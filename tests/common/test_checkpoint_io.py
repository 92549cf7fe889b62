"""``AtomicCheckpointIO``: complete files or the previous file, never a torn one; clear errors."""

import errno

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.demos.boring_classes import BoringModel

from common.training import checkpoints as checkpoint_io
from common.training.checkpoints import AtomicCheckpointIO, CheckpointWriteError


def test_roundtrip_and_no_temporary_left(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(3.0)}, "step": 1}, path)
    io.save_checkpoint({"state_dict": {"w": torch.arange(4.0)}, "step": 2}, path)
    loaded = io.load_checkpoint(path)
    assert loaded["step"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.arange(4.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)

    def full_disk(target, data):  # half the bytes reach the disk, then ENOSPC
        with open(target, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_io, "_write_bytes", full_disk)
    with pytest.raises(
        CheckpointWriteError,
        match=r"could not write checkpoint .*last.ckpt: No space left on device; "
        r"the previous checkpoint there is unchanged",
    ) as info:
        io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    assert info.value.errno == errno.ENOSPC
    assert io.load_checkpoint(path)["step"] == 1  # still complete and loadable
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # the torn temporary file is gone


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointWriteError, match="could not write checkpoint .*no file was written"):
        AtomicCheckpointIO().save_checkpoint({"step": 1}, blocker / "ckpt" / "last.ckpt")


def test_trainer_uses_it_for_last_ckpt(tmp_path):
    model = BoringModel()
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,
    )
    trainer.fit(model)
    ckpt = next(tmp_path.rglob("*.ckpt"))
    assert torch.load(ckpt, weights_only=False)["global_step"] == 2
    assert not list(tmp_path.rglob(".*tmp-*"))


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    target = tmp_path / "best-fid.ckpt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".best-fid.ckpt.tmp-{int(dead.stdout)}"  # a complete file left by a kill -9 mid-save
    fresh = tmp_path / f".best-fid.ckpt.tmp-{int(dead.stdout) + 1}"  # too young: might be another host's write
    other = tmp_path / f".last.ckpt.tmp-{int(dead.stdout)}"  # another checkpoint's temporaries are its own business
    for path in (stale, fresh, other):
        path.write_bytes(b"x")
    old = os.stat(stale).st_mtime - 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    AtomicCheckpointIO().save_checkpoint({"a": 1}, target)
    assert not stale.exists() and fresh.exists() and other.exists() and target.is_file()
