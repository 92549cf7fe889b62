"""Inpainting command line: ``python -m an_inpaint fit|validate|test|predict|evaluate|baseline|study|prepare|check``.

``fit`` with neither ``--config`` nor ``--data`` trains the bundled demo (``configs/an_inpaint/demo.yaml``, shipped
with the package); every other run starts from the constructors' defaults, which are the paper's Paris StreetView
256x256 settings (``configs/an_inpaint/paris256.yaml`` writes them out with their sources). Before training,
``fit`` runs one validation (``--validate_before_fit``, on by default) so that the metrics before and after
training sit side by side in the log. ``predict`` inpaints a folder (``--data.init_args.predict_root`` with the
masks of ``--data.init_args.predict_mask_root``) or the evaluation split (``--data.init_args.predict_split test``)
and writes PNG files to ``--predict_writer.output_dir`` (with ``--predict_writer.reference_dir`` also the ground
truth and masks). ``baseline`` does the same with OpenCV's classical inpainting, and ``evaluate`` scores a folder of
results against the ground truth with :func:`an_inpaint.evaluation.score_folders` (the same metric code as the
in-training validation; ``--compare_dir`` compares two folders image by image). ``study`` trains arms x seeds with
the same step budget and compares them (:mod:`an_inpaint.study`). ``prepare`` is ``python -m common.data.prepare
paris`` (Paris StreetView written once with LitData, for
``--data common.data.prepared.PreparedParisStreetViewDataModule``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser
from pytorch_lightning.cli import SaveConfigCallback

from an_inpaint.module import ANInpaint
from an_inpaint.predict import InpaintingPredictionWriter
from an_inpaint.reporting import best_phase2_checkpoint
from common.training.check import NodeFile, Report, TaskCheck
from common.training.cli import ANLightningCLI

__all__ = ["ANInpaintCLI", "InpaintCheck", "baseline_main", "cli_main", "evaluate_main"]


class ANInpaintCLI(ANLightningCLI):
    """LightningCLI of ``an_inpaint``: the demo file, the prediction writer and validation before ``fit``."""

    task_name = "an_inpaint"
    demo_config = "demo.yaml"
    task_trainer_defaults = {
        "callbacks": [best_phase2_checkpoint()],  # the Table 3 rule: an_inpaint.reporting
    }

    def add_arguments_to_parser(self, parser) -> None:
        """Add ``--predict_writer.*`` and ``--validate_before_fit``."""
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(InpaintingPredictionWriter, "predict_writer")
        parser.add_argument(
            "--validate_before_fit",
            type=bool,
            default=True,
            help="fit: run one validation before training (the 'before' metrics, logged at step 0)",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="fit: score the test split with the final model (the model at trainer.max_steps, as last.ckpt) "
            "after training, printing the table (the demo does; off for the paper's runs, which test explicitly)",
        )

    def after_fit(self) -> None:
        """With ``test_after_fit``: the test table of the final model; then where the results are."""
        if self.config[self.subcommand].get("test_after_fit") and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule, verbose=True)
        super().after_fit()

    def before_fit(self) -> None:
        """Resolve the checkpoint; for a new run with ``validate_before_fit``, validate once first (the 'before'
        metrics).
        """
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
    """``evaluate``: score a folder of inpainted images against the ground truth; print a table, write JSON. With
    ``--compare_dir`` also a second folder and the paired per-image difference of the two (returns ``{"pred",
    "compare", "paired"}``)."""
    from an_inpaint.evaluation import METRICS, format_table, score_folders, write_json
    from common.training.study_summary import format_summary, summarize

    parser = ArgumentParser(
        prog="python -m an_inpaint evaluate",
        description="PSNR / SSIM / MAE (whole image and hole only) of composited results vs the ground truth, per "
        "image then averaged, RGB quantised to 8 bits; optional per-area-bin scores, LPIPS and FID.",
    )
    parser.add_argument("--pred_dir", type=str, required=True, help="folder of inpainted (composited) images")
    parser.add_argument("--gt_dir", type=str, required=True, help="folder of ground-truth images (same file stems)")
    parser.add_argument("--mask_dir", type=str | None, default=None, help="folder of masks (same stems; white = hole)")
    parser.add_argument(
        "--mask",
        type=str,
        default="center",
        help="without --mask_dir: 'center' (centre square hole, half the shorter side) or 'none' (no hole metrics)",
    )
    parser.add_argument("--resize_to", type=int | None, default=None, help="bring images to this square size first")
    parser.add_argument("--resize", type=str, default="bilinear", help="filter of --resize_to: bilinear | lanczos")
    parser.add_argument("--ssim", type=str, default="skimage", help="SSIM convention: skimage | matlab")
    parser.add_argument("--area_bins", type=list[float] | None, default=None, help="hole-area bins, e.g. [0.1,0.2]")
    parser.add_argument("--known_check", type=str, default="error", help="altered known pixels: error | warn | off")
    parser.add_argument("--known_tolerance", type=int, default=0, help="accepted known-pixel difference (levels)")
    parser.add_argument("--lpips", type=bool, default=False, help="also LPIPS (downloads its weights on first use)")
    parser.add_argument("--fid", type=bool, default=False, help="also FID (downloads Inception weights on first use)")
    parser.add_argument("--output", type=str | None, default=None, help="JSON file for the scores (per image and mean)")
    parser.add_argument(
        "--compare_dir",
        type=str | None,
        default=None,
        help="a second folder of results on the same images: also prints its scores and, per metric, the paired "
        "difference pred - compare (bootstrap interval over images, images better / worse)",
    )
    parser.add_argument("--resamples", type=int, default=10_000, help="--compare_dir: bootstrap resamples")
    parser.add_argument("--bootstrap_seed", type=int, default=0, help="--compare_dir: seed of the bootstrap")
    parser.add_argument("--confidence", type=float, default=0.95, help="--compare_dir: level of the interval")
    cfg = parser.parse_args(args)
    options = {
        "mask_dir": cfg.mask_dir,
        "mask": cfg.mask,
        "resize_to": cfg.resize_to,
        "resize": cfg.resize,
        "ssim": cfg.ssim,
        "area_bins": cfg.area_bins,
        "known_check": cfg.known_check,
        "known_tolerance": cfg.known_tolerance,
        "lpips": cfg.lpips,
        "fid": cfg.fid,
    }
    result = score_folders(cfg.pred_dir, cfg.gt_dir, **options)
    names = [Path(d).resolve().name for d in (cfg.pred_dir, cfg.compare_dir or ".")]
    names = names if names[0] != names[1] else ["pred_dir", "compare_dir"]
    print((f"{names[0]} ({cfg.pred_dir}):\n" if cfg.compare_dir else "") + format_table(result), flush=True)
    if cfg.compare_dir is not None:
        other = score_folders(cfg.compare_dir, cfg.gt_dir, **options)
        print(f"{names[1]} ({cfg.compare_dir}):\n{format_table(other)}", flush=True)
        paired = summarize(
            {names[0]: [result["per_image"]], names[1]: [other["per_image"]]},
            METRICS,
            [tuple(names)],
            resamples=cfg.resamples,
            confidence=cfg.confidence,
            bootstrap_seed=cfg.bootstrap_seed,
        )
        print(format_summary(paired, METRICS), flush=True)
        result = {"pred": result, "compare": other, "paired": paired}
    if cfg.output:
        write_json(result, cfg.output)
        print(f"scores written to {cfg.output}", flush=True)
    return result


def baseline_main(args: list[str] | None = None) -> list:
    """``baseline``: inpaint a folder of images and same-named masks classically (OpenCV Telea / Navier-Stokes, or
    harmonic filling)."""
    from an_inpaint.baselines import METHODS, inpaint_folder

    parser = ArgumentParser(
        prog="python -m an_inpaint baseline",
        description="Classical inpainting (OpenCV cv2.inpaint Telea / Navier-Stokes, or harmonic filling) of a folder "
        "of images with the same-named masks (white = hole); writes composited PNG files of the same names, to score "
        "with `evaluate`.",
    )
    parser.add_argument("--method", type=str, required=True, help=f"one of {', '.join(METHODS)}")
    parser.add_argument("--image_dir", type=str, required=True, help="folder of images (the hole content is unused)")
    parser.add_argument("--mask_dir", type=str, required=True, help="folder of masks, same file stems, white = hole")
    parser.add_argument("--output_dir", type=str, required=True, help="folder for the results")
    parser.add_argument("--radius", type=float, default=3.0, help="cv2.inpaint's inpaintRadius (pixels)")
    cfg = parser.parse_args(args)
    written = inpaint_folder(cfg.image_dir, cfg.mask_dir, cfg.output_dir, cfg.method, cfg.radius)
    print(f"{len(written)} image(s) inpainted with {cfg.method} written to {cfg.output_dir}", flush=True)
    return written


class InpaintCheck(TaskCheck):
    """What ``python -m an_inpaint check`` knows about this task: splits, the paper's Paris StreetView numbers."""

    task = "an_inpaint"
    cli_class = ANInpaintCLI
    paper_batch = 16  # DeepFill's batch, the paper's Paris StreetView setting
    prepare_hint = "python -m an_inpaint prepare (docs/data.md)"

    def splits(self, datamodule: Any) -> dict[str, Any]:
        """The DataModule's train / val / test datasets (test only when configured)."""
        datamodule.setup_splits(None)
        found = {"train": datamodule.train_set, "val": datamodule.val_set, "test": datamodule.test_set}
        return {name: data for name, data in found.items() if data is not None}

    def expected(self, datamodule: Any) -> dict[str, int] | None:
        """Paris StreetView: 14,900 training images (``val_images`` of them held out) and 100 test images."""
        if "ParisStreetView" not in type(datamodule).__name__:
            return None
        held_out = getattr(datamodule, "val_images", 100)
        return {"train": 14_900 - held_out, "val": held_out, "test": 100}

    def node_files(self, cli: ANInpaintCLI) -> list[NodeFile]:
        """With FID in the validation evaluator: torch-fidelity's cached Inception weights, on every node."""
        if getattr(cli.model.val_evaluator, "fid", None) is None:
            return []
        from common.metrics.generation.features import default_inception_weights_path

        path = default_inception_weights_path()
        return [
            NodeFile(
                name="FID weights",
                label="Inception weights",
                path=str(path),
                required=False,
                absent="the first validation downloads them (and stops on a node without network)",
                fix="or --model.val_evaluator.init_args.fid false",
            )
        ]

    def evaluation(self, report: Report, cli: ANInpaintCLI, budget: int) -> dict[str, Any]:
        """The images one validation and one test handle (with FID, its weights: :meth:`node_files`)."""
        data = cli.datamodule
        evaluator = cli.model.val_evaluator
        if getattr(evaluator, "fid", None) is None:
            report.add(
                "evaluation",
                "val_evaluator",
                "pass",
                f"{type(evaluator).__name__}: PSNR / SSIM / MAE, "
                "no weights to download" + (" (LPIPS: torchvision's AlexNet)" if evaluator.lpips is not None else ""),
            )
        counts = {"validate": len(data.val_set) if data.val_set is not None else None}
        counts["test"] = len(data.test_set) if data.test_set is not None else None
        return counts

    def extra_validations(self, cli: ANInpaintCLI) -> int:
        """One validation before training (``--validate_before_fit``, new runs)."""
        config = cli.config
        return int(bool(config.get("validate_before_fit")) and not config.get("ckpt_path"))

    def extra_tests(self, cli: ANInpaintCLI) -> int:
        """One test after training (``--test_after_fit``)."""
        return int(bool(cli.config.get("test_after_fit")))


def cli_main(args: list[str] | dict | None = None, run: bool = True) -> ANInpaintCLI | dict | list:
    """Entry point. Returns the CLI object (for ``evaluate`` the scores, for ``baseline`` the written files, for
    ``study`` the study's results, for ``prepare`` the manifest)."""
    argv = sys.argv[1:] if args is None else args
    if isinstance(argv, list) and argv and argv[0] == "evaluate":
        return evaluate_main(argv[1:])
    if isinstance(argv, list) and argv and argv[0] == "baseline":
        return baseline_main(argv[1:])
    if isinstance(argv, list) and argv and argv[0] == "study":
        from an_inpaint.study import study_main

        return study_main(argv[1:])
    if isinstance(argv, list) and argv and argv[0] == "prepare":
        from common.data.prepare import main as prepare_main

        return prepare_main(["paris", *argv[1:]])
    if isinstance(argv, list) and argv and argv[0] == "check":
        from common.training.check import check_main

        report = check_main(cli_main, argv[1:], InpaintCheck())
        if args is None:  # the command line: exit 1 when a fail would stop the run
            raise SystemExit(report.exit_status)
        return report
    description = (
        "Generative inpainting with Attentive Normalization. Subcommands: fit, validate, test, predict (below), "
        "check (the arguments of fit: a preflight of the run, docs/check.md), "
        "evaluate (score a folder of results, or compare two: python -m an_inpaint evaluate --help), study (arms x "
        "seeds trained with the same step budget and compared: python -m an_inpaint study --help), baseline (OpenCV's "
        "classical inpainting of a folder: python -m an_inpaint baseline --help) and prepare (Paris StreetView resized "
        "once for streaming: python -m an_inpaint prepare --help)."
    )
    return ANInpaintCLI(
        ANInpaint, args=args, run=run, subclass_mode_data=True, parser_kwargs={"description": description}
    )


if __name__ == "__main__":
    cli_main()
