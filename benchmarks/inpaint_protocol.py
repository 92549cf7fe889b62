"""How much the evaluation protocol's choices move inpainting scores, on real photographs.

The 227x227 Paris StreetView test images are resized to 256 before scoring, and the authors' MATLAB SSIM is not
scikit-image's. This script measures both choices on the bundled photographs (no download): 2x2 crops of 227x227
from each photograph of ``common.data.inpainting_demo.DEMO_PHOTOS`` (all splits: no model is involved), resized to
256 with ``bilinear`` or ``lanczos`` (:func:`common.data.inpainting_datasets.eval_resize`), the centre 128x128 hole
filled by each classical method (:mod:`an_inpaint.baselines`), scored by :class:`common.metrics.InpaintingMetrics`
with the ``skimage`` and ``matlab`` SSIM conventions. Prints a markdown table and the differences.

    python -m benchmarks.inpaint_protocol [--methods telea ns harmonic] [--photos chelsea flower]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from an_inpaint.baselines import METHODS, classical_inpaint_batch
from common.data.inpainting_datasets import EVAL_RESIZE, eval_resize, to_tensor
from common.data.inpainting_demo import DEMO_PHOTOS, load_demo_photo
from common.data.masks import CenterSquareMasks
from common.metrics.inpainting import InpaintingMetrics
from common.metrics.ssim import SSIM_CONVENTIONS

DEFAULT_JSON = "runs/benchmarks/inpaint_protocol.json"


def crops_227(names: Sequence[str]) -> list[Image.Image]:
    """Four 227x227 crops (the corners) of each photograph resized to a short side of 454."""
    crops = []
    for name in names:
        photo = load_demo_photo(name)
        scale = 454 / min(photo.size)
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC)
        for top in (0, photo.height - 227):
            for left in (0, photo.width - 227):
                crops.append(photo.crop((left, top, left + 227, top + 227)))
    return crops


def measure(names: Sequence[str], methods: Sequence[str], size: int = 256) -> list[dict]:
    """PSNR / SSIM / MAE of each classical method on the 227 crops resized to ``size``, for each resize filter and SSIM
    convention (one row dict each).
    """
    crops = crops_227(names)
    rows = []
    for resize in EVAL_RESIZE:
        truth = torch.stack([to_tensor(eval_resize(c, size, resize)) for c in crops])
        masks = CenterSquareMasks(0.5)(size, size)[None].expand(len(crops), 1, size, size).contiguous()
        for method in methods:
            result = classical_inpaint_batch(truth, masks, method)
            for convention in SSIM_CONVENTIONS:
                metric = InpaintingMetrics(ssim_convention=convention)
                metric.update((result + 1) / 2, (truth + 1) / 2, masks)
                scores = {k: float(v) for k, v in metric.compute().items() if k in ("psnr", "ssim", "mae")}
                rows.append({"resize": resize, "method": method, "ssim_convention": convention, **scores})
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`measure` as a markdown table."""
    lines = ["| resize | method | SSIM convention | PSNR | SSIM | MAE |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['resize']} | {r['method']} | {r['ssim_convention']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
            f"{r['mae']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Command line: measure, print the table and the differences, write the JSON; returns the rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inpaint_protocol", description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--photos", nargs="+", default=[n for names in DEMO_PHOTOS.values() for n in names])
    parser.add_argument("--json", default=DEFAULT_JSON, help="output JSON file")
    args = parser.parse_args(argv)
    rows = measure(args.photos, args.methods)
    print(format_table(rows))
    key = {(r["resize"], r["method"], r["ssim_convention"]): r for r in rows}
    for method in args.methods:
        bilinear, lanczos = key[("bilinear", method, "skimage")], key[("lanczos", method, "skimage")]
        matlab = key[("bilinear", method, "matlab")]
        print(
            f"{method}: lanczos - bilinear = {lanczos['psnr'] - bilinear['psnr']:+.3f} dB PSNR, "
            f"{lanczos['ssim'] - bilinear['ssim']:+.4f} SSIM; matlab - skimage SSIM = "
            f"{matlab['ssim'] - bilinear['ssim']:+.4f}"
        )
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
