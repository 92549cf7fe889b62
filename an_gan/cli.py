"""Command line of the class-conditional AN GAN: ``python -m an_gan fit|validate|test|predict|evaluate|prepare|check``.

LightningCLI (``common.training.cli.ANLightningCLI``) over :class:`an_gan.module.ANGAN` and any
``common.data.class_images.ClassImageDataModule`` subclass (``--data`` takes a ``class_path``).

* ``fit`` with neither ``--config`` nor ``--data`` trains the bundled demo, ``configs/an_gan/demo.yaml`` (scikit-learn
  digits at 32x32, CPU-sized; it ships with the package), and ends with the demo's judge
  (:func:`an_gan.demo_quality.demo_quality`). Any other run starts from the constructors' defaults, which are the
  paper's ImageNet 128 model and recipe (``--print_config`` shows them); no trainer default pins the accelerator,
  the device count or the run length.
* The data's ``num_classes`` and ``resolution`` are linked into both networks (``apply_on="instantiate"``).
* Checkpoints: ``last.ckpt`` and ``best-fid.ckpt`` (lowest ``val/fid``: the validation evaluator's split and seed,
  never the test evaluator's).
* ``predict`` reads no images: :class:`an_gan.predict.ClassFolderWriter` (``--predict_writer.*``) generates images
  per class and writes ``<class:04d>/<index:06d>.png``. Pass the run's ``config.yaml`` so the networks match::

      python -m an_gan predict --config RUN/config.yaml --ckpt_path RUN/checkpoints/last.ckpt \\
          --predict_writer.num_per_class 50 --predict_writer.output_dir samples/

* ``evaluate`` scores a folder of generated images in class sub-folders with the same code as in-training
  validation (:meth:`an_gan.evaluation.GenerationEvaluator.score_folder`), prints a table and writes JSON::

      python -m an_gan evaluate --samples samples/ --reference /data/real_class_folders --output scores.json
      python -m an_gan evaluate --samples samples/ --data common.data.imagenet.ImageNetDataModule \\
          --data.init_args.root /data/imagenet

  The default protocol is the paper's test (50,000 images: 50 per class on ImageNet, and 5,000 per class for the
  intra-FID of all classes); ``--num_per_class``, ``--intra_fid_classes`` and ``--intra_fid_num_per_class`` set its
  counts (``--num_per_class 0``: intra-FID only, e.g. for a folder with a few classes), and a class folder with too
  few images is an error that names these flags. ``--device auto`` (default) extracts features on the GPU if any.

* ``prepare`` is ``python -m common.data.prepare imagenet``: ImageNet resized once and written with LitData, for
  ``--data common.data.prepared.PreparedImageNetDataModule --data.init_args.root OUT``::

      python -m an_gan prepare --root /data/imagenet --output /data/imagenet128 --resolution 128
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import sys
from pathlib import Path
from typing import Any, ClassVar

from jsonargparse import ArgumentParser
from pytorch_lightning.callbacks import ModelCheckpoint

from an_gan.evaluation import FolderTooSmallError, GenerationEvaluator
from an_gan.module import ANGAN
from an_gan.networks import Discriminator, Generator
from an_gan.predict import ClassFolderWriter
from common.data.class_images import ClassFolderDataModule, ClassImageDataModule, DigitsDataModule
from common.layers.factories import layer_spec
from common.training.cli import ANLightningCLI

__all__ = ["ANGANCLI", "MODEL_DEFAULTS", "cli_main", "evaluate_main", "format_scores"]

_LINKED = ("num_classes", "resolution")


def _init_defaults(cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every constructor default of ``cls`` (so ``--print_config`` shows the whole configuration); a layer class or
    partial (the networks' ``long_range``) as its ``class_path`` and ``init_args``, so that a config or a flag such as
    ``--model.generator.init_args.long_range.init_args.num_entities=8`` sets its arguments."""
    params = inspect.signature(cls.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.name != "self" and p.name not in skip}
    return {
        name: layer_spec(value) if isinstance(value, (type, functools.partial)) else value
        for name, value in defaults.items()
        if value is not inspect.Parameter.empty
    }


def _spec(cls: type, **overrides: Any) -> dict[str, Any]:
    skip = _LINKED if cls in (Generator, Discriminator) else ()
    return {
        "class_path": f"{cls.__module__}.{cls.__qualname__}",
        "init_args": {**_init_defaults(cls, skip), **overrides},
    }


def _adam(lr: float) -> dict[str, Any]:
    return {"class_path": "torch.optim.Adam", "init_args": {"lr": lr, "betas": [0.0, 0.999]}}


#: The paper's model, recipe and evaluation protocol as CLI defaults (Wang et al., CVPR 2020, Sections 4, 5.1):
#: the constructors' defaults spelled out, plus the two evaluators (ANGAN's Python defaults evaluate nothing).
#: Validation (model selection): 50k samples, seed 0, FID against the ImageNet validation images, intra-FID on the
#: Table 2 classes. Test (reported): 50k samples, seed 1, FID against the training images, intra-FID on all classes
#: (5,000 per class against each class's training images, the SN-GAN projection protocol).
MODEL_DEFAULTS: dict[str, Any] = {
    "model.generator": _spec(Generator),
    "model.discriminator": _spec(Discriminator),
    "model.g_optimizer": _adam(1e-4),
    "model.d_optimizer": _adam(4e-4),
    "model.val_evaluator": _spec(GenerationEvaluator, seed=0, reference_split="val", intra_fid_classes="table2"),
    "model.test_evaluator": _spec(GenerationEvaluator, seed=1, reference_split="train", intra_fid_classes="all"),
}


class ANGANCLI(ANLightningCLI):
    """``ANLightningCLI`` for ``an_gan``: data -> network links, paper defaults, best-by-FID checkpoint, demo."""

    task_name: ClassVar[str] = "an_gan"
    demo_config: ClassVar[str | None] = "demo.yaml"
    task_trainer_defaults: ClassVar[dict[str, Any]] = {
        "callbacks": [
            ModelCheckpoint(
                monitor="val/fid", mode="min", save_top_k=1, filename="best-fid", auto_insert_metric_name=False
            )
        ],
    }

    def add_arguments_to_parser(self, parser) -> None:
        """Link ``num_classes`` / ``resolution`` from the data to both networks, add ``--predict_writer.*`` and set the
        paper's model defaults.
        """
        super().add_arguments_to_parser(parser)
        for net in ("generator", "discriminator"):
            for name in _LINKED:
                parser.link_arguments(f"data.{name}", f"model.{net}.init_args.{name}", apply_on="instantiate")
        parser.add_lightning_class_args(ClassFolderWriter, "predict_writer")
        parser.set_defaults(MODEL_DEFAULTS)

    def before_predict(self) -> None:
        """Check the checkpoint, then drop the datamodule: generation reads no images (the writer's own dataloader)."""
        super().before_predict()
        # Generation needs no dataset: run the module's own predict_dataloader (the writer's classes and seed).
        self.datamodule = None

    def after_fit(self) -> None:
        """Print the results; after the digits demo also score it with :func:`an_gan.demo_quality.demo_quality` and
        write ``demo_quality.json`` in the run folder.
        """
        super().after_fit()
        if isinstance(self.datamodule, DigitsDataModule) and self.trainer.is_global_zero:
            from an_gan.demo_quality import demo_quality, format_demo_quality
            from common.training.runs import results_dir

            report = demo_quality(self.model.evaluation_generator(), self.datamodule)
            path = results_dir(self.trainer) / "demo_quality.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2))
            print(format_demo_quality(report) + f"\n  written to {path}", flush=True)


def format_scores(scores: dict[str, float]) -> str:
    """A two-column text table of scores (per-class intra-FID rows last)."""
    keys = sorted(scores, key=lambda k: (k.startswith("intra_fid/"), k))
    width = max(len(k) for k in keys)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ----------"]
    lines += [f"{k:<{width}}  {scores[k]:.4f}" if math.isfinite(scores[k]) else f"{k:<{width}}  nan" for k in keys]
    return "\n".join(lines)


def _first_image_size(samples: Path) -> int:
    from PIL import Image

    from common.data.images import list_images

    folders = sorted(p for p in samples.iterdir() if p.is_dir()) if samples.is_dir() else []
    for folder in folders:
        files = list_images(folder)
        if files:
            with Image.open(files[0]) as img:
                return img.size[0]
    raise FileNotFoundError(f"no class sub-folders with images in {samples}")


def _resolve_device(device: str) -> str:
    """``"auto"``: ``"cuda"`` when a GPU is visible, else ``"cpu"``; any other value as given."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _apply_protocol_flags(evaluator: GenerationEvaluator, cfg: Any, num_classes: int) -> None:
    """``--num_per_class`` / ``--intra_fid_classes`` / ``--intra_fid_num_per_class`` over the evaluator's settings."""
    if cfg.num_per_class is not None:
        evaluator.num_samples = cfg.num_per_class * num_classes
    if cfg.intra_fid_classes is not None:
        evaluator.intra_fid_classes = None if cfg.intra_fid_classes == "none" else cfg.intra_fid_classes
    if cfg.intra_fid_num_per_class is not None:
        evaluator.intra_fid_num_per_class = cfg.intra_fid_num_per_class
    evaluator.check()
    evaluator.classes(num_classes)  # a class list is checked against the reference


def _too_few_images(error: FolderTooSmallError, evaluator: GenerationEvaluator, num_classes: int) -> str:
    per_class = evaluator.num_samples / num_classes
    return (
        f"{error}. The protocol's counts are flags: --num_per_class (now {per_class:g}; 0: intra-FID only), "
        f"--intra_fid_num_per_class (now {evaluator.intra_fid_num_per_class}) and --intra_fid_classes (now "
        f"{evaluator.intra_fid_classes!r}; 'none', 'table2' or a list such as '[14, 141]'): lower them to what the "
        "folder holds, or write more images (predict --predict_writer.num_per_class N)"
    )


def evaluate_main(args: list[str] | None = None) -> dict[str, Any]:
    """``evaluate``: score a folder of generated images (class sub-folders); print a table, write JSON."""
    parser = ArgumentParser(
        prog="python -m an_gan evaluate",
        description="FID / IS / KID / precision-recall / intra-FID of generated images in class sub-folders "
        "(<class index or name>/<index>.png) against real images, with the code of in-training validation.",
    )
    parser.add_argument("--samples", type=str, required=True, help="folder of generated images, one folder per class")
    parser.add_argument(
        "--reference", type=str | None, default=None, help="folder of real images, one folder per class (all used)"
    )
    parser.add_subclass_arguments(ClassImageDataModule, "data", required=False, help="or: a datamodule as reference")
    parser.add_subclass_arguments(GenerationEvaluator, "evaluator", help="the protocol (default: the paper's test)")
    parser.add_argument(
        "--num_per_class",
        type=int | None,
        default=None,
        help="FID / IS / KID / PR images per class (evaluator num_samples = this x classes; 0: intra-FID only); "
        "default: the evaluator's (50,000 images: 50 per class on ImageNet)",
    )
    parser.add_argument(
        "--intra_fid_classes",
        type=list[int] | str | None,
        default=None,
        help="intra-FID classes: 'all', 'table2', a list such as '[14, 141]', or 'none'; default: the evaluator's",
    )
    parser.add_argument(
        "--intra_fid_num_per_class",
        type=int | None,
        default=None,
        help="images per intra-FID class (default: the evaluator's, 5,000)",
    )
    parser.add_argument(
        "--device", type=str, default="auto", help="device for the feature extractor (auto: the GPU if there is one)"
    )
    parser.add_argument("--demo_quality", type=bool, default=False, help="also the digits judge (digits samples)")
    parser.add_argument("--output", type=str | None, default=None, help="JSON file for the scores")
    parser.set_defaults({"evaluator": MODEL_DEFAULTS["model.test_evaluator"]})
    cfg = parser.parse_args(args)
    init = parser.instantiate_classes(cfg)
    samples = Path(cfg.samples)
    if (cfg.reference is None) == (init.get("data") is None):
        parser.error("give exactly one of --reference FOLDER and --data CLASS_PATH")
    if cfg.reference is not None:
        reference = ClassFolderDataModule(
            cfg.reference, resolution=_first_image_size(samples), val_root=cfg.reference, min_classes=1, num_workers=0
        )
    else:
        reference = init.data
    evaluator: GenerationEvaluator = init.evaluator
    try:
        _apply_protocol_flags(evaluator, cfg, reference.num_classes)
    except ValueError as error:
        parser.error(f"{error} (--num_per_class / --intra_fid_classes / --intra_fid_num_per_class)")
    device = _resolve_device(cfg.device)
    try:
        scores = evaluator.score_folder(samples, reference, device=device)
    except FolderTooSmallError as error:
        parser.error(_too_few_images(error, evaluator, reference.num_classes))
    result: dict[str, Any] = {
        "device": device,
        "samples": str(samples),
        "reference": cfg.reference or type(reference).__name__,
        "protocol": evaluator.describe(reference.num_classes),
        "scores": scores,
        "intra_fid_per_class": {str(c): v for c, v in evaluator.last_intra_fid.items()},
    }
    print(format_scores(scores), flush=True)
    if cfg.demo_quality:
        from an_gan.demo_quality import format_demo_quality, score_digit_folder

        result["demo_quality"] = score_digit_folder(samples)
        print(format_demo_quality(result["demo_quality"]), flush=True)
    if cfg.output:
        Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.output).write_text(json.dumps(result, indent=2))
        print(f"scores written to {cfg.output}", flush=True)
    return result


def cli_main(args: list[str] | None = None, run: bool = True) -> ANGANCLI | dict[str, Any]:
    """Entry point (``args=None`` reads ``sys.argv``); returns the CLI object, the scores for ``evaluate`` or the
    manifest for ``prepare``."""
    argv = sys.argv[1:] if args is None else args
    if isinstance(argv, list) and argv and argv[0] == "evaluate":
        return evaluate_main(argv[1:])
    if isinstance(argv, list) and argv and argv[0] == "prepare":
        from common.data.prepare import main as prepare_main

        return prepare_main(["imagenet", *argv[1:]])
    if isinstance(argv, list) and argv and argv[0] == "check":
        from an_gan.check import GANCheck
        from common.training.check import check_main

        report = check_main(cli_main, argv[1:], GANCheck(ANGANCLI))
        if args is None:  # the command line: exit 1 when a fail would stop the run
            raise SystemExit(report.exit_status)
        return report
    description = (
        "Class-conditional GAN with Attentive Normalization. Subcommands: fit, validate, test, predict (below), "
        "check (the arguments of fit: a preflight of the run, docs/check.md), "
        "evaluate (score a folder of generated images: python -m an_gan evaluate --help) and prepare (ImageNet resized "
        "once for streaming: python -m an_gan prepare --help)."
    )
    return ANGANCLI(
        ANGAN,
        ClassImageDataModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        parser_kwargs={"description": description},
    )
