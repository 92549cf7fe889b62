"""Speed of the FID + IS evaluation: time per 1,000 samples, sequential vs overlapped, and the 50k estimate.

What is timed is :meth:`an_gan.evaluation.GenerationEvaluator.run` with FID and IS only (``intra_fid_classes=None``,
``kid_prc_num_samples=0``): class-balanced generation with the paper's 128 px generator (``an_gan.networks.Generator``
defaults: 1,000 classes, ch 64, AN in block 2; random weights, which do not change the time), uint8 quantisation,
the TF-ported Inception-v3 feature extractor the package uses for FID (``InceptionFeatureExtractor``, float32),
the running FID statistics and IS logits, and the final FID and IS computation. The reference statistics are made
before the clock starts (random features here): the evaluator caches them across evaluations.

Inception weights: torch-fidelity's file when present (``--inception-weights`` or its torch hub cache). Otherwise the
same class loads a weights file of the same architecture with random weights (batch-norm statistics calibrated on
random images so that activations stay O(1): no denormal slow-down), which costs the same time; the output says
which. ``--extractor random-projection`` swaps in the tiny CPU stand-in (tests only: not an FID network).

Each device times ``sequential`` (``overlap=False``) and ``overlapped`` (``overlap=True``) side by side, each after an
untimed warm-up run (``--repeats``: alternating, the run of each mode with the lowest ``s/1k`` shown), and checks
that both give the same scores. Reported per row: wall seconds, the final statistics' seconds, wall seconds per
1,000 samples without them (``s/1k``), the 50k estimate ``50 * s/1k + final`` (measured, not estimated, when
``--samples 50000``), user+sys CPU seconds of the process per 1,000 samples (without the final statistics), and
the speed-up of overlapping (sequential over overlapped ``s/1k``: the final statistics are the same work in both).
Defaults: CPU 32 samples at batch 16 (minutes), CUDA the full 50,000 at batch 100 (the shipped protocol's batch)::

    python -m benchmarks.eval_speed --threads 2                   # CPU, and CUDA (50k) when present
    python -m benchmarks.eval_speed --device cuda --samples 50000 --batch-size 250
    python -m benchmarks.eval_speed --json runs/benchmarks/eval_speed.json

It prints a table and writes the rows as JSON. Like the packages, it imports ``common`` before torch, so OpenMP waits
passively unless ``OMP_WAIT_POLICY`` is set (spinning threads inflated both modes' CPU seconds by 15-35% on a loaded
2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as `python -m an_gan` does

# isort: split
import torch
from torch import nn

from an_gan.evaluation import GenerationEvaluator
from an_gan.networks import Generator
from benchmarks._args import add_shared_arguments, apply_shared
from common.metrics.generation import InceptionFeatureExtractor, RandomProjectionExtractor
from common.metrics.generation import default_inception_weights_path as _default_weights

__all__ = ["CONFIGS", "MODES", "build_extractor", "build_parser", "main", "measure", "random_inception"]

#: Generators timed: ``Generator`` keyword arguments. ``paper``: the constructor's defaults (the paper's 128 px model).
CONFIGS: dict[str, dict[str, Any]] = {"paper": {}}
#: The two paths of the evaluator, timed side by side: ``overlap`` False and True.
MODES = ("sequential", "overlapped")
_REFERENCE_SAMPLES = 256  # random reference features (their statistics are cached in real use, never timed)


def random_inception(directory: str | Path, calibration_images: int = 8, seed: int = 0) -> InceptionFeatureExtractor:
    """``InceptionFeatureExtractor`` loaded from a weights file of torch-fidelity's architecture with random weights.

    The torch-fidelity module is built without loading weights, its convolutions keep PyTorch's random init and its
    batch norms get the statistics of ``calibration_images`` random images (cumulative average), so that every layer
    sees O(1) inputs; the state dict is written to ``directory`` and loaded by the package's extractor class.
    Same operations as the real network, so the same time; the features mean nothing.
    """
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    torch.manual_seed(seed)
    with (
        mock.patch.object(tf_inception, "load_state_dict_from_url", return_value=None),
        mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", return_value=None),
    ):
        net = tf_inception.FeatureExtractorInceptionV3("random", ["2048", "logits_unbiased"])
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: the calibration batch's statistics
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (calibration_images, 3, 128, 128), dtype=torch.uint8, generator=gen)
    net.train()
    with torch.no_grad():
        net(images)
    path = Path(directory) / "inception-random.pth"
    torch.save(net.state_dict(), path)
    return InceptionFeatureExtractor(weights_path=str(path))


def build_extractor(kind: str, weights: str | None, directory: str | Path) -> tuple[nn.Module, str]:
    """The feature extractor and a label saying what it is (``kind``: ``inception`` or ``random-projection``)."""
    if kind == "random-projection":
        return RandomProjectionExtractor(), "random projection (CPU stand-in, not FID)"
    if weights is not None or _default_weights().is_file():
        return InceptionFeatureExtractor(weights), "Inception-v3 TF weights"
    return random_inception(directory), "Inception-v3, random init (weights absent)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


class _TimedEvaluator(GenerationEvaluator):
    """The evaluator, with the duration of its final statistics (FID, IS from the accumulated state) recorded."""

    finish_seconds = finish_cpu_seconds = 0.0

    def _finish(self, reference, intra_values, device):
        _sync(torch.device(device))
        cpu, start = _cpu_seconds(), time.perf_counter()
        out = super()._finish(reference, intra_values, device)
        self.finish_seconds, self.finish_cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu
        return out


class _Classes:
    """What ``run`` needs of the reference data once the statistics are in place: the classes and the size."""

    def __init__(self, num_classes: int, resolution: int) -> None:
        self.num_classes, self.resolution = num_classes, resolution
        self.class_names = [f"class{c}" for c in range(num_classes)]


def _evaluator(samples: int, batch_size: int, overlap: bool, extractor: nn.Module, device) -> _TimedEvaluator:
    evaluator = _TimedEvaluator(
        num_samples=samples,
        seed=0,
        batch_size=batch_size,
        intra_fid_classes=None,
        is_splits=min(10, samples),
        kid_prc_num_samples=0,
        feature_extractor=extractor,
        reference_cache_dir=None,
        overlap=overlap,
    )
    dim = evaluator._feature_dim()
    real = torch.randn(_REFERENCE_SAMPLES, dim, generator=torch.Generator().manual_seed(1)).to(device)
    evaluator.metrics(device).update(real, None, torch.arange(_REFERENCE_SAMPLES), real=True)
    return evaluator


def measure(
    generator: nn.Module,
    extractor: nn.Module,
    device: torch.device,
    samples: int,
    batch_size: int,
    overlap: bool,
    warmup: int = 1,
) -> dict[str, Any]:
    """Time one evaluation of ``samples`` images (after ``warmup`` untimed batches); returns one result row."""
    data = _Classes(generator.num_classes, generator.resolution)
    if warmup:
        _evaluator(max(2, warmup * batch_size), batch_size, overlap, extractor, device).run(generator, data, device)
    evaluator = _evaluator(samples, batch_size, overlap, extractor, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    cpu, start = _cpu_seconds(), time.perf_counter()
    scores = evaluator.run(generator, data, device)
    _sync(device)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    per_1k = (seconds - evaluator.finish_seconds) / samples * 1000
    return {
        "device": device.type,
        "mode": MODES[int(overlap)],
        "batch_size": batch_size,
        "samples": samples,
        "seconds": seconds,
        "final_seconds": evaluator.finish_seconds,
        "seconds_per_1k": per_1k,
        "seconds_50k": seconds if samples == 50000 else 50 * per_1k + evaluator.finish_seconds,
        "measured_50k": samples == 50000,
        "cpu_seconds": cpu,
        "final_cpu_seconds": evaluator.finish_cpu_seconds,
        "cpu_seconds_per_1k": (cpu - evaluator.finish_cpu_seconds) / samples * 1000,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "scores": scores,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'device':<6} {'mode':<10} {'batch':>5} {'samples':>7} {'wall s':>8} {'final s':>7} {'s/1k':>8} "
            f"{'50k':>10} {'CPU s/1k':>9} {'speed-up':>8} {'same':>5}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for row in rows:
        est = f"{row['seconds_50k'] / 60:.1f} min" + ("" if row["measured_50k"] else "*")
        up, same = row.get("speedup"), row.get("same_scores")
        lines.append(
            f"{row['device']:<6} {row['mode']:<10} {row['batch_size']:>5} {row['samples']:>7} {row['seconds']:>8.1f} "
            f"{row['final_seconds']:>7.2f} {row['seconds_per_1k']:>8.1f} {est:>10} {row['cpu_seconds_per_1k']:>9.1f} "
            f"{f'{up:.2f}x' if up else '-':>8} {'-' if same is None else 'yes' if same else 'NO':>5}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.eval_speed`` argument parser (shared flags: ``benchmarks._args``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--samples", type=int, default=None, help="timed samples per mode (default: 32 CPU, 50k CUDA)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 16 on CPU, 100 on CUDA")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches per mode before any timing")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per mode, alternating (fastest s/1k shown)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--extractor", default="inception", choices=["inception", "random-projection"])
    parser.add_argument("--inception-weights", default=None, help="local torch-fidelity Inception weights file")
    # Shared with the other benchmarks: --device, --threads, --json (its --warmup counts batches and --repeats shows
    # the fastest run, so those two stay its own).
    add_shared_arguments(parser, json_default="runs/benchmarks/eval_speed.json")
    return parser


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command line entry point; returns the result rows."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("samples", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < (2 if name == "samples" else 1):
            parser.error(f"--{name.replace('_', '-')} must be at least {2 if name == 'samples' else 1}")
    if args.warmup < 0 or args.repeats < 1:
        parser.error("need --warmup >= 0 and --repeats >= 1")
    devices = apply_shared(parser, args)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as scratch:
        extractor, label = build_extractor(args.extractor, args.inception_weights, scratch)
    print(f"feature extractor: {label}; threads: {torch.get_num_threads()}", flush=True)
    for device_name in devices:
        device = torch.device(device_name)
        samples = args.samples or (50000 if device.type == "cuda" else 32)
        batch = args.batch_size or (100 if device.type == "cuda" else 16)
        for config in args.configs:
            torch.manual_seed(0)
            generator = Generator(**CONFIGS[config]).to(device).eval()
            extractor.to(device)
            for mode in args.modes if args.warmup else ():  # every mode warmed up before anything is timed
                measure(generator, extractor, device, max(2, args.warmup * batch), batch, mode == "overlapped", 0)
            runs = []
            for repeat in range(args.repeats):
                for mode in args.modes:
                    row = measure(generator, extractor, device, samples, batch, mode == "overlapped", 0)
                    row.update(config=config, extractor=label, repeat=repeat)
                    runs.append(row)
                    print(_table([row]).splitlines()[-1], flush=True)
            pair = [min((r for r in runs if r["mode"] == m), key=lambda r: r["seconds_per_1k"]) for m in args.modes]
            base = next((r for r in pair if r["mode"] == "sequential"), None)
            for row in pair:
                row["repeats_seconds_per_1k"] = [r["seconds_per_1k"] for r in runs if r["mode"] == row["mode"]]
                row["repeats_cpu_seconds_per_1k"] = [r["cpu_seconds_per_1k"] for r in runs if r["mode"] == row["mode"]]
                if base is not None and row is not base:
                    row["speedup"] = base["seconds_per_1k"] / row["seconds_per_1k"]
                    row["same_scores"] = all(r["scores"] == base["scores"] for r in runs)
            rows += pair
    print()
    print(f"feature extractor: {label}; threads: {torch.get_num_threads()}; * = 50 x s/1k + final (extrapolated)")
    print(_table(rows))
    args.json = Path(args.json)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "platform": platform.platform(), "extractor": label}
    if torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name()
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
