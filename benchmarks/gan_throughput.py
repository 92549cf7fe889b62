"""Training throughput of the class-conditional AN GAN: images per second for one full iteration.

One iteration is what ``an_gan.module.ANGAN.training_step`` does for ``n_dis`` batches: ``n_dis`` discriminator
steps and one generator step (hinge losses, AN orthogonal losses, Adam, EMA update), run through a real
``pytorch_lightning.Trainer`` on in-memory synthetic batches (no data loading cost). Reported: ms per iteration
(the median over ``--repeats`` timed iterations, after ``--warmup`` untimed ones; with ``--rounds R`` each row pools
R fits made in alternation with the other modules' - use it on a CPU, where a fit's speed drifts by ~10%), images/s
(``batch_size * n_dis / seconds``: real images consumed per second), each long-range module's overhead over
``none`` in the same run (ms per iteration and %), plus peak GPU memory. The module columns time the long-range
layers in place, in the same iterations (``benchmarks._module_time``; the median iteration's sum over every call,
forward and backward, in G and D): for ``none``, the conditional BN that AN takes the place of in G
(``an_placement="replace_cbn"``; D has none); "module vs none" is the difference, what the module costs an
iteration, resolved where the iteration times' difference is noise.

Configurations (Wang et al., CVPR 2020, Section 4 / 5.1 and the bundled demo):

* ``paper``: the constructors' defaults, i.e. the paper's model: 128x128, ch=64, z=128, 1000 classes, AN (n=16)
  replacing the cBN of G's third block and in D's first block, six-block D, SN on G and D, batch 256 (use a small
  batch on a CPU: ``--paper-batch 4``);
* ``demo``: the bundled demo as ``configs/an_gan/demo.yaml`` sets it (networks, resolution, batch, ``n_dis`` and
  ``d_batch`` read from the file: today 8x8 digits, batch 32, two D steps per G step, one D call on real + fake).

Long-range modules (``--long-range``, default all three): ``an``, ``sa`` and ``none``, the same networks otherwise.
Devices (``--device``): ``cpu`` and, when available, ``cuda`` (fp32, plus bf16 autocast with ``--bf16``). The
flags shared with ``benchmarks.layers`` and ``benchmarks.inpaint_throughput`` are those of ``benchmarks._args``::

    python -m benchmarks.gan_throughput --threads 2            # CPU (and CUDA if present), both configs
    python -m benchmarks.gan_throughput --device cuda --bf16 --paper-batch 256 --repeats 50
    python -m benchmarks.gan_throughput --json runs/benchmarks/gan_throughput.json

It prints a markdown table and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as `python -m an_gan` does

# isort: split
import pytorch_lightning as pl
import torch
import yaml

from an_gan.module import ANGAN
from an_gan.networks import Discriminator, Generator
from an_gan.settings import EMASettings, PictureSettings
from benchmarks._args import add_shared_arguments, apply_shared
from benchmarks._module_time import ModuleClock, instance_norm_seconds
from benchmarks._throughput import (
    MODULE_COLUMNS,
    OVERHEAD_COLUMNS,
    add_module_overheads,
    add_overheads,
    markdown_table,
    target_lines,
)
from common.layers import SelfAttention2d
from common.layers.factories import layer_factory
from configs import config_path

__all__ = [
    "CONFIGS",
    "LONG_RANGE",
    "LONG_RANGE_LAYERS",
    "build_parser",
    "format_table",
    "main",
    "measure",
    "merge_rounds",
    "slot_modules",
]


def _demo_config() -> dict[str, Any]:
    """Networks, resolution, batch, ``n_dis`` and ``d_batch`` of the shipped demo file (configs/an_gan/demo.yaml)."""
    config = yaml.safe_load(config_path("an_gan", "demo").read_text())
    model, data = config["model"], config["data"]["init_args"]
    return {
        "num_classes": 10,
        "resolution": data["resolution"],
        "batch_size": data["batch_size"],
        "n_dis": model.get("n_dis", 1),
        "d_batch": model.get("d_batch", "separate"),
        **{net: _network_args(model[net]["init_args"]) for net in ("generator", "discriminator")},
    }


def _network_args(init_args: dict[str, Any]) -> dict[str, Any]:
    """A config's ``init_args`` of G or D as keyword arguments: its ``long_range`` (``class_path`` and
    ``init_args``) as the layer class or partial that the network takes."""
    args = dict(init_args)
    if "long_range" in args:
        args["long_range"] = layer_factory(args["long_range"])
    return args


#: Architectures measured: ``Generator`` / ``Discriminator`` keyword arguments (besides classes and resolution).
CONFIGS: dict[str, dict[str, Any]] = {
    "paper": {
        "num_classes": 1000,
        "resolution": 128,
        "generator": {},  # the constructors' defaults are the paper's model (configs/an_gan/imagenet128.yaml)
        "discriminator": {},
        "n_dis": 1,
        "d_batch": "separate",
    },
    "demo": _demo_config(),
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
    """Wall time of every iteration after ``warmup`` (an iteration ends with a G step)."""

    def __init__(self, warmup: int, n_dis: int, clock: ModuleClock | None = None) -> None:
        self.warmup, self.n_dis, self.clock = warmup, n_dis, clock
        self.marks: list[float] = []  # the end of iteration ``warmup``, ``warmup + 1``, ...
        self.module_marks: list[float] = []  # the clock's reading at each mark
        self.call_marks: list[int] = []  # the number of calls the clock had logged at each mark

    @property
    def seconds(self) -> list[float]:
        """The wall time of each timed iteration."""
        return [b - a for a, b in zip(self.marks[:-1], self.marks[1:], strict=True)]

    @property
    def module_seconds(self) -> list[float]:
        """The time inside the clock's modules in each timed iteration."""
        return [b - a for a, b in zip(self.module_marks[:-1], self.module_marks[1:], strict=True)]

    def _mark(self) -> None:
        self.marks.append(time.perf_counter())
        if self.clock is not None:
            self.module_marks.append(self.clock.read())
            self.call_marks.append(len(self.clock.calls))

    def _sync(self, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_start(self, trainer, pl_module) -> None:
        """With no warm-up, the clock starts with the training."""
        if self.warmup == 0:
            self._sync(pl_module)
            self._mark()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.num_d_steps % self.n_dis != 0:
            return
        if pl_module.num_g_steps >= max(self.warmup, 1):
            self._sync(pl_module)
            self._mark()


#: ``--long-range`` choices: the same networks with AN (as the configuration sets it), SA-GAN's self-attention (after
#: G block 2 and D block 1, as SA-GAN's ImageNet model; the demo keeps its own blocks) or neither (SN-GAN*).
LONG_RANGE = ("an", "sa", "none")
#: The layer each ``--long-range`` choice other than ``an`` passes to G and D as ``long_range``.
LONG_RANGE_LAYERS: dict[str, type[torch.nn.Module] | None] = {"sa": SelfAttention2d, "none": None}


def slot_modules(model: ANGAN, long_range: str, g_args: dict[str, Any]) -> list[torch.nn.Module]:
    """The layers the module columns time: the long-range modules of G and D; for ``none``, G's conditional BN that
    AN takes the place of (``an_placement="replace_cbn"``, the default), none with ``"before_cbn"``."""
    g, d = model.generator, model.discriminator
    if long_range == "none":
        replaced = g_args.get("an_placement", "replace_cbn") == "replace_cbn"
        return [g.blocks[g.long_range_block].bn2] if replaced else []
    return [g.long_range_layer, d.long_range_layer]


def _networks(config: str, long_range: str) -> tuple[dict[str, Any], dict[str, Any]]:
    arch = CONFIGS[config]
    g, d = dict(arch["generator"]), dict(arch["discriminator"])
    if long_range != "an":
        g["long_range"] = d["long_range"] = LONG_RANGE_LAYERS[long_range]
        if long_range == "sa" and config == "paper":
            d["long_range_block"] = 1  # SA-GAN's d_block2 (32x32 maps); G keeps block 2 (g_block3)
    return g, d


def measure(
    config: str,
    device: str,
    batch_size: int,
    repeats: int,
    warmup: int = 2,
    bf16: bool = False,
    n_dis: int = 1,
    long_range: str = "an",
) -> dict[str, Any]:
    """Time ``repeats`` training iterations of ``config`` with ``long_range`` on ``device`` (after ``warmup``
    untimed ones); returns one result row (the median iteration)."""
    torch.manual_seed(0)
    arch = CONFIGS[config]
    k, r = arch["num_classes"], arch["resolution"]
    g_args, d_args = _networks(config, long_range)
    model = ANGAN(
        generator=Generator(k, r, **g_args),
        discriminator=Discriminator(k, r, **d_args),
        n_dis=n_dis,
        d_batch=arch["d_batch"],
        ema=EMASettings(start_step=0),
        pictures=PictureSettings(every_n_steps=0),
    )
    gen = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.rand(batch_size, 3, r, r, generator=gen) * 2 - 1,
        "label": torch.randint(0, k, (batch_size,), generator=gen),
    }
    batches = _RepeatBatch(batch, (repeats + warmup) * n_dis)
    clock = ModuleClock(slot_modules(model, long_range, g_args), device)
    timer = _Timer(warmup, n_dis, clock)
    scratch = tempfile.mkdtemp(prefix="an_gan_bench_")
    trainer = pl.Trainer(
        accelerator=device,
        devices=1,
        precision="bf16-mixed" if bf16 else "32-true",
        max_steps=(repeats + warmup) * (n_dis + 1),
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
        clock.close()
        shutil.rmtree(scratch, ignore_errors=True)
    last = clock.calls[timer.call_marks[-2] : timer.call_marks[-1]]  # the last timed iteration's calls
    seconds = statistics.median(timer.seconds)
    row = {
        "config": config,
        "long_range": long_range,
        "device": device,
        "precision": "bf16-mixed" if bf16 else "fp32",
        "batch_size": batch_size,
        "n_dis": n_dis,
        "iterations": len(timer.seconds),
        "seconds_per_iteration": seconds,
        "repeats_seconds": timer.seconds,
        "module_seconds": statistics.median(timer.module_seconds),
        "module_repeats_seconds": timer.module_seconds,
        "norm_in_place_seconds": instance_norm_seconds(last, device),
        "slot_calls": [f"{phase} {list(shape)}" for phase, shape in last],  # the last timed iteration's
        "images_per_second": batch_size * n_dis / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "threads": torch.get_num_threads(),
    }
    return row


def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rows of the same setting measured in several rounds: the median over all their timed
    iterations (``rounds`` says how many fits it pooled)."""
    row = dict(runs[0])
    seconds = [s for run in runs for s in run["repeats_seconds"]]
    module = [s for run in runs for s in run["module_repeats_seconds"]]
    row.update(
        module_repeats_seconds=module,
        module_seconds=statistics.median(module),
        norm_in_place_seconds=_median([run["norm_in_place_seconds"] for run in runs]),
        rounds=len(runs),
        iterations=len(seconds),
        repeats_seconds=seconds,
        seconds_per_iteration=statistics.median(seconds),
        images_per_second=row["batch_size"] * row["n_dis"] / statistics.median(seconds),
    )
    memory = [run["peak_memory_gib"] for run in runs if run["peak_memory_gib"] is not None]
    row["peak_memory_gib"] = max(memory) if memory else None
    return row


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


#: Rows measured side by side share these keys with their ``none`` row.
SAME_SETTING = ("config", "device", "precision", "batch_size", "n_dis")


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`measure` as a markdown table (the leading columns of ``benchmarks.inpaint_throughput``'s)."""
    return markdown_table(
        rows,
        [
            ("config", lambda r: r["config"]),
            ("long-range", lambda r: r["long_range"]),
            ("device", lambda r: r["device"]),
            ("precision", lambda r: r["precision"]),
            ("batch", lambda r: str(r["batch_size"])),
            (f"ms / iter ({_iteration(rows)})", lambda r: f"{r['seconds_per_iteration'] * 1000:.1f}"),
            ("images/s", lambda r: f"{r['images_per_second']:.1f}"),
            *OVERHEAD_COLUMNS,
            *MODULE_COLUMNS,
            ("peak GiB", lambda r: "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.2f}"),
        ],
    )


def _iteration(rows: list[dict[str, Any]]) -> str:
    n_dis = sorted({r["n_dis"] for r in rows})
    return f"G + {'/'.join(map(str, n_dis))} D"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.gan_throughput`` argument parser (shared flags: ``benchmarks._args``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gan_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    add_shared_arguments(
        parser, json_default="runs/benchmarks/gan_throughput.json", repeats=5, warmup=2, long_range=LONG_RANGE
    )
    paper_help = "batch of the paper config (default: 4 on CPU, 256 on CUDA)"
    parser.add_argument("--paper-batch", type=int, default=None, help=paper_help)
    demo_help = f"batch of the demo config (default: the demo file's, {CONFIGS['demo']['batch_size']})"
    parser.add_argument("--demo-batch", type=int, default=None, help=demo_help)
    n_dis_help = "D steps per G step (default: each config's: paper 1, demo the demo file's)"
    parser.add_argument("--n-dis", type=int, default=None, help=n_dis_help)
    parser.add_argument("--bf16", action="store_true", help="also measure bf16 autocast (CUDA only)")
    rounds_help = (
        "fits per row, alternating the long-range modules (an, sa, none, an, ...); each row is the median over all "
        "its rounds' timed iterations (default: %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=1, help=rounds_help)
    return parser


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command line entry point; returns the result rows."""
    parser = build_parser()
    args = parser.parse_args(argv)
    devices = apply_shared(parser, args)
    for name in ("paper_batch", "demo_batch", "n_dis", "rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    rows = []
    for device in devices:
        for config in args.configs:
            if config == "paper":
                batch = args.paper_batch or (256 if device == "cuda" else 4)
            else:
                batch = args.demo_batch or CONFIGS[config]["batch_size"]
            n_dis = args.n_dis or CONFIGS[config]["n_dis"]
            precisions = [False, True] if (args.bf16 and device == "cuda") else [False]
            for bf16 in precisions:
                runs: dict[str, list[dict[str, Any]]] = {long_range: [] for long_range in args.long_range}
                for _ in range(args.rounds):  # an, sa, none, an, sa, none, ...: drift affects every column alike
                    for long_range in args.long_range:
                        runs[long_range].append(
                            measure(config, device, batch, args.repeats, args.warmup, bf16, n_dis, long_range)
                        )
                for long_range in args.long_range:
                    rows.append(merge_rounds(runs[long_range]))
                    print(format_table([rows[-1]]).splitlines()[-1], flush=True)
    add_overheads(rows, "seconds_per_iteration", SAME_SETTING)
    add_module_overheads(rows, "seconds_per_iteration", "module_seconds", SAME_SETTING)
    print()
    rounds = f" in each of {args.rounds} alternating rounds" if args.rounds > 1 else ""
    print(f"threads: {torch.get_num_threads()}; the median of {args.repeats} timed iterations{rounds} per row")
    print(format_table(rows))
    targets = target_lines(rows, SAME_SETTING)
    if targets:
        print("\n".join(["", "Targets (module columns, measured side by side in this run):", *targets]))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "platform": platform.platform(), "processor": platform.processor()}
    if torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name()
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
