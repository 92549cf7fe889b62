"""The sections of ``check`` (:mod:`common.training.check.main`), each adding items to a
:class:`common.training.check.report.Report`: data (counts, a decoded sample, the loader's speed), training (a few
real iterations through ``Trainer.fit``, projected to the configured run), checkpoints (written and reloaded with the
trainer's checkpoint I/O) and logging. Nothing here re-implements the DataModules, the training step or the I/O."""

from __future__ import annotations

import math
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from common.training.callbacks.resume import KEY as RNG_KEY
from common.training.callbacks.resume import capture_rng_state
from common.training.check.report import Report

__all__ = [
    "Clock",
    "batch_images",
    "check_checkpoint_io",
    "check_logging",
    "data_items",
    "loader_item",
    "loader_speed",
    "same",
]


def batch_images(batch: Any) -> int:
    """Images in a batch: the first dimension of its ``image`` entry (dict) or of its first tensor."""
    if isinstance(batch, dict):
        batch = batch.get("image", next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    return int(batch.shape[0]) if isinstance(batch, torch.Tensor) else 0


def same(a: Any, b: Any) -> bool:
    """Deep equality of nested dicts / lists / tuples of tensors and plain values (tensors compared exactly)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and torch.equal(a.detach().cpu(), b.detach().cpu())
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _file_of(dataset: Any, index: int) -> str:
    if hasattr(dataset, "path"):
        return str(dataset.path(index))
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        return str(paths[index])
    return f"item {index}"


def data_items(
    report: Report,
    splits: dict[str, Any],
    expected: dict[str, int] | None,
    classes: int | None,
    per_split: int,
    seed: int,
    dataset_name: str,
) -> bool:
    """Counts per split (against the paper's ``expected`` counts) and a seeded sample of every split decoded through
    the datasets' own ``__getitem__``; returns False when a fail was added."""
    counts = {name: len(ds) for name, ds in splits.items()}
    found = ", ".join(f"{k} {v:,}" for k, v in counts.items()) + (f"; {classes:,} classes" if classes else "")
    empty = [k for k, v in counts.items() if v == 0]
    ok = True
    if empty:
        report.add(
            "data",
            "counts",
            "fail",
            f"{dataset_name}: {found}; no images in {', '.join(empty)}",
            "check the split folders against the layout in docs/data.md",
            counts=counts,
        )
        ok = False
    elif expected:
        have = {**counts, **({"classes": classes} if classes else {})}
        differ = {k: (have.get(k), v) for k, v in expected.items() if have.get(k) != v}
        if differ:
            paper = ", ".join(f"{k} {v:,}" for k, v in expected.items())
            report.add(
                "data",
                "counts",
                "warn",
                f"{dataset_name}: {found}; the paper's: {paper}",
                "a subset or a different copy: the paper's numbers need the full dataset",
                counts=counts,
                expected=expected,
            )
        else:
            report.add("data", "counts", "pass", f"{dataset_name}: {found} (the paper's)", counts=counts)
    else:
        report.add("data", "counts", "pass", f"{dataset_name}: {found} (no paper numbers for it)", counts=counts)
    rng = np.random.default_rng(seed)
    bad: list[str] = []
    decoded = 0
    for name, ds in splits.items():
        n = len(ds)
        for index in sorted(rng.choice(n, size=min(per_split, n), replace=False).tolist()) if n else []:
            try:
                ds[index]
                decoded += 1
            except Exception as error:  # any decoding error is what we are looking for
                bad.append(f"{name}: {_file_of(ds, index)} ({type(error).__name__}: {str(error)[:80]})")
    sample = f"{decoded + len(bad)} files decoded (up to {per_split} per split, seed {seed})"
    if bad:
        report.add(
            "data",
            "decode",
            "fail",
            f"{sample}; {len(bad)} unreadable: " + "; ".join(bad[:10]),
            "replace or delete the unreadable files (a bad file stops the run when it is drawn)",
            unreadable=bad,
        )
        ok = False
    else:
        report.add("data", "decode", "pass", sample, decoded=decoded)
    return ok


def _epochs(loader: Any):
    """The loader's batches, epoch after epoch (as training draws them)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training loader yields no batch (fewer images than one batch?)")


def loader_speed(loader: Any, batches: int) -> dict[str, float]:
    """Images per second of ``loader`` over ``batches`` batches after the first (worker start-up excluded); a
    loader shorter than that starts new epochs, as training does."""
    iterator = _epochs(loader)
    start = time.perf_counter()
    next(iterator)
    first = time.perf_counter() - start
    images, start = 0, time.perf_counter()
    for _ in range(batches):
        images += batch_images(next(iterator))
    seconds = time.perf_counter() - start
    return {"images_per_s": images / seconds if seconds > 0 else math.inf, "first_batch_s": first, "images": images}


def loader_item(
    report: Report, dm: Any, speed: dict[str, Any] | Exception, timing: dict[str, Any], prepare_hint: str
) -> None:
    """The loader item: its speed (measured before the fit: the training loader follows the trainer's position)
    against what training consumes."""
    if isinstance(speed, Exception):
        report.add("data", "loader", "fail", f"{type(speed).__name__}: {speed}", "see docs/data.md")
        return
    workers = getattr(dm, "num_workers", 0)
    detail = (
        f"{speed['images_per_s']:.0f} images/s with {workers} worker(s) (first batch {speed['first_batch_s']:.1f} s)"
    )
    if not timing:
        report.add("data", "loader", "pass", detail + " (training did not run: nothing to compare)", **speed)
        return
    need = timing["images_per_s"]
    detail += f"; training takes {need:.0f} images/s"
    if speed["images_per_s"] < 1.2 * need:
        hint = "more --data.init_args.num_workers" + (
            f", or a prepared copy: {prepare_hint}" if prepare_hint and "Prepared" not in type(dm).__name__ else ""
        )
        report.add("data", "loader", "warn", detail + ": the loader may hold training back", hint, **speed)
    else:
        report.add("data", "loader", "pass", detail + " (a prepared copy would not help)", **speed)


class Clock(pl.Callback):
    """Times the training batches of a short ``fit``: ``warmup`` batches, then ``measure`` timed ones (a time mark
    after each batch; the first mark after the warm-up starts the timing), then it stops the fit."""

    def __init__(self, warmup: int, measure: int) -> None:
        self.warmup, self.measure = warmup, measure
        self.start = 0.0
        self.marks: list[tuple[float, int, int]] = []  # (time, global step, images) after each batch

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the clock (set-up included in ``first_batch_s``)."""
        self.start = time.perf_counter()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        """Record the time, step and images; stop once enough batches are timed."""
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.marks.append((time.perf_counter(), trainer.global_step, batch_images(batch)))
        if len(self.marks) > self.warmup + self.measure:
            trainer.should_stop = True

    def summary(self) -> dict[str, float]:
        """Seconds per batch, global steps per batch and images per second after the warm-up batches."""
        if len(self.marks) < self.warmup + 2:
            raise RuntimeError(f"only {len(self.marks)} training batches ran (an epoch shorter than the check?)")
        t0, s0, _ = self.marks[self.warmup]
        t1, s1, _ = self.marks[-1]
        n = len(self.marks) - 1 - self.warmup
        images = sum(m[2] for m in self.marks[self.warmup + 1 :])
        return {
            "batches_timed": n,
            "seconds_per_batch": (t1 - t0) / n,
            "steps_per_batch": (s1 - s0) / n,
            "images_per_s": images / (t1 - t0),
            "startup_s": self.marks[0][0] - self.start,
        }


def peak_memory(device: torch.device) -> tuple[str, float]:
    """Peak memory of the run in GiB: the device's allocator on CUDA, else this process's peak resident size."""
    if device.type == "cuda":
        return "peak GPU memory", torch.cuda.max_memory_allocated(device) / 2**30
    return "peak host memory (process RSS)", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def checkpoints_kept(trainer: pl.Trainer) -> int:
    """Checkpoint files a run keeps at once: ``last.ckpt``, ``on_exception.ckpt`` and each best-by-metric's top k."""
    best = sum(
        max(cb.save_top_k, 0) for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor
    )
    return 2 + best


def check_checkpoint_io(
    report: Report, trainer: pl.Trainer, model: pl.LightningModule, folder: Path, run_root: Path, kept: int
) -> None:
    """Write a checkpoint with the trainer's checkpoint I/O (as ``fit`` does), reload it and compare weights,
    optimiser states and RNG states; compare the free disk space with the checkpoints the run keeps."""
    path = folder / "checkpoints" / "check.ckpt"
    try:
        trainer.save_checkpoint(path)
        rng_now = capture_rng_state()
        loaded = trainer.strategy.load_checkpoint(path)
    except Exception as error:
        report.add(
            "checkpoints",
            "write + reload",
            "fail",
            f"{path}: {type(error).__name__}: {error}",
            "free disk space or choose a writable --trainer.default_root_dir",
        )
        return
    size = path.stat().st_size
    problems = []
    if not same(loaded.get("state_dict"), model.state_dict()):
        problems.append("weights differ")
    if not same(loaded.get("optimizer_states"), [o.state_dict() for o in trainer.optimizers]):
        problems.append("optimiser states differ")
    saved_rng = loaded.get(RNG_KEY) or []
    if not saved_rng or not same(saved_rng[trainer.global_rank], rng_now):
        problems.append("RNG states missing or different")
    detail = f"{path} ({size / 2**20:.1f} MiB): weights, {len(trainer.optimizers)} optimiser state(s), RNG"
    if problems:
        report.add(
            "checkpoints",
            "write + reload",
            "fail",
            f"{detail}: " + ", ".join(problems),
            "a callback or the checkpoint I/O drops state: see docs/reliability.md",
        )
    else:
        report.add("checkpoints", "write + reload", "pass", detail + " identical after reload", bytes=size)
    path.unlink(missing_ok=True)
    free = shutil.disk_usage(run_root if run_root.exists() else folder).free
    need = size * (kept + 1)  # + 1: an atomic write holds the old and the new file for a moment
    detail = f"{free / 2**30:.1f} GiB free in {run_root}; the run keeps {kept} checkpoints of {size / 2**20:.1f} MiB"
    fix = "free disk space or move the run with --trainer.default_root_dir (and the logger's save_dir)"
    status = "fail" if free < need else "warn" if free < 4 * need else "pass"
    report.add("checkpoints", "disk space", status, detail, fix, free_bytes=free, needed_bytes=need)


def check_logging(report: Report, logger: Any) -> None:
    """The W&B mode (online, offline, off) or the logger's kind."""
    from common.training.tracking import ANWandbLogger

    if logger is None:
        report.add("logging", "W&B", "pass", "off (--trainer.logger false): curves are not kept; pictures as PNG files")
    elif isinstance(logger, ANWandbLogger):
        reason = getattr(logger, "offline_reason", None)
        if reason:
            report.add(
                "logging",
                "W&B",
                "warn",
                f"offline ({reason}): the run logs to {logger.save_dir}/wandb",
                "`wandb login` (or WANDB_API_KEY) on the node for online logging, or `wandb sync` later",
            )
        else:
            report.add("logging", "W&B", "pass", f"online, project {logger.name}")
    else:
        report.add("logging", "logger", "pass", type(logger).__name__)
