"""Command-line flags shared by the benchmarks: the same names, meanings and help texts everywhere.

``benchmarks.layers``, ``benchmarks.gan_throughput`` and ``benchmarks.inpaint_throughput`` take all of them;
``benchmarks.eval_speed`` and ``benchmarks.loader`` take the ones whose meaning is the same for them:

* ``--device {cpu,cuda,all}``: where to measure (``all``, the default: CPU, and CUDA if present);
* ``--threads N``: torch's CPU threads (default: torch's choice, the core count), applied by :func:`apply_shared`;
* ``--repeats N``: timed repetitions of every case, the median reported;
* ``--warmup N``: untimed repetitions of every case before the timed ones;
* ``--json PATH``: where the results are written;
* ``--long-range M [M ...]`` (the two throughput benchmarks; ``benchmarks.layers`` keeps ``--layers``): the
  long-range modules measured side by side in otherwise identical networks (``none``: no module), with every row's
  overhead over ``none``.

Benchmark-specific flags stay in each benchmark, spelt with hyphens (``--n-critic``, ``--cpu-batch``...).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

__all__ = ["DEVICE_CHOICES", "HELP", "add_shared_arguments", "apply_shared", "devices"]

DEVICE_CHOICES: tuple[str, ...] = ("cpu", "cuda", "all")

#: The help text of every shared flag (``%(default)s`` is filled in by argparse with each benchmark's default).
HELP: dict[str, str] = {
    "device": "where to measure; all: CPU, and CUDA if present (default: %(default)s)",
    "threads": "torch CPU threads (default: torch's choice, the core count)",
    "repeats": "timed repetitions of every case, the median reported (default: %(default)s)",
    "warmup": "untimed repetitions of every case before the timed ones (default: %(default)s)",
    "json": "output JSON file (default: %(default)s)",
    "long_range": "long-range modules measured side by side in otherwise identical networks; each row's overhead "
    "over 'none' (no module) is what the module costs (default: %(default)s)",
}


def add_shared_arguments(
    parser: argparse.ArgumentParser,
    *,
    json_default: str,
    repeats: int | None = None,
    warmup: int | None = None,
    device: bool = True,
    long_range: Sequence[str] | None = None,
    long_range_default: Sequence[str] | None = None,
) -> argparse.ArgumentParser:
    """Add the shared flags to ``parser`` (returned).

    Args:
        parser: The benchmark's parser.
        json_default: Default of ``--json``.
        repeats: Default of ``--repeats``; ``None``: the benchmark has no such flag.
        warmup: Default of ``--warmup``; ``None``: no such flag.
        device: Add ``--device`` (default ``all``).
        long_range: Choices of ``--long-range``; ``None``: no such flag.
        long_range_default: Its default (all the choices when ``None``).
    """
    if device:
        parser.add_argument("--device", choices=DEVICE_CHOICES, default="all", help=HELP["device"])
    parser.add_argument("--threads", type=int, default=None, metavar="N", help=HELP["threads"])
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats, metavar="N", help=HELP["repeats"])
    if warmup is not None:
        parser.add_argument("--warmup", type=int, default=warmup, metavar="N", help=HELP["warmup"])
    parser.add_argument("--json", default=json_default, metavar="PATH", help=HELP["json"])
    if long_range is not None:
        default = list(long_range if long_range_default is None else long_range_default)
        unknown = [m for m in default if m not in long_range]
        if unknown:
            raise ValueError(f"long_range_default {unknown} not among the choices {list(long_range)}")
        parser.add_argument(
            "--long-range", nargs="+", choices=list(long_range), default=default, metavar="M", help=HELP["long_range"]
        )
    return parser


def devices(choice: str) -> list[str]:
    """The devices of ``--device``: ``all`` is CPU, and CUDA when available; ``cuda`` without CUDA is an error."""
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"--device must be one of {DEVICE_CHOICES}, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch.cuda.is_available() is False")
    if choice == "all":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [choice]


def apply_shared(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """Check the shared flags (``parser.error`` on a bad value), apply ``--threads`` (``torch.set_num_threads``) and
    return the devices to measure (``["cpu"]`` when the benchmark has no ``--device``)."""
    if getattr(args, "threads", None) is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if getattr(args, "repeats", 1) < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if getattr(args, "warmup", 0) < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    try:
        chosen = devices(getattr(args, "device", "cpu"))
    except ValueError as err:
        parser.error(str(err))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return chosen
