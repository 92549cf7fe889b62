"""Run a task's CLI commands in order under whatever launcher started this process (tests of DDP on CPU).

Usage: ``python ddp_cli_script.py TASK OUTPUT.json COMMANDS.json`` with COMMANDS a JSON list of argument lists
(``[["fit", ...], ["validate", ...]]``). Under ``--trainer.strategy ddp --trainer.devices 2`` Lightning starts the
second rank by running this script again; every rank runs every command. Rank 0 writes
``{"world_size": [...], "metrics": [{name: value} per command]}`` to OUTPUT.
"""

import importlib
import json
import sys
from pathlib import Path

import torch


def main(task: str, output: str, commands: list[list[str]]) -> None:
    cli_main = importlib.import_module(f"{task}.cli").cli_main
    results, worlds = [], []
    trainer = None
    for args in commands:
        trainer = cli_main(args).trainer
        worlds.append(trainer.world_size)
        results.append({k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1})
    if trainer is None or trainer.is_global_zero:
        with open(output, "w") as f:
            json.dump({"world_size": worlds, "metrics": results}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(Path(sys.argv[3]).read_text()))
