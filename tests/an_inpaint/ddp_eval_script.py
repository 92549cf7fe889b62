"""Run ``validate`` of a tiny saved model on an image folder with N CPU processes (gloo) and write the metrics.

    python ddp_eval_script.py IMAGE_FOLDER STATE_DICT OUTPUT_JSON DEVICES

Used by ``test_inpaint_ddp.py``; Lightning's DDP launcher starts the other processes by re-running this file.
"""

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inpaint_helpers import tiny_model  # noqa: E402

from common.data.inpainting import ImageFolderInpaintingDataModule  # noqa: E402


def main(folder: str, state: str, output: str, devices: int) -> None:
    torch.set_num_threads(1)
    model = tiny_model()
    model.load_state_dict(torch.load(state, weights_only=True))
    data = ImageFolderInpaintingDataModule(
        train_root=folder, val_root=folder, resolution=32, batch_size=2, num_workers=0
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(Path(output).parent / f"run{devices}"),
    )
    metrics = trainer.validate(model, datamodule=data, verbose=False)[0]
    if trainer.is_global_zero:
        Path(output).write_text(json.dumps({k: float(v) for k, v in metrics.items()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
