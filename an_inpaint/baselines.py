"""Classical inpainting baselines: OpenCV's ``cv2.inpaint`` (Telea; Navier-Stokes) and harmonic filling.

* ``"telea"``: A. Telea, "An Image Inpainting Technique Based on the Fast Marching Method", J. Graphics Tools 2004
  (``cv2.INPAINT_TELEA``).
* ``"ns"``: M. Bertalmio, A. L. Bertozzi, G. Sapiro, "Navier-Stokes, Fluid Dynamics, and Image and Video
  Inpainting", CVPR 2001 (``cv2.INPAINT_NS``).
* ``"harmonic"``: the harmonic (membrane) interpolation of :func:`an_inpaint.fill.harmonic_fill`, the starting point
  of ``InpaintGenerator(hole_fill="harmonic")``.

OpenCV's methods run with ``inpaintRadius = 3`` by default, on 8-bit RGB images; the hole's pixels are set to 0
before the call, so no method sees what it has to fill, and every result is composited (known pixels are the
input's, exactly) and 8-bit.
``python -m an_inpaint baseline --method telea|ns`` writes the results for a folder of images and masks, so that
``python -m an_inpaint evaluate`` scores them with the same code as any other method.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from an_inpaint.fill import harmonic_fill

__all__ = ["METHODS", "classical_inpaint", "classical_inpaint_batch", "inpaint_folder"]

_OPENCV = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
METHODS: tuple[str, ...] = ("telea", "ns", "harmonic")


def classical_inpaint(image: np.ndarray, hole: np.ndarray, method: str = "telea", radius: float = 3.0) -> np.ndarray:
    """Inpaint one image with OpenCV.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        hole: ``(H, W)`` bool or {0, 1}, True / 1 = missing.
        method: ``"telea"``, ``"ns"`` or ``"harmonic"``.
        radius: OpenCV's ``inpaintRadius`` (pixels; unused by ``"harmonic"``).

    Returns:
        ``(H, W, 3)`` uint8, equal to ``image`` outside the hole.

    Raises:
        ValueError: Unknown method, wrong dtype or shape.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if hole.shape != image.shape[:2]:
        raise ValueError(f"hole of shape {hole.shape} does not match the image's {image.shape[:2]}")
    hole = hole.astype(bool)
    blanked = np.where(hole[..., None], 0, image).astype(np.uint8)
    if method == "harmonic":
        pixels = torch.from_numpy(blanked).permute(2, 0, 1)[None].double()
        filled = harmonic_fill(pixels, torch.from_numpy(hole)[None, None].double())
        out = filled[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    else:
        out = cv2.inpaint(blanked, hole.astype(np.uint8) * 255, radius, _OPENCV[method])
    return np.where(hole[..., None], out, image).astype(np.uint8)


def classical_inpaint_batch(image: Tensor, mask: Tensor, method: str = "telea", radius: float = 3.0) -> Tensor:
    """:func:`classical_inpaint` of a batch ``(B, 3, H, W)`` in [-1, 1] (quantised to 8 bits) with masks
    ``(B, 1, H, W)`` (1 = missing); returns ``(B, 3, H, W)`` in [-1, 1] on the input's device and dtype."""
    pixels = ((image.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    holes = mask.detach().cpu()[:, 0] > 0.5
    out = [
        torch.from_numpy(classical_inpaint(p.permute(1, 2, 0).numpy(), h.numpy(), method, radius)).permute(2, 0, 1)
        for p, h in zip(pixels, holes, strict=True)
    ]
    return (torch.stack(out).float() / 127.5 - 1.0).to(device=image.device, dtype=image.dtype)


def inpaint_folder(
    image_dir: str | Path, mask_dir: str | Path, output_dir: str | Path, method: str = "telea", radius: float = 3.0
) -> list[Path]:
    """Inpaint every image of ``image_dir`` with the same-named mask of ``mask_dir`` (white = hole), writing PNG
    files of the same names to ``output_dir``; returns the written paths."""
    from common.data.inpainting_datasets import PredictFolderDataset

    dataset = PredictFolderDataset(image_dir, mask_dir)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(len(dataset)):
        sample = dataset[i]
        pixels = ((sample["image"] + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        result = classical_inpaint(pixels, sample["mask"][0].numpy() > 0.5, method, radius)
        path = output_dir / f"{sample['name']}.png"
        cv2.imwrite(str(path), result[..., ::-1])
        written.append(path)
    return written
