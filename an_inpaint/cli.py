"""Command line of the inpainting task: ``python -m an_inpaint fit|validate|test|predict|evaluate``.

``fit`` with no arguments trains the bundled demo (:class:`common.data.inpainting.DemoInpaintingDataModule`, a
small AN generator at 64x64, both training phases); ``configs/an_inpaint/paris256.yaml`` is the paper's Paris
StreetView setting (AN paper, Wang et al., CVPR 2020, Section 5). Before training, ``fit`` runs one validation
(``--validate_before_fit``, on by default) so that the metrics before and after training sit side by side in the
log. ``predict`` inpaints ``--data.predict_root`` with the masks of ``--data.predict_mask_root`` and writes PNG
files of the same names to ``--predict_writer.output_dir``. ``evaluate`` scores a folder of results against the
ground truth with :func:`common.metrics.inpainting.score_folders` (the same code as the in-training validation).
"""

from __future__ import annotations

import sys
from typing import Any

from jsonargparse import ArgumentParser
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import SaveConfigCallback

from an_inpaint.module import ANInpaint, InpaintingPredictionWriter
from common.cli import ANLightningCLI

__all__ = ["DEMO_DEFAULTS", "ANInpaintCLI", "cli_main", "evaluate_main"]

DEMO_DEFAULTS: dict[str, Any] = {
    "model.generator": {
        "class_path": "an_inpaint.networks.InpaintGenerator",
        "init_args": {"cnum": 16, "attention": "an"},
    },
    "model.global_critic": {
        "class_path": "an_inpaint.networks.GlobalCritic",
        "init_args": {"input_size": 64, "cnum": 16},
    },
    "model.local_critic": {
        "class_path": "an_inpaint.networks.LocalCritic",
        "init_args": {"input_size": 32, "cnum": 16},
    },
    "model.adversarial_start_step": 540,
    "data": {
        "class_path": "common.data.inpainting.DemoInpaintingDataModule",
        "init_args": {"resolution": 64, "batch_size": 8, "train_samples_per_epoch": 1440},
    },
}
"""Model and data defaults of the no-argument demo (also written out in ``configs/an_inpaint/demo.yaml``)."""


class ANInpaintCLI(ANLightningCLI):
    """LightningCLI of ``an_inpaint``: demo defaults, the prediction writer and validation before ``fit``."""

    task_name = "an_inpaint"
    task_trainer_defaults = {
        "max_epochs": 6,
        "log_every_n_steps": 10,
        "num_sanity_val_steps": 0,
        "callbacks": [
            ModelCheckpoint(monitor="val/psnr", mode="max", filename="best-step{step}", auto_insert_metric_name=False)
        ],
    }

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(InpaintingPredictionWriter, "predict_writer")
        parser.add_argument(
            "--validate_before_fit",
            type=bool,
            default=True,
            help="fit: run one validation before training (the 'before' metrics, logged at step 0)",
        )
        parser.set_defaults(DEMO_DEFAULTS)

    def before_fit(self) -> None:
        super().before_fit()
        if self.config[self.subcommand].get("validate_before_fit") and not self.config[self.subcommand].get(
            "ckpt_path"
        ):
            self.trainer.validate(self.model, datamodule=self.datamodule, verbose=True)
            # Lightning's SaveConfigCallback saves once per trainer: let fit write the run's config.yaml too.
            for callback in self.trainer.callbacks:
                if isinstance(callback, SaveConfigCallback):
                    callback.already_saved = False


def evaluate_main(args: list[str] | None = None) -> dict:
    """``evaluate``: score a folder of inpainted images against the ground truth; print a table, write JSON."""
    from common.metrics.inpainting import format_table, score_folders, write_json

    parser = ArgumentParser(
        prog="python -m an_inpaint evaluate",
        description="PSNR / SSIM / MAE (whole image and hole only) of inpainted images vs ground truth, per image "
        "then averaged, images in [0, 1] RGB quantised to uint8 (paper Table 3 protocol).",
    )
    parser.add_argument("--pred_dir", type=str, required=True, help="folder of inpainted images")
    parser.add_argument("--gt_dir", type=str, required=True, help="folder of ground-truth images (same file names)")
    parser.add_argument("--mask_dir", type=str | None, default=None, help="folder of masks (same stems; white = hole)")
    parser.add_argument(
        "--mask",
        type=str,
        default="center",
        help="without --mask_dir: 'center' (centre square hole, half the shorter side) or 'none' (no hole metrics)",
    )
    parser.add_argument("--resize_to", type=int | None, default=None, help="resize both images to this size first")
    parser.add_argument("--lpips", type=bool, default=False, help="also LPIPS (downloads its weights on first use)")
    parser.add_argument("--output", type=str | None, default=None, help="JSON file for the scores (per image and mean)")
    cfg = parser.parse_args(args)
    result = score_folders(
        cfg.pred_dir, cfg.gt_dir, mask_dir=cfg.mask_dir, mask=cfg.mask, resize_to=cfg.resize_to, lpips=cfg.lpips
    )
    print(format_table(result), flush=True)
    if cfg.output:
        write_json(result, cfg.output)
        print(f"scores written to {cfg.output}", flush=True)
    return result


def cli_main(args: list[str] | dict | None = None, run: bool = True) -> ANInpaintCLI | dict:
    """Entry point. Returns the CLI object (or, for ``evaluate``, the scores)."""
    argv = sys.argv[1:] if args is None else args
    if isinstance(argv, list) and argv and argv[0] == "evaluate":
        return evaluate_main(argv[1:])
    description = (
        "Generative inpainting with Attentive Normalization. Subcommands: fit, validate, test, predict (below) and "
        "evaluate (score a folder of results: python -m an_inpaint evaluate --help)."
    )
    return ANInpaintCLI(
        ANInpaint, args=args, run=run, subclass_mode_data=True, parser_kwargs={"description": description}
    )


if __name__ == "__main__":
    cli_main()
