"""Prepare a dataset once for fast streaming: ``python -m common.data.prepare imagenet|paris --root RAW --output OUT``.

Decoding full-size JPEGs and resizing them bounds the raw pipelines (ImageNet at 128 px: a 400x350 JPEG decoded
and Lanczos-resized per sample). Preparation does that deterministic part once, with the raw DataModule's own
code, and writes the result with LitData's ``optimize`` (Lightning's format for streaming from local disks or
object storage to many nodes); :mod:`common.data.prepared` reads it with the random augmentation of the raw
DataModules, drawn the same way. Layout and encodings: :mod:`common.data.streaming`.

* ``imagenet``: the splits of :class:`common.data.imagenet.ImageNetDataModule` (``train``; ``val``, which is also
  ``test``), each image's centre square Lanczos-resized to ``resolution``
  (:func:`common.data.class_datasets.square_image`); labels and wnids in the manifest.
* ``paris``: the splits of :class:`common.data.inpainting.ParisStreetViewDataModule`: ``train`` (the training
  images minus the held-out validation ones) stored whole for ``train_transform="random_crop"`` (upscaled only when
  smaller than a crop) or as the resized centre square for ``"resize"``; ``val`` and ``test`` resized with
  ``eval_resize`` (:func:`common.data.inpainting_datasets.base_image`).

``python -m an_gan prepare ...`` and ``python -m an_inpaint prepare ...`` are the same as ``imagenet`` / ``paris``.
The output is a local folder (copy it to object storage with any tool; the readers stream from URLs). The manifest is
written last: a folder without one is refused by the readers.
"""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from common.data.class_datasets import ImageFileDataset, square_image
from common.data.images import load_rgb
from common.data.inpainting_datasets import EvalResize, InpaintingDataset, base_image
from common.data.streaming import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    encode_image,
    labels_to_runs,
    litdata_version,
    stream_count,
)

__all__ = ["main", "prepare_imagenet", "prepare_paris", "write_split"]

Encoding = Literal["raw", "png", "jpeg"]


class _SampleWriter:
    """``index -> stored sample`` of a raw dataset: its deterministic preprocessing, encoded (picklable for spawn)."""

    def __init__(self, dataset: Dataset, encoding: str, jpeg_quality: int) -> None:
        self.dataset, self.encoding, self.jpeg_quality = dataset, encoding, jpeg_quality

    def __call__(self, index: int) -> dict[str, Any]:
        ds = self.dataset
        if isinstance(ds, ImageFileDataset):
            image, extra = square_image(ds.path(index), ds.resolution), {"label": int(ds.labels[index])}
        else:
            path = Path(ds.paths[index])
            image = base_image(load_rgb(path), ds.resolution, ds.transform, ds.resize, ds.crop)
            extra = {"name": path.stem}
        return {"index": int(index), "image": encode_image(image, self.encoding, self.jpeg_quality), **extra}


def write_split(
    dataset: Dataset,
    output: Path,
    encoding: str = "raw",
    jpeg_quality: int = 95,
    num_workers: int = 1,
    chunk_bytes: str = "64MB",
    start_method: str | None = None,
    verbose: bool = True,
) -> int:
    """Write the deterministic preprocessing of every sample of a raw ``dataset`` (an ``ImageFileDataset`` or an
    ``InpaintingDataset``) to ``output`` with ``litdata.optimize``, in the dataset's order; returns the number of
    samples written.

    ``start_method`` (default ``"fork"`` where available: workers start in a fraction of a second) is restored
    afterwards, since LitData sets it process-wide.
    """
    from litdata import optimize

    if start_method is None:
        start_method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    previous = multiprocessing.get_start_method(allow_none=True)
    try:
        optimize(
            _SampleWriter(dataset, encoding, jpeg_quality),
            list(range(len(dataset))),
            output_dir=str(output),
            chunk_bytes=chunk_bytes,
            num_workers=max(1, min(num_workers, len(dataset))),
            keep_data_ordered=True,  # sample i of the stream is item i of the dataset (checked on every read)
            reorder_files=False,
            mode="overwrite",
            start_method=start_method,
            verbose=verbose,
        )
    finally:
        multiprocessing.set_start_method(previous, force=True)
    written = stream_count(str(output))
    if written != len(dataset):
        raise RuntimeError(f"litdata wrote {written} samples to {output} instead of {len(dataset)}")
    return written


def _start(output: str, overwrite: bool, splits: tuple[str, ...]) -> Path:
    out = Path(output).expanduser()
    if "://" in output or output.startswith("local:"):
        raise ValueError(
            f"--output must be a local folder, got {output!r}; copy the folder to object storage afterwards (the "
            "readers stream from URLs)"
        )
    existing = [p for p in (out / MANIFEST, *(out / s for s in splits)) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds prepared data ({', '.join(p.name for p in existing)}); pass --overwrite true to "
            "replace it"
        )
    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()  # removed first: an interrupted rewrite leaves no manifest, so readers refuse it
    for split in splits:
        shutil.rmtree(out / split, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _finish(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    import json

    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "litdata_version": litdata_version()}
    manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out / MANIFEST)
    return manifest


def _write_splits(
    datasets: dict[str, Dataset], out: Path, describe: Callable[[Dataset], dict[str, Any]], **write_args
) -> dict[str, Any]:
    splits = {}
    for split, dataset in datasets.items():
        began = time.perf_counter()
        print(f"{split}: {len(dataset):,} samples -> {out / split}", flush=True)
        count = write_split(dataset, out / split, **write_args)
        print(f"{split}: {count:,} samples written in {time.perf_counter() - began:.1f} s", flush=True)
        splits[split] = {"count": count, **describe(dataset)}
    return splits


def prepare_imagenet(
    root: str,
    output: str,
    resolution: int = 128,
    val_split: str = "val",
    val_labels_file: str | None = None,
    val_synsets_file: str | None = None,
    encoding: Encoding = "raw",
    jpeg_quality: int = 95,
    num_workers: int = 4,
    chunk_bytes: str = "64MB",
    overwrite: bool = False,
    verbose: bool = True,
) -> dict[str, Any]:
    """Prepare ImageNet (ILSVRC2012 JPEG folders) for :class:`common.data.prepared.PreparedImageNetDataModule`.

    Args:
        root: ImageNet folder as :class:`~common.data.imagenet.ImageNetDataModule` reads it (``train/<wnid>/*.JPEG``
            and the validation folder).
        output: Local folder to write (``manifest.json``, ``train/``, ``val/``).
        resolution: Side of the stored square images (paper: 128).
        val_split: Name of the validation folder under ``root``.
        val_labels_file: Labels of a flat validation folder (see ``ImageNetDataModule``).
        val_synsets_file: ILSVRC2012_ID -> wnid mapping for the devkit's ground-truth file.
        encoding: ``raw`` (lossless, nothing to decode; default), ``png`` (lossless, smaller, decoded per read) or
            ``jpeg`` (lossy, smallest).
        jpeg_quality: JPEG quality of ``encoding=jpeg``.
        num_workers: Processes preparing samples.
        chunk_bytes: Size of LitData's chunk files.
        overwrite: Replace prepared data already in ``output``.
        verbose: LitData's progress bars.

    Returns:
        The manifest written.
    """
    from common.data.imagenet import ImageNetDataModule

    raw = ImageNetDataModule(
        root, resolution, batch_size=1, num_workers=0, val_labels_file=val_labels_file, hflip=False,
        val_split=val_split, val_synsets_file=val_synsets_file,
    )  # fmt: skip
    out = _start(output, overwrite, ("train", "val"))
    k = raw.num_classes

    def describe(ds: ImageFileDataset) -> dict[str, Any]:
        return {"class_counts": np.bincount(ds.labels, minlength=k).tolist(), "labels": labels_to_runs(ds.labels)}

    splits = _write_splits(
        {"train": raw.dataset("train"), "val": raw.dataset("val")}, out, describe, encoding=encoding,
        jpeg_quality=jpeg_quality, num_workers=num_workers, chunk_bytes=chunk_bytes, verbose=verbose,
    )  # fmt: skip
    return _finish(out, {
        "dataset": "imagenet",
        "settings": {"resolution": resolution},
        "encoding": encoding,
        "jpeg_quality": jpeg_quality if encoding == "jpeg" else None,
        "preprocessing": "RGB, centre square (short side), PIL Lanczos resize to resolution (square_image)",
        "source": {"root": str(raw.root.resolve()), "val_split": val_split, "val_labels_file": val_labels_file,
                   "val_synsets_file": val_synsets_file,
                   "identity": {s: raw._identity(s) for s in ("train", "val")}},
        "class_names": raw.class_names,
        "splits": splits,
        "aliases": {"test": "val"},
    })  # fmt: skip


def prepare_paris(
    root: str,
    output: str,
    resolution: int = 256,
    train_transform: Literal["random_crop", "center_crop", "resize"] = "random_crop",
    eval_resize: EvalResize = "bilinear",
    val_images: int = 100,
    val_scale: Literal["test", "square"] = "test",
    encoding: Encoding = "raw",
    jpeg_quality: int = 95,
    num_workers: int = 4,
    chunk_bytes: str = "64MB",
    overwrite: bool = False,
    verbose: bool = True,
) -> dict[str, Any]:
    """Prepare Paris StreetView for :class:`common.data.prepared.PreparedParisStreetViewDataModule`.

    Args:
        root: Folder with ``paris_train_original/`` and ``paris_eval_gt/`` (see ``ParisStreetViewDataModule``).
        output: Local folder to write (``manifest.json``, ``train/``, ``val/``, ``test/``).
        resolution: Training crop size and evaluation size (paper: 256).
        train_transform: ``random_crop`` (whole images stored; the crops stay random), ``center_crop`` or ``resize``.
        eval_resize: Filter of the evaluation images: ``bilinear`` (OpenCV, default) or ``lanczos``.
        val_images: Training images held out for validation.
        val_scale: Scale of the validation images: ``test`` or ``square`` (see ``ParisStreetViewDataModule``).
        encoding: ``raw`` (default), ``png`` or ``jpeg`` (see ``prepare_imagenet``).
        jpeg_quality: JPEG quality of ``encoding=jpeg``.
        num_workers: Processes preparing samples.
        chunk_bytes: Size of LitData's chunk files.
        overwrite: Replace prepared data already in ``output``.
        verbose: LitData's progress bars.

    Returns:
        The manifest written.
    """
    from common.data.inpainting import ParisStreetViewDataModule

    raw = ParisStreetViewDataModule(
        root, resolution, batch_size=1, num_workers=0, train_transform=train_transform, val_images=val_images,
        eval_resize=eval_resize, val_scale=val_scale,
    )  # fmt: skip
    raw.setup_splits(None)
    out = _start(output, overwrite, ("train", "val", "test"))

    def describe(ds: InpaintingDataset) -> dict[str, Any]:
        return {"first": Path(ds.paths[0]).name, "last": Path(ds.paths[-1]).name}

    splits = _write_splits(
        {"train": raw.train_set, "val": raw.val_set, "test": raw.test_set}, out, describe, encoding=encoding,
        jpeg_quality=jpeg_quality, num_workers=num_workers, chunk_bytes=chunk_bytes, verbose=verbose,
    )  # fmt: skip
    return _finish(out, {
        "dataset": "paris",
        "settings": {"resolution": resolution, "train_transform": train_transform, "eval_resize": eval_resize,
                     "val_images": val_images, "val_scale": val_scale},
        "encoding": encoding,
        "jpeg_quality": jpeg_quality if encoding == "jpeg" else None,
        "preprocessing": "train: whole image (bicubic upscale when smaller than a crop) for random_crop, else the "
                         "centre crop or square resized; val: centre crop (val_scale), test: centre square, resized "
                         "with eval_resize (base_image)",
        "source": {"root": str(Path(root).expanduser().resolve())},
        "splits": splits,
    })  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m common.data.prepare imagenet|paris --root RAW --output OUT [...]``; returns the manifest."""
    from jsonargparse import CLI

    return CLI(
        {"imagenet": prepare_imagenet, "paris": prepare_paris},
        args=sys.argv[1:] if argv is None else argv,
        as_positional=False,
        prog="python -m common.data.prepare",
        description="Prepare a dataset once (resized, LitData chunks) for the streaming DataModules of "
        "common.data.prepared.",
    )


if __name__ == "__main__":
    main()
