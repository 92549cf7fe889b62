"""Small synthetic data trees in the exact layouts of the paper's data sets, for running ``check`` (or anything else
that reads them) on the paper configs without ImageNet or Paris StreetView::

    python -m benchmarks.synthetic_trees OUT_DIR                      # OUT_DIR/imagenet, OUT_DIR/paris
    python -m benchmarks.synthetic_trees OUT_DIR --classes 1000 --train-per-class 4 --paris-train 324 --inception

* ImageNet's layout: ``OUT_DIR/imagenet/train/<wnid>/<wnid>_<i>.JPEG`` and
  ``OUT_DIR/imagenet/val/<wnid>/ILSVRC2012_val_<n>.JPEG`` (``--classes`` wnid folders, default 1,000: the paper
  configs name classes up to 991 for their pictures and the Table 2 intra-FID);
* Paris StreetView's: ``OUT_DIR/paris/paris_train_original/<i>_<j>.JPG`` at 936x537 and
  ``OUT_DIR/paris/paris_eval_gt/<NNN>_im.png`` at 227x227 (``configs/an_inpaint/paris256.yaml`` holds out 100
  training images for validation: give more than 100);
* with ``--inception``, when torch-fidelity's Inception weights are not cached here (a machine without network),
  ``OUT_DIR/inception-random.pth``: a weights file of the same network with random weights
  (:func:`benchmarks.eval_speed.random_inception`), which costs the same time; pass it as the evaluators'
  ``inception_weights``.

Every file is a real image (smooth random colour fields with light noise, seeded): it decodes, resizes and trains as
the real data does; its content means nothing. ``benchmarks/gpu_check.sh`` runs ``check`` of the paper configs on
these trees.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["PARIS_EVAL_SIZE", "PARIS_TRAIN_SIZE", "main", "noise_image", "write_imagenet_tree", "write_paris_tree"]

PARIS_TRAIN_SIZE = (936, 537)  # width, height of Paris StreetView's training images
PARIS_EVAL_SIZE = (227, 227)  # its evaluation images


def noise_image(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """An RGB image of ``size`` (width, height): a random colour field at 1/16 of the size, bilinearly enlarged, with
    light pixel noise (compresses like a photograph, not like white noise)."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {size}")
    coarse = rng.integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR), np.float32)
    noisy = smooth + rng.normal(0.0, 6.0, smooth.shape)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def _positive(name: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def write_imagenet_tree(
    root: str | Path,
    classes: int = 1000,
    train_per_class: int = 2,
    val_per_class: int = 1,
    size: tuple[int, int] = (160, 140),
    seed: int = 0,
) -> Path:
    """ImageNet's layout under ``root``: ``classes`` wnid folders in ``train/`` (``train_per_class`` JPEGs each) and
    in ``val/`` (``val_per_class`` each), the sizes uniform within +-20% of ``size``; returns ``root``."""
    _positive("classes", classes, 2)  # ImageNetDataModule needs two classes at least
    _positive("train_per_class", train_per_class)
    _positive("val_per_class", val_per_class)
    root, rng = Path(root), np.random.default_rng(seed)
    number = 0
    for c in range(classes):
        wnid = f"n{10000000 + c:08d}"
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                name = f"{wnid}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{number + 1:08d}.JPEG"
                number += split == "val"
                shape = (int(size[0] * rng.uniform(0.8, 1.2)), int(size[1] * rng.uniform(0.8, 1.2)))
                noise_image(rng, shape).save(folder / name, quality=90)
    return root


def write_paris_tree(root: str | Path, train: int = 120, test: int = 100, seed: int = 0) -> Path:
    """Paris StreetView's layout under ``root``: ``train`` JPGs of 936x537 in ``paris_train_original/`` and ``test``
    PNGs of 227x227 named ``NNN_im.png`` in ``paris_eval_gt/``; returns ``root``."""
    _positive("train", train)
    _positive("test", test)
    root, rng = Path(root), np.random.default_rng(seed)
    (root / "paris_train_original").mkdir(parents=True, exist_ok=True)
    (root / "paris_eval_gt").mkdir(parents=True, exist_ok=True)
    for i in range(train):
        noise_image(rng, PARIS_TRAIN_SIZE).save(root / "paris_train_original" / f"{10 + i}_{700 + i}.JPG", quality=90)
    for i in range(test):
        noise_image(rng, PARIS_EVAL_SIZE).save(root / "paris_eval_gt" / f"{i + 1:03d}_im.png")
    return root


def write_random_inception(folder: str | Path) -> Path | None:
    """``folder/inception-random.pth`` (random weights, torch-fidelity's Inception network) when the real weights
    are not in torch-fidelity's cache; None when they are."""
    from common.metrics.generation import default_inception_weights_path

    if default_inception_weights_path().is_file():
        return None
    from benchmarks.eval_speed import random_inception

    Path(folder).mkdir(parents=True, exist_ok=True)
    random_inception(folder)  # writes folder/inception-random.pth and loads it back once
    return Path(folder) / "inception-random.pth"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.synthetic_trees`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.synthetic_trees",
        description="Write small synthetic ImageNet- and Paris StreetView-layout trees of real image files.",
    )
    parser.add_argument("out_dir", type=Path, help="folder for imagenet/, paris/ (and inception-random.pth)")
    parser.add_argument("--classes", type=int, default=1000, help="ImageNet wnid folders (default: %(default)s)")
    parser.add_argument("--train-per-class", type=int, default=2, help="training JPEGs per class (%(default)s)")
    parser.add_argument("--val-per-class", type=int, default=1, help="validation JPEGs per class (%(default)s)")
    parser.add_argument("--paris-train", type=int, default=120, help="Paris training JPGs (%(default)s)")
    parser.add_argument("--paris-test", type=int, default=100, help="Paris evaluation PNGs (%(default)s)")
    parser.add_argument(
        "--inception",
        action="store_true",
        help="also write inception-random.pth when torch-fidelity's Inception weights are not cached",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the images (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Path | None]:
    """Write the trees; print and return their paths."""
    args = build_parser().parse_args(argv)
    written: dict[str, Path | None] = {
        "imagenet": write_imagenet_tree(
            args.out_dir / "imagenet", args.classes, args.train_per_class, args.val_per_class, seed=args.seed
        ),
        "paris": write_paris_tree(args.out_dir / "paris", args.paris_train, args.paris_test, seed=args.seed),
    }
    if args.inception:
        written["inception"] = write_random_inception(args.out_dir)
    for name, path in written.items():
        print(f"{name}: {path if path is not None else 'not written (the real weights are cached)'}", flush=True)
    return written


if __name__ == "__main__":
    main()
