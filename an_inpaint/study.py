"""``python -m an_inpaint study``: arms x seeds trained with the same step budget and data, evaluated alike, compared.

The runs themselves (one ``fit`` subprocess per arm and seed, resumable) are :mod:`common.training.study`'s. After each
fit, this module inpaints the test split with the run's final checkpoint (``predict --config <run>/config.yaml
--ckpt_path <run>/checkpoints/last.ckpt --data.init_args.predict_split test``, written to
``OUT/<arm>/seed<s>/predictions``) and scores it with :func:`an_inpaint.evaluation.score_folders` against
``OUT/reference`` (the ground truth and holes of the test split, written by the first run; every later run's must be
identical, else the arms were not evaluated on the same data and the study stops). OpenCV's Telea and Navier-Stokes
and the harmonic fill inpaint the same references once (``OUT/baselines/<method>``, no seeds).

Results: ``OUT/study.md`` (the tables, also printed) and ``OUT/study.json`` (everything, per seed) from
:func:`common.training.study_summary.summarize`: per method the mean of PSNR, SSIM, MAE and hole PSNR with a Student-t
interval over seeds, per pair of arms and per arm against Telea the paired difference of hole PSNR and SSIM with a
two-level bootstrap interval and the images better / worse (:data:`PAIR_METRICS`); and ``OUT/study.png``: the first
test images (rows) as input with the hole, Telea, Navier-Stokes, every arm (first seed) and the ground truth
(columns).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ArgumentParser

from an_inpaint.baselines import METHODS, inpaint_folder
from an_inpaint.evaluation import METRICS, score_folders, write_json
from common.data.images import list_images, load_rgb
from common.training.runs import RunFolder
from common.training.study import StudyError, StudyRunner, Unit, add_study_arguments, spec_from_config
from common.training.study_summary import format_summary, summarize
from common.visualization import labelled_grid, save_png

__all__ = [
    "PAIR_METRICS",
    "ROW_METRICS",
    "check_same_reference",
    "predict_and_score",
    "score_baselines",
    "study_main",
    "study_picture",
]

#: The metrics of the per-method table and of the pairs. Not PSNR in the pairs: both results are composited over the
#: same holes, so the whole-image MSE is the hole MSE times the same area fraction and the PSNR difference equals the
#: hole-PSNR difference, image by image.
ROW_METRICS = ("psnr", "ssim", "mae", "psnr_hole")
PAIR_METRICS = ("psnr_hole", "ssim")
#: The classical method every arm is paired with, and those shown in the picture.
REFERENCE_METHOD = "telea"
PICTURE_METHODS = ("telea", "ns")


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(load_rgb(path))


def check_same_reference(candidate: Path, reference: Path, what: str) -> None:
    """Raise :class:`common.training.study.StudyError` unless ``candidate`` holds the same ``gt`` and ``masks``
    images (names and pixels) as ``reference``."""
    for sub in ("gt", "masks"):
        have = {p.stem: p for p in list_images(candidate / sub)}
        want = {p.stem: p for p in list_images(reference / sub)}
        if set(have) != set(want):
            raise StudyError(
                f"{what} inpainted other test images than the study's reference {reference / sub} "
                f"({len(have)} vs {len(want)} images, e.g. {sorted(set(have) ^ set(want))[:3]}): every arm must be "
                "evaluated on the same data (same data section in the arms' configs)"
            )
        differ = [stem for stem in sorted(want) if not np.array_equal(_pixels(have[stem]), _pixels(want[stem]))]
        if differ:
            raise StudyError(
                f"{what}: {len(differ)} {'ground-truth image' if sub == 'gt' else 'mask'}(s) of the test split differ "
                f"from the study's reference {reference / sub} (e.g. {differ[0]}): every arm must be evaluated on the "
                "same images and holes (same data section and test masks in the arms' configs)"
            )


def predict_and_score(runner: StudyRunner, unit: Unit, run: RunFolder) -> dict:
    """Inpaint the test split with ``run``'s ``last.ckpt`` into ``<unit>/predictions`` and score it against the study's
    reference (module docstring); returns :func:`an_inpaint.evaluation.score_folders`' result."""
    predictions, written = unit.folder / "predictions", unit.folder / "reference_check"
    for folder in (predictions, written):
        shutil.rmtree(folder, ignore_errors=True)
    runner.run_task(
        unit,
        "predict",
        ["predict", f"--config={run.config}", f"--ckpt_path={run.last_checkpoint}"]
        + ["--data.init_args.predict_split=test", f"--predict_writer.output_dir={predictions}"]
        + [f"--predict_writer.reference_dir={written}", "--trainer.logger=false"],
    )
    reference = Path(runner.spec.out_dir) / "reference"
    if reference.is_dir():
        check_same_reference(written, reference, unit.name)
        shutil.rmtree(written)
    else:
        written.rename(reference)
    return score_folders(str(predictions), str(reference / "gt"), mask_dir=str(reference / "masks"), progress=False)


def score_baselines(out_dir: Path) -> dict[str, dict]:
    """Telea, Navier-Stokes and harmonic fill of ``OUT/reference`` in ``OUT/baselines/<method>``, scored (once:
    ``scores.json`` is reused); returns ``{method: scores}``."""
    reference, results = Path(out_dir) / "reference", {}
    for method in METHODS:
        folder = Path(out_dir) / "baselines" / method
        scores = folder / "scores.json"
        if not scores.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            inpaint_folder(reference / "gt", reference / "masks", folder / "images", method)
            result = score_folders(
                str(folder / "images"), str(reference / "gt"), mask_dir=str(reference / "masks"), progress=False
            )
            write_json(result, scores)
        results[method] = json.loads(scores.read_text())
    return results


def _unit_tensor(path: Path) -> torch.Tensor:
    return torch.from_numpy(_pixels(path).astype(np.float32) / 255.0).permute(2, 0, 1)


def study_picture(out_dir: Path, arms: dict[str, Path], count: int = 6, min_cell: int = 128) -> Path:
    """``OUT/study.png``: the first ``count`` test images (by name), one per row; columns: the input with its hole
    (white), Telea, Navier-Stokes, each arm's predictions (``{label: folder}``) and the ground truth."""
    out_dir = Path(out_dir)
    reference = out_dir / "reference"
    stems = sorted(p.stem for p in list_images(reference / "gt"))[:count]
    columns = {m: out_dir / "baselines" / m / "images" for m in PICTURE_METHODS} | dict(arms)
    rows = []
    for stem in stems:
        truth = _unit_tensor(reference / "gt" / f"{stem}.png")
        hole = _unit_tensor(reference / "masks" / f"{stem}.png")[:1] > 0.5
        tiles = [torch.where(hole, torch.ones_like(truth), truth)]
        tiles += [_unit_tensor(folder / f"{stem}.png") for folder in columns.values()]
        rows.append(torch.stack([*tiles, truth]))
    labels = ["input (hole white)", *columns, "ground truth"]
    return save_png(labelled_grid(torch.stack(rows), labels, min_cell=min_cell), out_dir / "study.png")


def study_main(args: list[str] | None = None) -> dict:
    """``study``: train and evaluate every arm and seed (resumable), then write and print the comparison; returns
    the contents of ``OUT/study.json``."""
    parser = ArgumentParser(
        prog="python -m an_inpaint study",
        description="Train K arms (lists of config files) x S seeds with the same --max_steps, inpaint the test split "
        "with each final checkpoint and score it like `evaluate`; then per arm the mean with a t interval over seeds "
        "and per pair of arms (and each arm vs OpenCV Telea) the paired per-image difference with a bootstrap interval "
        "and the images better / worse. Writes OUT/study.md, OUT/study.json, OUT/study.png; run it again to resume.",
    )
    add_study_arguments(parser)
    parser.add_argument("--picture_images", type=int, default=6, help="test images (rows) in OUT/study.png")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples of each paired difference")
    parser.add_argument("--bootstrap_seed", type=int, default=0, help="seed of the bootstrap's random generator")
    parser.add_argument("--confidence", type=float, default=0.95, help="level of every interval")
    cfg = parser.parse_args(args)
    if cfg.picture_images < 1:
        raise ValueError(f"--picture_images must be >= 1, got {cfg.picture_images}")
    spec = spec_from_config("an_inpaint", cfg)
    runner = StudyRunner(spec, quiet=cfg.quiet)
    runner.say(
        f"study of {len(spec.arms)} arm(s) x {len(spec.seeds)} seed(s), {spec.max_steps} steps each, in {spec.out_dir}"
    )
    results = runner.run(lambda unit, run: predict_and_score(runner, unit, run))
    runner.say("classical baselines (Telea, Navier-Stokes, harmonic) on the same images")
    baselines = score_baselines(spec.out_dir)
    by_unit = {(unit.arm, unit.seed): scores for unit, scores in results.items()}
    arms = {arm: [by_unit[arm, seed]["per_image"] for seed in spec.seeds] for arm in spec.arms}
    names = list(spec.arms)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]] + [(a, REFERENCE_METHOD) for a in names]
    summary = summarize(
        arms,
        {key: METRICS[key] for key in ROW_METRICS},
        pairs,
        PAIR_METRICS,
        references={method: scores["per_image"] for method, scores in baselines.items()},
        seeds=spec.seeds,
        resamples=cfg.resamples,
        confidence=cfg.confidence,
        bootstrap_seed=cfg.bootstrap_seed,
    )
    table = format_summary(summary, METRICS)
    first = spec.seeds[0]
    picture = study_picture(
        spec.out_dir,
        {f"{arm} (seed {first})": spec.out_dir / arm / f"seed{first}" / "predictions" for arm in names},
        count=cfg.picture_images,
    )
    protocol = {k: v for k, v in next(iter(results.values()))["protocol"].items() if k not in ("pred_dir", "gt_dir")}
    study = {"spec": spec.as_dict(), "summary": summary, "protocol": protocol, "picture": str(picture)}
    out = Path(spec.out_dir)
    write_json(study, out / "study.json")
    (out / "study.md").write_text(table + "\n")
    print(table, flush=True)
    runner.say(f"written {out / 'study.md'}, {out / 'study.json'}, {picture}")
    return study
