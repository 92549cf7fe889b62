"""Command line of the class-conditional AN GAN: ``python -m an_gan fit|validate|test|predict``.

LightningCLI (``common.cli.ANLightningCLI``) over :class:`an_gan.module.ANGAN` and any
``common.data.class_images.ClassImageDataModule`` subclass (``--data`` takes a ``class_path``). With no arguments
``fit`` trains the bundled demo (scikit-learn digits at 32x32, tiny networks, CPU-sized; ``configs/an_gan/demo.yaml``
spells out the same settings). The data's ``num_classes`` and ``resolution`` are linked into the model
(``apply_on="instantiate"``). Checkpoints: ``last.ckpt`` and ``best-fid.ckpt`` (lowest ``val/fid``).

``predict`` reads no images: it generates ``--model.predict_num_per_class`` images for each class of
``--model.predict_classes`` (default all) with the module's own dataloader and writes one folder of PNGs per class
(see ``an_gan.sampling``). The data section is still built for the ``num_classes``/``resolution`` links, so the
run's data root must exist (only its class folders are listed); on a machine without the data use
``an_gan.sampling.load_generator``. Pass the run's ``config.yaml`` so the networks match the checkpoint::

    python -m an_gan predict --config RUN/config.yaml --ckpt_path RUN/checkpoints/last.ckpt \\
        --model.predict_num_per_class 50 --model.predict_output_dir samples/
"""

from __future__ import annotations

from typing import Any, ClassVar

from pytorch_lightning.callbacks import ModelCheckpoint

from an_gan.module import ANGAN
from common.cli import ANLightningCLI
from common.data.class_images import ClassImageDataModule

__all__ = ["DEMO_DATA_DEFAULTS", "DEMO_MODEL_DEFAULTS", "DEMO_TRAINER_DEFAULTS", "ANGANCLI", "cli_main"]

#: Model settings of the no-argument demo (digits, 32x32, CPU): mirrored in configs/an_gan/demo.yaml.
DEMO_MODEL_DEFAULTS: dict[str, Any] = {
    "z_dim": 64,
    "g_ch": 8,
    "d_ch": 16,
    "g_long_range": "an",
    "g_long_range_block": 1,
    "d_long_range": "an",
    "d_long_range_block": 0,
    "num_entities": 8,
    "g_lr": 4e-4,
    "d_lr": 8e-4,
    "betas": (0.0, 0.9),
    "ema_decay": 0.99,
    "ema_start_step": 100,
    "eval_num_samples": 500,
    "eval_batch_size": 250,
    "feature_extractor": {
        "class_path": "common.metrics.generation.RandomProjectionExtractor",
        "init_args": {"feature_dim": 16, "num_logits": 10, "seed": 0},
    },
    "sample_every_n_steps": 250,
    "samples_per_class": 10,
}
#: Data settings of the no-argument demo.
DEMO_DATA_DEFAULTS: dict[str, Any] = {"resolution": 32, "batch_size": 32}
#: Trainer settings of the no-argument demo (``max_steps`` counts D and G optimiser steps: 2 per iteration, so
#: 2000 = 1000 iterations; ``val_check_interval`` counts batches = D steps).
DEMO_TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "cpu",
    "max_steps": 2000,
    "max_epochs": -1,
    "val_check_interval": 500,
    "check_val_every_n_epoch": None,
    "log_every_n_steps": 25,
    "num_sanity_val_steps": 0,
}


class ANGANCLI(ANLightningCLI):
    """``ANLightningCLI`` for ``an_gan``: data -> model links, demo defaults, best-by-FID checkpoint."""

    task_name: ClassVar[str] = "an_gan"
    task_trainer_defaults: ClassVar[dict[str, Any]] = {
        **DEMO_TRAINER_DEFAULTS,
        "callbacks": [
            ModelCheckpoint(
                monitor="val/fid", mode="min", save_top_k=1, filename="best-fid", auto_insert_metric_name=False
            )
        ],
    }

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.resolution", "model.resolution", apply_on="instantiate")
        parser.set_defaults(
            {
                "data": {"class_path": "common.data.class_images.DigitsDataModule", "init_args": DEMO_DATA_DEFAULTS},
                **{f"model.{key}": value for key, value in DEMO_MODEL_DEFAULTS.items()},
            }
        )

    def before_predict(self) -> None:
        # Generation needs no dataset: run the module's own predict_dataloader (class x index items).
        self.datamodule = None


def cli_main(args: list[str] | None = None, run: bool = True) -> ANGANCLI:
    """Run the CLI (``args=None`` reads ``sys.argv``); returns the CLI object (for tests)."""
    return ANGANCLI(
        ANGAN,
        ClassImageDataModule,
        subclass_mode_data=True,
        args=args,
        run=run,
    )
