"""Loader throughput: the raw ImageNet JPEG pipeline against the prepared (LitData) one, side by side in one run.

Writes a synthetic tree in ImageNet's layout (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``) of real JPEG files at
ImageNet-like sizes (crops of photographs bundled with scikit-image, resized to about 425x350 on average, light noise
so that no two files are alike, JPEG quality 95: about 60 KiB per file where ImageNet's average is about 110 KiB, so
decoding costs the raw pipeline less here than on ImageNet), prepares it with ``common.data.prepare`` (once per
encoding) and times full passes of the training loader of each DataModule:
:class:`common.data.imagenet.ImageNetDataModule` (decode, centre crop, Lanczos resize, flip) and
:class:`common.data.prepared.PreparedImageNetDataModule` (read, decode the encoding, flip), with the same batch size,
workers, resolution and seed. Reported per pipeline: images per second, the median over the timed passes
(``--repeats``), each from its first batch to its end (after ``--warmup`` untimed passes, so that both read from
the page cache), the ratio to the raw
pipeline, the time to a pass's first batch (worker start-up), bytes on disk per image, and the preparation time::

    python -m benchmarks.loader                                  # 400 images, 128 px, batch 32, no workers
    python -m benchmarks.loader --images 2000 --workers 4 --encodings raw png jpeg
    python -m benchmarks.loader --json runs/benchmarks/loader.json

Target (issue "Speed"): the prepared pipeline at least 5x the raw one at 128 px.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks._args import add_shared_arguments, apply_shared

__all__ = ["TARGET_RATIO", "build_parser", "main", "measure", "write_synthetic_imagenet"]

TARGET_RATIO = 5.0  # prepared images/s over raw images/s at 128 px (issue "Speed", section 3)
_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def write_synthetic_imagenet(
    root: Path, images: int, classes: int, mean_size: tuple[int, int] = (425, 350), seed: int = 0
) -> Path:
    """``images`` training JPEGs spread over ``classes`` wnid folders (plus one validation image per class) whose
    width and height are uniform within +-20% of ``mean_size``; returns ``root``."""
    from common.data.inpainting_demo import load_demo_photo

    rng = np.random.default_rng(seed)
    photos = [np.asarray(load_demo_photo(name)) for name in _PHOTOS]
    wnids = [f"n{10000000 + c:08d}" for c in range(classes)]

    def write(path: Path) -> None:
        photo = photos[int(rng.integers(len(photos)))]
        h, w = photo.shape[:2]
        ch, cw = int(rng.integers(h // 2, h + 1)), int(rng.integers(w // 2, w + 1))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        size = tuple(int(s * rng.uniform(0.8, 1.2)) for s in mean_size)
        img = Image.fromarray(photo[top : top + ch, left : left + cw]).resize(size, Image.BILINEAR)
        noisy = np.asarray(img, np.float32) + rng.normal(0, 4, (size[1], size[0], 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=95)

    for split, count in (("train", images), ("val", classes)):
        for c, wnid in enumerate(wnids):
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
            for i in range(c, count, classes):
                write(root / split / wnid / f"{wnid}_{i}.JPEG")
    return root


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(datamodule: Any, epochs: int, warmup: int) -> dict[str, Any]:
    """Images per second of ``datamodule.train_dataloader()``: the median over ``epochs`` full passes after ``warmup``
    untimed passes (``images`` and ``seconds``: the totals of the timed passes).

    Each pass is timed from its first batch to its end (the steady state: a real epoch has thousands of batches),
    and the time to its first batch (starting the workers, opening the files or the stream) is reported apart.
    """
    loader = datamodule.train_dataloader()
    images, seconds, startup, rates = 0, 0.0, [], []
    for epoch in range(warmup + epochs):
        loader.sampler.set_epoch(epoch)
        start = time.perf_counter()
        iterator = iter(loader)
        next(iterator)
        first = time.perf_counter()
        count = sum(len(batch["label"]) for batch in iterator)
        if epoch >= warmup:
            elapsed = time.perf_counter() - first
            seconds += elapsed
            images += count
            rates.append(count / elapsed)
            startup.append(first - start)
    return {"images": images, "seconds": seconds, "images_per_second": statistics.median(rates),
            "repeats_images_per_second": rates, "first_batch_seconds": sum(startup) / len(startup)}  # fmt: skip


def _table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'pipeline':<9} {'encoding':<9} {'res':>4} {'batch':>5} {'workers':>7} {'images/s':>10} {'vs raw':>7} "
            f"{'1st batch s':>11} {'KiB/image':>9} {'prepare s':>9}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        prep = f"{r['prepare_seconds']:.1f}" if r["prepare_seconds"] is not None else "-"
        lines.append(
            f"{r['pipeline']:<9} {r['encoding']:<9} {r['resolution']:>4} {r['batch_size']:>5} {r['workers']:>7} "
            f"{r['images_per_second']:>10.1f} {r['vs_raw']:>6.2f}x {r['first_batch_seconds']:>11.3f} "
            f"{r['bytes_per_image'] / 1024:>9.1f} {prep:>9}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks.loader`` argument parser (shared flags: ``benchmarks._args``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="synthetic training JPEGs")
    parser.add_argument("--classes", type=int, default=4, help="wnid folders")
    parser.add_argument("--image-size", type=int, nargs=2, default=[425, 350], help="mean width and height")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32, help="batch size of both loaders")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of both loaders")
    parser.add_argument("--encodings", nargs="+", default=["raw"], choices=["raw", "png", "jpeg"])
    parser.add_argument("--prepare-workers", type=int, default=2, help="processes of the preparation")
    parser.add_argument("--root", type=Path, default=None, help="keep the synthetic tree here (default: a temp dir)")
    # Shared: --threads, --repeats and --warmup (full passes over the training split), --json; CPU only.
    add_shared_arguments(parser, json_default="runs/benchmarks/loader.json", repeats=2, warmup=1, device=False)
    return parser


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command line entry point; returns the result rows (the raw pipeline first)."""
    from common.data.imagenet import ImageNetDataModule
    from common.data.prepare import prepare_imagenet
    from common.data.prepared import PreparedImageNetDataModule

    parser = build_parser()
    args = parser.parse_args(argv)
    apply_shared(parser, args)
    args.json = Path(args.json)
    if args.images < args.batch:
        parser.error(f"--images {args.images} is smaller than --batch {args.batch}")
    scratch = Path(tempfile.mkdtemp(prefix="an_loader_bench_")) if args.root is None else args.root
    try:
        began = time.perf_counter()
        tree = write_synthetic_imagenet(scratch / "imagenet", args.images, args.classes, tuple(args.image_size))
        print(f"wrote {args.images} JPEGs in {time.perf_counter() - began:.1f} s: {tree}", flush=True)
        common = {"resolution": args.resolution, "batch_size": args.batch, "num_workers": args.workers}
        raw = ImageNetDataModule(str(tree), **common)
        row = {"pipeline": "raw", "encoding": "jpeg-src", "prepare_seconds": None,
               "bytes_per_image": _folder_bytes(tree / "train") / args.images}  # fmt: skip
        rows = [{**row, **measure(raw, args.repeats, args.warmup)}]
        for encoding in args.encodings:
            out = scratch / f"prepared_{encoding}"
            began = time.perf_counter()
            prepare_imagenet(str(tree), str(out), args.resolution, encoding=encoding, num_workers=args.prepare_workers,
                             overwrite=True, verbose=False)  # fmt: skip
            row = {"pipeline": "prepared", "encoding": encoding, "prepare_seconds": time.perf_counter() - began,
                   "bytes_per_image": _folder_bytes(out / "train") / args.images}  # fmt: skip
            rows.append({**row, **measure(PreparedImageNetDataModule(str(out), **common), args.repeats, args.warmup)})
    finally:
        if args.root is None:
            shutil.rmtree(scratch, ignore_errors=True)
    for row in rows:
        row.update(resolution=args.resolution, batch_size=args.batch, workers=args.workers)
        row["vs_raw"] = row["images_per_second"] / rows[0]["images_per_second"]
        row["threads"] = torch.get_num_threads()
    print()
    print(_table(rows))
    best = max(rows[1:], key=lambda r: r["vs_raw"])
    verdict = "PASS" if best["vs_raw"] >= TARGET_RATIO else "FAIL"
    print(f"prepared ({best['encoding']}) / raw: {best['vs_raw']:.1f}x (target >= {TARGET_RATIO:g}x): {verdict}")
    import litdata

    meta = {"torch": torch.__version__, "litdata": litdata.__version__, "platform": platform.platform(),
            "processor": platform.processor(), "images": args.images, "classes": args.classes,
            "image_size": args.image_size}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
