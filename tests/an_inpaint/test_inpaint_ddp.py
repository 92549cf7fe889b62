"""Under DDP every evaluation image counts exactly once: 2 CPU processes (gloo), 5 images, the 1-process numbers."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from inpaint_helpers import tiny_model
from PIL import Image
from skimage import data as skdata

SCRIPT = Path(__file__).resolve().parent / "ddp_eval_script.py"
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(folder, state, output, devices):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    subprocess.run(
        [sys.executable, str(SCRIPT), str(folder), str(state), str(output), str(devices)],
        check=True, env=env, cwd=output.parent, timeout=240, capture_output=True,
    )  # fmt: skip
    return json.loads(output.read_text())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_count_every_image_once(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    photo = skdata.astronaut()
    for i in range(5):  # an odd number: a padding sampler would score one image twice
        Image.fromarray(photo[60 * i : 60 * i + 96, 100 : 100 + 96]).save(folder / f"{i}.png")
    torch.manual_seed(0)
    state = tmp_path / "state.pt"
    torch.save(tiny_model().state_dict(), state)
    from ddp_eval_script import main

    main(str(folder), str(state), str(tmp_path / "one.json"), 1)  # one process: here
    one = json.loads((tmp_path / "one.json").read_text())
    two = _run(folder, state, tmp_path / "two.json", 2)
    assert one["val/num_images"] == two["val/num_images"] == 5
    for key in ("val/psnr", "val/ssim", "val/mae", "val/psnr_hole", "val/ssim_hole", "val/mae_hole", "val/rec_loss"):
        assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
    assert np.isfinite(one["val/psnr"])
