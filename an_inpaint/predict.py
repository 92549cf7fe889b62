"""Writing ``predict`` results and reloading a trained inpainter.

``python -m an_inpaint predict`` inpaints either a folder of images with a folder of same-named masks
(``--data.init_args.predict_split folder``, the default) or a DataModule's evaluation split at the protocol's
resolution, resize and holes (``predict_split val`` / ``test``, e.g. Paris StreetView's 100 test images resized to
256 with the centre 128x128 hole). :class:`InpaintingPredictionWriter` writes the composited results, and with
``reference_dir`` also the ground truth and masks the results were made from, so that ``evaluate`` and
``baseline`` run on exactly the same images and holes.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from common.training.runs import load_run, results_dir
from common.visualization import save_png

__all__ = ["InpaintingPredictionWriter", "load_inpainter"]


class InpaintingPredictionWriter(BasePredictionWriter):
    """Write each ``predict`` result as ``<output_dir>/<name>.png`` (the composited image, same name as its input).

    Args:
        output_dir: Folder for the PNG files (default: ``<results dir>/predictions``).
        reference_dir: If set, also write the ground truth the model saw as ``<reference_dir>/gt/<name>.png`` and
            its mask as ``<reference_dir>/masks/<name>.png`` (white = hole): the inputs of ``evaluate --gt_dir
            <reference_dir>/gt --mask_dir <reference_dir>/masks`` and ``baseline --image_dir ... --mask_dir ...``.
    """

    def __init__(self, output_dir: str | None = None, reference_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.reference_dir = reference_dir

    def folder(self, trainer: pl.Trainer) -> Path:
        """The output folder: ``output_dir`` or ``<run folder>/predictions``."""
        return Path(self.output_dir) if self.output_dir else results_dir(trainer) / "predictions"

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        """Write ``<name>.png`` for each inpainted image and, with ``reference_dir``, the ground truth and the mask
        beside.
        """
        folder = self.folder(trainer)
        reference = Path(self.reference_dir) if self.reference_dir else None
        for i, name in enumerate(prediction["name"]):
            save_png(prediction["inpainted"][i], folder / f"{name}.png")
            if reference is not None:
                save_png(prediction["image"][i], reference / "gt" / f"{name}.png")
                save_png(prediction["mask"][i].float(), reference / "masks" / f"{name}.png")


def load_inpainter(checkpoint: str | Path, config: str | Path | None = None):
    """Rebuild a trained :class:`an_inpaint.module.ANInpaint` from a checkpoint, by
    :func:`common.training.runs.load_run`
    (the one reload path of both tasks).

    Args:
        checkpoint: A ``.ckpt`` file written by ``python -m an_inpaint fit``.
        config: A config file whose ``model`` section builds the module (default: the model config stored in the
            checkpoint, else the run's ``config.yaml`` next to ``checkpoints/``).

    Returns:
        The model in eval mode, on the CPU.

    Raises:
        FileNotFoundError: If the checkpoint (or, when needed, the config) is missing.
        common.training.checkpoints.CheckpointMismatchError: Another task's checkpoint or another architecture.
    """
    from an_inpaint.module import ANInpaint

    return load_run(checkpoint, config=config, module_class=ANInpaint)
