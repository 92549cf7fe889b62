"""Training throughput of the class-conditional AN GAN: images per second for one full iteration.

One iteration is what ``an_gan.module.ANGAN.training_step`` does for ``n_dis`` batches: ``n_dis`` discriminator
steps and one generator step (hinge losses, AN orthogonal losses, Adam, EMA update), run through a real
``pytorch_lightning.Trainer`` on in-memory synthetic batches (no data loading cost). Reported: seconds per
iteration and images/s (``batch_size * n_dis / seconds``: real images consumed per second), plus peak GPU memory.

Configurations (Wang et al., CVPR 2020, Section 4 / 5.1 and the bundled demo):

* ``paper``: the constructors' defaults, i.e. the paper's model: 128x128, ch=64, z=128, 1000 classes, AN (n=16)
  replacing the cBN of G's third block and in D's first block, six-block D, SN on G and D, batch 256 (use a small
  batch on a CPU: ``--paper-batch 4``);
* ``demo``: the networks of the bundled demo (read from ``configs/an_gan/demo.yaml``, 32x32), batch 64.

Devices: ``cpu`` and, when available, ``cuda`` (fp32, plus bf16 autocast with ``--bf16``)::

    python -m benchmarks.gan_throughput                       # CPU (and CUDA if present), both configs
    python -m benchmarks.gan_throughput --devices cuda --bf16 --paper-batch 256 --iters 50
    python -m benchmarks.gan_throughput --json runs/benchmarks/gan_throughput.json

It prints a table and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml

from an_gan.module import ANGAN
from an_gan.networks import Discriminator, Generator
from an_gan.settings import EMASettings, PictureSettings
from configs import config_path

__all__ = ["CONFIGS", "LONG_RANGE", "add_overheads", "main", "measure"]


def _demo_networks() -> dict[str, dict[str, Any]]:
    """The generator and discriminator settings of the shipped demo file (configs/an_gan/demo.yaml)."""
    model = yaml.safe_load(config_path("an_gan", "demo").read_text())["model"]
    return {net: dict(model[net]["init_args"]) for net in ("generator", "discriminator")}


#: Architectures measured: ``Generator`` / ``Discriminator`` keyword arguments (besides classes and resolution).
CONFIGS: dict[str, dict[str, Any]] = {
    "paper": {
        "num_classes": 1000,
        "resolution": 128,
        "generator": {},  # the constructors' defaults are the paper's model (configs/an_gan/imagenet128.yaml)
        "discriminator": {},
    },
    "demo": {"num_classes": 10, "resolution": 32, **_demo_networks()},
}


class _RepeatBatch:
    """An iterable that yields the same in-memory batch ``n`` times (no data loading in the timings)."""

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter([self.batch] * self.n)


class _Timer(pl.Callback):
    """Wall time of the iterations after ``warmup`` (an iteration ends with a G step)."""

    def __init__(self, warmup: int, n_dis: int) -> None:
        self.warmup, self.n_dis = warmup, n_dis
        self.start: float | None = None
        self.end: float | None = None
        self.iterations = 0

    def _sync(self, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.num_d_steps % self.n_dis != 0:
            return
        g_steps = pl_module.num_g_steps
        if g_steps == self.warmup:
            self._sync(pl_module)
            self.start = time.perf_counter()
        elif g_steps > self.warmup:
            self._sync(pl_module)
            self.end = time.perf_counter()
            self.iterations = g_steps - self.warmup


#: ``--long-range`` choices: the same networks with AN, SA-GAN's self-attention (after G block 2 and D block 1, as
#: SA-GAN's ImageNet model; the demo keeps its own blocks) or neither (SN-GAN*).
LONG_RANGE = ("an", "sa", "none")


def _networks(config: str, long_range: str) -> tuple[dict[str, Any], dict[str, Any]]:
    arch = CONFIGS[config]
    g, d = dict(arch["generator"]), dict(arch["discriminator"])
    if long_range != "an":
        g["long_range"] = d["long_range"] = long_range
        if long_range == "sa" and config == "paper":
            d["long_range_block"] = 1  # SA-GAN's d_block2 (32x32 maps); G keeps block 2 (g_block3)
    return g, d


def measure(
    config: str,
    device: str,
    batch_size: int,
    iters: int,
    warmup: int = 2,
    bf16: bool = False,
    n_dis: int = 1,
    long_range: str = "an",
) -> dict[str, Any]:
    """Time ``iters`` training iterations of ``config`` with ``long_range`` on ``device``; returns one result row."""
    torch.manual_seed(0)
    arch = CONFIGS[config]
    k, r = arch["num_classes"], arch["resolution"]
    g_args, d_args = _networks(config, long_range)
    model = ANGAN(
        generator=Generator(k, r, **g_args),
        discriminator=Discriminator(k, r, **d_args),
        n_dis=n_dis,
        ema=EMASettings(start_step=0),
        pictures=PictureSettings(every_n_steps=0),
    )
    gen = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.rand(batch_size, 3, r, r, generator=gen) * 2 - 1,
        "label": torch.randint(0, k, (batch_size,), generator=gen),
    }
    batches = _RepeatBatch(batch, (iters + warmup) * n_dis)
    timer = _Timer(warmup, n_dis)
    scratch = tempfile.mkdtemp(prefix="an_gan_bench_")
    trainer = pl.Trainer(
        accelerator=device,
        devices=1,
        precision="bf16-mixed" if bf16 else "32-true",
        max_steps=(iters + warmup) * (n_dis + 1),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
        default_root_dir=scratch,  # the end-of-training sample pictures are not kept
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.fit(model, train_dataloaders=batches)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = (timer.end - timer.start) / max(timer.iterations, 1)
    row = {
        "config": config,
        "long_range": long_range,
        "device": device,
        "precision": "bf16-mixed" if bf16 else "fp32",
        "batch_size": batch_size,
        "n_dis": n_dis,
        "iterations": timer.iterations,
        "seconds_per_iteration": seconds,
        "images_per_second": batch_size * n_dis / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "threads": torch.get_num_threads(),
    }
    return row


def add_overheads(rows: list[dict[str, Any]]) -> None:
    """``overhead_vs_none``: each row's extra time per iteration over the ``none`` row of the same config, device,
    precision and batch (measured in the same run), as a fraction of that row's time."""
    for row in rows:
        key = (row["config"], row["device"], row["precision"], row["batch_size"])
        base = next((r for r in rows if r["long_range"] == "none" and (r["config"], r["device"], r["precision"],
                                                                       r["batch_size"]) == key), None)  # fmt: skip
        row["overhead_vs_none"] = (
            row["seconds_per_iteration"] / base["seconds_per_iteration"] - 1.0 if base is not None else None
        )


def _table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'config':<7} {'long':<5} {'device':<6} {'precision':<10} {'batch':>5} {'s/iter':>9} {'images/s':>10} "
            f"{'vs none':>8} {'peak GiB':>9}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for row in rows:
        mem = f"{row['peak_memory_gib']:.2f}" if row["peak_memory_gib"] is not None else "-"
        over = row.get("overhead_vs_none")
        over = f"{over:+.1%}" if over is not None else "-"
        lines.append(
            f"{row['config']:<7} {row['long_range']:<5} {row['device']:<6} {row['precision']:<10} "
            f"{row['batch_size']:>5} {row['seconds_per_iteration']:>9.4f} {row['images_per_second']:>10.1f} "
            f"{over:>8} {mem:>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command line entry point; returns the result rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--devices", nargs="+", default=None, choices=["cpu", "cuda"], help="default: cpu, plus cuda when available"
    )
    parser.add_argument("--paper-batch", type=int, default=None, help="default: 4 on CPU, 256 on CUDA")
    parser.add_argument("--demo-batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--n-dis", type=int, default=1)
    parser.add_argument(
        "--long-range", nargs="+", default=list(LONG_RANGE), choices=LONG_RANGE,
        help="long-range modules measured side by side (default all: the table's 'vs none' column is AN's cost)",
    )  # fmt: skip
    parser.add_argument("--bf16", action="store_true", help="also measure bf16 autocast (CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=Path("runs/benchmarks/gan_throughput.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--devices cuda given but CUDA is not available")

    rows = []
    for device in devices:
        for config in args.configs:
            if config == "paper":
                batch = args.paper_batch or (256 if device == "cuda" else 4)
            else:
                batch = args.demo_batch
            precisions = [False, True] if (args.bf16 and device == "cuda") else [False]
            for bf16 in precisions:
                for long_range in args.long_range:
                    row = measure(config, device, batch, args.iters, args.warmup, bf16, args.n_dis, long_range)
                    rows.append(row)
                    print(_table([row]).splitlines()[-1], flush=True)
    add_overheads(rows)
    print()
    print(_table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "platform": platform.platform(), "processor": platform.processor()}
    if torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name()
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
