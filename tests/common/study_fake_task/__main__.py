"""``python -m study_fake_task fit ...``: append the arguments to ``<default_root_dir>/calls.jsonl`` and write
``checkpoints/last.ckpt`` holding ``global_step``: ``--trainer.max_steps`` normally; 1 with exit status 1 for the unit
folder named in ``STUDY_FAKE_CRASH`` (``<arm>/seed<s>``, a crash after a checkpoint); ``max_steps - 1`` with exit status
0 for the unit in ``STUDY_FAKE_SHORT`` (a run that stops early without an error)."""

import json
import os
import sys
from pathlib import Path

import torch

argv = sys.argv[1:]
options = dict(arg.split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
root = Path(options["--trainer.default_root_dir"])
max_steps = int(options["--trainer.max_steps"])
unit = f"{root.parent.name}/{root.name}"
root.mkdir(parents=True, exist_ok=True)
with (root / "calls.jsonl").open("a") as calls:
    calls.write(json.dumps(argv) + "\n")
(root / "checkpoints").mkdir(exist_ok=True)
step, status = max_steps, 0
if os.environ.get("STUDY_FAKE_CRASH") == unit:
    step, status = 1, 1
elif os.environ.get("STUDY_FAKE_SHORT") == unit:
    step = max_steps - 1
torch.save({"global_step": step}, root / "checkpoints" / "last.ckpt")
print(f"fake fit of {unit}: step {step}", flush=True)
sys.exit(status)
