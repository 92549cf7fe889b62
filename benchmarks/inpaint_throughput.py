"""Training throughput of the inpainting GAN (AN paper, Wang et al., CVPR 2020, Sections 4 and 5.1).

Times one phase-2 *cycle* of ``n_critic`` batches, exactly as :class:`an_inpaint.module.ANInpaint` trains: every
batch runs the generator once (without gradients, except on the last batch of the cycle) and updates the critics
(WGAN-GP loss of the global and local critics, backward, Adam step); the last batch then also updates the generator
from the same output dict (reconstruction + orthogonality + adversarial loss, backward, Adam step). Also one phase-1
step (generator update with the reconstruction loss only). Reported per configuration and device:

* ``cycle_s``: seconds per generator update with its ``n_critic`` critic updates (median of ``--iters``);
* ``g_images_per_s``: images per second through the generator update (``batch / cycle_s``);
* ``data_images_per_s``: training images consumed per second in phase 2 (``n_critic * batch / cycle_s``: every
  critic update takes a fresh batch; the generator update reuses the last one);
* ``phase1_images_per_s``: images per second in phase 1 (reconstruction only).

Configurations: ``paper`` (256x256, cnum 32, critics cnum 64, AN attention; batch 16 on CUDA, ``--cpu_batch``
on CPU) and ``demo`` (the no-argument demo: 64x64, cnum 16, critics cnum 16, batch 8). CPU always; CUDA when
available. Prints a markdown table and writes JSON (``--json``).

    python -m benchmarks.inpaint_throughput [--iters 3] [--configs paper demo] [--attention an contextual]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from an_inpaint.critics import GlobalCritic, LocalCritic
from an_inpaint.generator import InpaintGenerator
from an_inpaint.module import ANInpaint
from common.data.masks import RandomRectangleMasks

CONFIGS: dict[str, dict[str, int]] = {
    "paper": {"resolution": 256, "cnum": 32, "critic_cnum": 64, "local_size": 128, "batch": 16},
    "demo": {"resolution": 64, "cnum": 16, "critic_cnum": 16, "local_size": 32, "batch": 8},
}
DEFAULT_JSON = "runs/benchmarks/inpaint_throughput.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(config: dict[str, int], attention: str, device: torch.device) -> ANInpaint:
    """The LightningModule of a configuration, on ``device`` (used without a Trainer)."""
    model = ANInpaint(
        generator=InpaintGenerator(cnum=config["cnum"], attention=attention),
        global_critic=GlobalCritic(input_size=config["resolution"], cnum=config["critic_cnum"]),
        local_critic=LocalCritic(input_size=config["local_size"], cnum=config["critic_cnum"]),
    )
    return model.to(device).train()


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


def measure(
    name: str, attention: str, device: torch.device, batch: int, iters: int, warmup: int, n_critic: int = 5
) -> dict[str, Any]:
    """Time the phase-2 cycle and the phase-1 step of one configuration."""
    config = {**CONFIGS[name], "batch": batch}
    model = build(config, attention, device)
    opts = model.configure_optimizers()
    batches = [_batch(batch, config["resolution"], device, seed) for seed in range(n_critic)]

    def cycle() -> None:
        for i, (image, mask) in enumerate(batches):
            _batch_update(model, opts, image, mask, adversarial=True, generator_update=i == n_critic - 1)

    def phase1() -> None:
        _batch_update(model, opts, *batches[0], adversarial=False, generator_update=True)

    times: dict[str, list[float]] = {"cycle": [], "phase1": []}
    for key, fn in (("cycle", cycle), ("phase1", phase1)):
        for i in range(warmup + iters):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if i >= warmup:
                times[key].append(time.perf_counter() - start)
    cycle_s = statistics.median(times["cycle"])
    phase1_s = statistics.median(times["phase1"])
    return {
        "config": name,
        "attention": attention,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "resolution": config["resolution"],
        "cnum": config["cnum"],
        "batch": batch,
        "n_critic": n_critic,
        "cycle_s": cycle_s,
        "g_images_per_s": batch / cycle_s,
        "data_images_per_s": n_critic * batch / cycle_s,
        "phase1_images_per_s": batch / phase1_s,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`measure` as a markdown table."""
    header = (
        "| config | attention | device | res | cnum | batch | s / (G + 5 D) | G img/s | data img/s | phase-1 img/s |"
    )
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['attention']} | {r['device_name']} | {r['resolution']} | {r['cnum']} | "
            f"{r['batch']} | {r['cycle_s']:.3f} | {r['g_images_per_s']:.2f} | {r['data_images_per_s']:.2f} | "
            f"{r['phase1_images_per_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Command line: time each config / attention / device, print the table and write the JSON; returns the rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inpaint_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["paper", "demo"])
    parser.add_argument("--attention", nargs="+", default=["an"], choices=["an", "contextual", "contextual+an"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--cpu_batch", type=int, default=2, help="batch of the paper config on CPU (16 on CUDA)")
    parser.add_argument("--batch", type=int, default=None, help="override every batch size")
    parser.add_argument("--iters", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--n_critic", type=int, default=5)
    parser.add_argument("--json", default=DEFAULT_JSON, help="output JSON file")
    args = parser.parse_args(argv)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        device = torch.device(dev)
        for name in args.configs:
            batch = args.batch or (
                args.cpu_batch if name == "paper" and device.type == "cpu" else CONFIGS[name]["batch"]
            )
            for attention in args.attention:
                print(f"measuring {name} / {attention} on {dev} (batch {batch}) ...", flush=True)
                rows.append(measure(name, attention, device, batch, args.iters, args.warmup, args.n_critic))
    print(format_table(rows))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"written {path}")
    return rows


if __name__ == "__main__":
    main()
