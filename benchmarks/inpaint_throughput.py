"""Training throughput of the inpainting GAN (AN paper, Wang et al., CVPR 2020, Sections 4 and 5.1).

Times one phase-2 *iteration* of ``n_critic`` batches, exactly as :class:`an_inpaint.module.ANInpaint` trains: every
batch runs the generator once (without gradients, except on the last batch of the iteration) and updates the
critics (WGAN-GP loss of the global and local critics, backward, Adam step); the last batch then also updates the
generator from the same output dict (reconstruction + orthogonality + adversarial loss, backward, Adam step). Also
one phase-1 step (generator update with the reconstruction loss only).

Long-range modules (``--long-range``, each a choice of the generator's ``long_range`` and ``contextual_attention``
layers, :data:`BRANCHES`; the same networks otherwise): ``an`` (the paper's model, the configuration's AN layer),
``sa`` (SA-GAN self-attention in place of CA), ``none`` (a plain 3x3 convolution in place of CA, the same depth) and
``contextual`` (CA, DeepFill v1: the paper's Table 3 baseline) by default; ``contextual+an`` on request. ``sa`` and
``none`` are ablations, not in the paper. All variants of a configuration and device are built first and their
repetitions interleaved (an, sa, none, contextual, an, sa, ...), so that load from other processes affects every
column alike. Reported per configuration, module and device (medians of ``--repeats``):

* ``ms / iter``: milliseconds per generator update with its ``n_critic`` critic updates;
* ``images/s``: training images consumed per second in phase 2 (``n_critic * batch / iteration``: every critic
  update takes a fresh batch; the generator update reuses the last one), as in ``benchmarks.gan_throughput``;
* ``G img/s``: images per second through the generator update (``batch / iteration``);
* ``vs none ms`` / ``vs none %``: the extra time per iteration over ``none`` in the same run (what the module costs);
* ``module ms`` / ``module vs none ms`` / ``module vs none %``: the long-range modules timed in place in the same
  iterations (``benchmarks._module_time``: every call, forward and backward; AN, SA or CA, both for
  ``contextual+an``; for ``none``, the stand-in convolution), and the difference to ``none``'s: what the module
  costs an iteration, resolved where the iteration times' difference is noise;
* ``phase-1 ms`` / ``phase-1 img/s`` / ``phase-1 vs none %``: the same for the phase-1 step.

Configurations: ``paper`` (256x256, DeepFill v1's generator at cnum 32, global and local critics at cnum 64;
batch 16 on CUDA, ``--cpu-batch`` on CPU) and ``demo`` (the networks, resolution and batch of the bundled demo, read
from ``configs/an_inpaint/demo.yaml``: 64x64, cnum 8, the paper's blank hole, DeepFill's global and fixed-box local
critics at cnum 8, batch 16; the other model settings are ``ANInpaint``'s defaults). The flags shared with
``benchmarks.layers`` and ``benchmarks.gan_throughput`` are those of ``benchmarks._args``. Prints a markdown table
and writes JSON (``--json``)::

    python -m benchmarks.inpaint_throughput --threads 2 --configs demo
    python -m benchmarks.inpaint_throughput --device cuda --long-range an sa none contextual contextual+an
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as `python -m an_gan` does

# isort: split
import torch
import yaml

from an_inpaint.generator import InpaintGenerator
from an_inpaint.module import ANInpaint
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
from common.data.masks import RandomRectangleMasks
from common.layers import AttentiveNorm2d, ContextualAttention2d, SelfAttention2d
from common.layers.factories import layer_factory
from configs import config_path

__all__ = [
    "ATTENTION_BRANCH",
    "BRANCHES",
    "CONFIGS",
    "DEFAULT_LONG_RANGE",
    "build",
    "build_parser",
    "format_table",
    "main",
    "measure",
    "slot_modules",
]


def _demo() -> dict[str, Any]:
    """The networks, resolution and batch of the shipped demo file (configs/an_inpaint/demo.yaml)."""
    config = yaml.safe_load(config_path("an_inpaint", "demo").read_text())
    model, data = config["model"], config["data"]["init_args"]
    generator = dict(model["generator"]["init_args"])
    # The file's AN layer for the an columns; which layers the branch holds is --long-range's choice.
    generator["long_range"] = layer_factory(generator.get("long_range", "common.layers.AttentiveNorm2d"))
    generator.pop("contextual_attention", None)
    critics = {name: model[name] for name in ("global_critic", "local_critic")}
    return {"resolution": data["resolution"], "batch": data["batch_size"], "generator": generator, **critics}


def _critic(name: str, **init_args: Any) -> dict[str, Any]:
    return {"class_path": f"an_inpaint.networks.{name}", "init_args": init_args}


#: Architectures measured: the generator's keyword arguments (``long_range``: the AN layer of the ``an`` columns;
#: the branch comes from ``--long-range``), the critics as class paths.
#: paper: DeepFill v1 at 256x256 (``configs/an_inpaint/paris256.yaml``); demo: the shipped demo's networks.
CONFIGS: dict[str, dict[str, Any]] = {
    "paper": {
        "resolution": 256,
        "batch": 16,
        "generator": {"cnum": 32, "long_range": AttentiveNorm2d},
        "global_critic": _critic("GlobalCritic", input_size=256, cnum=64),
        "local_critic": _critic("LocalCritic", input_size=128, cnum=64),
    },
    "demo": _demo(),
}
#: Default ``--long-range``: AN, SA and none side by side, plus CA (the paper's baseline).
DEFAULT_LONG_RANGE: tuple[str, ...] = ("an", "sa", "none", "contextual")
DEFAULT_JSON = "runs/benchmarks/inpaint_throughput.json"
#: Rows measured side by side share these keys with their ``none`` row.
SAME_SETTING = ("config", "device", "batch", "n_critic")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: State-dict prefixes of the generator's attention branch: what the variants of one configuration differ in.
ATTENTION_BRANCH = ("generator.attention_", "generator.contextual")
#: ``--long-range`` choices: which of the configuration's AN layer (``"an"``), SA-GAN's self-attention and DeepFill's
#: contextual attention the generator's attention branch holds (:mod:`an_inpaint.generator`).
BRANCHES: dict[str, tuple[str | None, bool]] = {
    "an": ("an", False),
    "contextual": (None, True),
    "contextual+an": ("an", True),
    "sa": ("sa", False),
    "none": (None, False),
}


def _branch(config: dict[str, Any], attention: str) -> dict[str, Any]:
    """The generator's ``long_range`` and ``contextual_attention`` for the ``--long-range`` choice ``attention``."""
    long_range, contextual = BRANCHES[attention]
    layers = {"an": config["generator"]["long_range"], "sa": SelfAttention2d, None: None}
    return {"long_range": layers[long_range], "contextual_attention": ContextualAttention2d if contextual else None}


def build(
    config: dict[str, Any], attention: str, device: torch.device | str, like: ANInpaint | None = None
) -> ANInpaint:
    """The LightningModule of a configuration (an entry of :data:`CONFIGS`) with the generator's ``attention``, on
    ``device`` (used without a Trainer). With ``like``, every weight outside the attention branch is copied from it,
    so that the variants are the same networks, from the same weights, except for that branch."""
    torch.manual_seed(0)

    def critic(spec: dict[str, Any]) -> torch.nn.Module:
        module, _, name = spec["class_path"].rpartition(".")
        return getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))

    model = ANInpaint(
        generator=InpaintGenerator(**{**config["generator"], **_branch(config, attention)}),
        global_critic=critic(config["global_critic"]),
        local_critic=critic(config["local_critic"]),
    )
    if like is not None:
        shared = {k: v for k, v in like.state_dict().items() if not k.startswith(ATTENTION_BRANCH)}
        missing, unexpected = model.load_state_dict(shared, strict=False)
        if unexpected or any(not k.startswith(ATTENTION_BRANCH) for k in missing):
            raise RuntimeError(f"the variants differ outside the attention branch: {unexpected or missing}")
    return model.to(device).train()


def slot_modules(model: ANInpaint, attention: str) -> list[torch.nn.Module]:
    """The layers the module columns time: the generator's AN, SA and CA modules; for ``none``, the convolution that
    stands in for the module (the first layer of ``attention_post``)."""
    g = model.generator
    if attention == "none":
        return [g.attention_post[0]]
    return [m for m in g.modules() if isinstance(m, (AttentiveNorm2d, SelfAttention2d, ContextualAttention2d))]


def _batch(batch: int, size: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
    masks = RandomRectangleMasks()
    mask = torch.stack([masks(size, size, gen) for _ in range(batch)])
    return image.to(device), mask.to(device)


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _batch_update(
    model: ANInpaint,
    opts: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    image: torch.Tensor,
    mask: torch.Tensor,
    adversarial: bool,
    generator_update: bool,
) -> None:
    """One training batch: one generator pass, the critic update (phase 2), the generator update (if due)."""
    g_opt, d_opt = opts
    batch = {"image": image, "mask": mask}
    with torch.set_grad_enabled(generator_update):
        out = model.generator(image, mask)
    if adversarial:
        _step(d_opt, model.adversarial.critic_loss(model.critics, image, out["inpainted"], mask)[0])
    if generator_update:
        _step(g_opt, model._generator_loss(out, batch, adversarial)[0])


def _runners(model: ANInpaint, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Callable[[], None]]:
    """No-argument callables of the phase-2 iteration and the phase-1 step of ``model``."""
    opts = model.configure_optimizers()

    def iteration() -> None:
        for i, (image, mask) in enumerate(batches):
            _batch_update(model, opts, image, mask, adversarial=True, generator_update=i == len(batches) - 1)

    def phase1() -> None:
        _batch_update(model, opts, *batches[0], adversarial=False, generator_update=True)

    return {"iteration": iteration, "phase1": phase1}


def measure(
    name: str,
    long_ranges: Sequence[str],
    device: torch.device,
    batch: int,
    repeats: int,
    warmup: int,
    n_critic: int = 5,
) -> list[dict[str, Any]]:
    """Time the phase-2 iteration and the phase-1 step of config ``name`` with each of ``long_ranges``, the
    repetitions of all variants interleaved; returns one row per variant (medians of ``repeats``)."""
    config = {**CONFIGS[name], "batch": batch}
    batches = [_batch(batch, config["resolution"], device, seed) for seed in range(n_critic)]
    models: dict[str, ANInpaint] = {}
    for lr in long_ranges:
        models[lr] = build(config, lr, device, like=next(iter(models.values()), None))
    runners = {lr: _runners(model, batches) for lr, model in models.items()}
    clocks = {lr: ModuleClock(slot_modules(model, lr), device) for lr, model in models.items()}
    times: dict[tuple[str, str], list[float]] = {(lr, k): [] for lr in long_ranges for k in ("iteration", "phase1")}
    module: dict[tuple[str, str], list[float]] = {key: [] for key in times}
    calls: dict[tuple[str, str], list] = {}  # the clock's log of each variant's last iteration / phase-1 step
    try:
        for i in range(warmup + repeats):
            for (lr, kind), seconds in times.items():
                _sync(device)
                before, start, logged = clocks[lr].read(), time.perf_counter(), len(clocks[lr].calls)
                runners[lr][kind]()
                _sync(device)
                if i >= warmup:
                    seconds.append(time.perf_counter() - start)
                    module[lr, kind].append(clocks[lr].read() - before)
                    calls[lr, kind] = clocks[lr].calls[logged:]
    finally:
        for clock in clocks.values():
            clock.close()
    rows = []
    for lr in long_ranges:
        iteration_s = statistics.median(times[lr, "iteration"])
        phase1_s = statistics.median(times[lr, "phase1"])
        rows.append(
            {
                "config": name,
                "long_range": lr,
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "threads": torch.get_num_threads(),
                "resolution": config["resolution"],
                "cnum": config["generator"].get("cnum", 32),
                "batch": batch,
                "n_critic": n_critic,
                "seconds_per_iteration": iteration_s,
                "repeats_seconds": times[lr, "iteration"],
                "module_seconds": statistics.median(module[lr, "iteration"]),
                "module_repeats_seconds": module[lr, "iteration"],
                "norm_in_place_seconds": instance_norm_seconds(calls[lr, "iteration"], device),
                "slot_calls": [f"{phase} {list(shape)}" for phase, shape in calls[lr, "iteration"]],
                "phase1_module_seconds": statistics.median(module[lr, "phase1"]),
                "images_per_second": n_critic * batch / iteration_s,
                "g_images_per_second": batch / iteration_s,
                "phase1_seconds": phase1_s,
                "phase1_repeats_seconds": times[lr, "phase1"],
                "phase1_images_per_second": batch / phase1_s,
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`measure` as a markdown table (the leading columns of ``benchmarks.gan_throughput``'s)."""
    n_critic = "/".join(map(str, sorted({r["n_critic"] for r in rows})))
    return markdown_table(
        rows,
        [
            ("config", lambda r: r["config"]),
            ("long-range", lambda r: r["long_range"]),
            ("device", lambda r: r["device_name"]),
            ("res", lambda r: str(r["resolution"])),
            ("batch", lambda r: str(r["batch"])),
            (f"ms / iter (G + {n_critic} D)", lambda r: f"{r['seconds_per_iteration'] * 1000:.1f}"),
            ("images/s", lambda r: f"{r['images_per_second']:.2f}"),
            ("G img/s", lambda r: f"{r['g_images_per_second']:.2f}"),
            *OVERHEAD_COLUMNS,
            *MODULE_COLUMNS,
            ("phase-1 ms", lambda r: f"{r['phase1_seconds'] * 1000:.1f}"),
            ("phase-1 img/s", lambda r: f"{r['phase1_images_per_second']:.2f}"),
            ("phase-1 vs none %", lambda r: "-" if r.get("phase1_vs_none") is None else f"{r['phase1_vs_none']:+.1%}"),
        ],
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.inpaint_throughput`` argument parser (shared flags: ``benchmarks._args``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inpaint_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["paper", "demo"])
    add_shared_arguments(
        parser,
        json_default=DEFAULT_JSON,
        repeats=3,
        warmup=1,
        long_range=tuple(BRANCHES),
        long_range_default=DEFAULT_LONG_RANGE,
    )
    parser.add_argument("--cpu-batch", type=int, default=2, help="batch of the paper config on CPU (16 on CUDA)")
    parser.add_argument("--batch", type=int, default=None, help="override every batch size")
    parser.add_argument("--n-critic", type=int, default=5, help="critic updates per G update (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Command line: time each config / module / device, print the table and write the JSON; returns the rows."""
    parser = build_parser()
    args = parser.parse_args(argv)
    devices = apply_shared(parser, args)
    for name in ("cpu_batch", "batch", "n_critic"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    rows = []
    for dev in devices:
        device = torch.device(dev)
        for name in args.configs:
            batch = args.batch or (
                args.cpu_batch if name == "paper" and device.type == "cpu" else CONFIGS[name]["batch"]
            )
            print(f"measuring {name} ({', '.join(args.long_range)}) on {dev}, batch {batch} ...", flush=True)
            rows += measure(name, args.long_range, device, batch, args.repeats, args.warmup, args.n_critic)
    add_overheads(rows, "seconds_per_iteration", SAME_SETTING)
    add_overheads(rows, "phase1_seconds", SAME_SETTING, prefix="phase1_vs_none")
    add_module_overheads(rows, "seconds_per_iteration", "module_seconds", SAME_SETTING)
    print(f"threads: {torch.get_num_threads()}; the median of {args.repeats} timed repetitions per row")
    print(format_table(rows))
    targets = target_lines(rows, SAME_SETTING)
    if targets:
        print("\n".join(["", "Targets (module columns, measured side by side in this run):", *targets]))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "platform": platform.platform(), "processor": platform.processor()}
    if torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name()
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"written {path}")
    return rows


if __name__ == "__main__":
    main()
