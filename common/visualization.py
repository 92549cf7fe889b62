"""Pictures: image grids (plain or with labelled columns), AN layout maps (paper Figure 5 style) and PNG output.
Plain tensors and PIL only."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

__all__ = ["image_grid", "labelled_grid", "layout_colormap", "layout_panel", "save_png", "to_unit"]

# 32 well-separated colours (tab20 + extras), RGB in [0, 1]; entity i gets colour i % 32.
_PALETTE = torch.tensor(
    [
        [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
        [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [174, 199, 232], [255, 187, 120],
        [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148], [247, 182, 210], [199, 199, 199],
        [219, 219, 141], [158, 218, 229], [0, 0, 128], [128, 0, 0], [0, 128, 0], [128, 128, 0],
        [0, 128, 128], [128, 0, 128], [255, 255, 0], [0, 255, 255], [255, 0, 255], [64, 64, 64],
        [255, 215, 180], [0, 0, 0],
    ],
    dtype=torch.float32,
) / 255.0  # fmt: skip


def to_unit(images: Tensor) -> Tensor:
    """Map images (any shape) from [-1, 1] to [0, 1], clamped, as float32 (detached, same shape)."""
    return ((images.detach().float() + 1.0) / 2.0).clamp(0.0, 1.0)


def image_grid(images: Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile ``(N, C, H, W)`` images in [0, 1] into one ``(3, H', W')`` image, ``nrow`` images per row.

    Single-channel images are repeated to RGB.
    """
    if images.dim() != 4:
        raise ValueError(f"image_grid expects (N, C, H, W), got shape {tuple(images.shape)}")
    images = images.detach().float().cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = torch.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for k in range(n):
        r, q = divmod(k, ncol)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top : top + h, left : left + w] = images[k]
    return grid


def labelled_grid(tiles: Tensor, labels: list[str], min_cell: int = 128, padding: int = 2) -> Tensor:
    """A grid of ``R`` rows by ``C`` columns with a label above each column.

    Args:
        tiles: ``(R, C, 3, H, W)`` images in [0, 1] (1-channel ones are repeated to RGB).
        labels: The ``C`` column labels (shortened with ``..`` when wider than a cell).
        min_cell: Each tile is enlarged (nearest neighbour, by a whole factor) until its shorter side is at least
            this many pixels, so that small images stay legible pixel for pixel.
        padding: White pixels between tiles.

    Returns:
        ``(3, H', W')`` in [0, 1], white background, black labels.

    Raises:
        ValueError: ``tiles`` not ``(R, C, 1 or 3, H, W)`` or a label count that is not ``C``.
    """
    if tiles.dim() != 5 or tiles.shape[2] not in (1, 3):
        raise ValueError(f"labelled_grid expects (rows, columns, 1 or 3, H, W), got shape {tuple(tiles.shape)}")
    rows, columns = tiles.shape[:2]
    if len(labels) != columns:
        raise ValueError(f"labelled_grid got {len(labels)} labels for {columns} columns")
    tiles = tiles.detach().float().cpu().expand(-1, -1, 3, -1, -1)
    factor = max(1, math.ceil(min_cell / min(tiles.shape[-2:])))
    cells = F.interpolate(tiles.flatten(0, 1), scale_factor=factor, mode="nearest")
    grid = image_grid(cells, nrow=columns, padding=padding)
    width, cell = grid.shape[-1], cells.shape[-1]
    font = ImageFont.load_default()
    height = int(font.getbbox("Ag")[3]) + 6
    header = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(header)
    for k, label in enumerate(labels):
        text = str(label)
        while len(text) > 2 and font.getlength(text) > cell - 4:
            text = text[:-3] + ".."
        left = padding + k * (cell + padding) + (cell - font.getlength(text)) / 2
        draw.text((left, 3), text, fill="black", font=font)
    band = torch.frombuffer(bytearray(header.tobytes()), dtype=torch.uint8).view(height, width, 3)
    band = band.permute(2, 0, 1).float() / 255.0
    return torch.cat([band, grid], dim=1)


def _stretch(maps: Tensor) -> Tensor:
    """Min-max normalise each ``(..., H, W)`` map to [0, 1] (constant maps become 0)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    high = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - low) / (high - low).clamp_min(1e-8)


def layout_colormap(layout: Tensor) -> Tensor:
    """Colour each pixel by its most likely entity: ``(B, n, H, W) -> (B, 3, H, W)``.

    Brightness follows the winning probability, contrast-stretched per sample to ``[0.25, 1]`` (early in training
    layouts are close to uniform, and absolute probabilities would render everything dark).
    """
    layout = layout.detach().float().cpu()
    prob, idx = layout.max(dim=1)  # (B, H, W)
    colours = _PALETTE[idx % len(_PALETTE)].permute(0, 3, 1, 2)  # (B, 3, H, W)
    bright = 0.25 + 0.75 * _stretch(prob)
    return colours * bright.unsqueeze(1)


def layout_panel(
    images: Tensor, layout: Tensor, max_entities: int = 6, max_rows: int = 8, min_cell: int = 96
) -> Tensor:
    """One row per sample: image | argmax layout colour map | the soft maps of the most used entities, each column
    labelled (:func:`labelled_grid`).

    Args:
        images: ``(B, 3, H, W)`` in [0, 1].
        layout: ``(B, n, h, w)`` soft layout of an AN layer (upsampled, nearest, to the image size).
        max_entities: how many per-entity maps to show; the entities with the largest total mass over the
            shown samples are chosen, in decreasing order, the same for every row.
        max_rows: at most this many samples.
        min_cell: tiles are enlarged (nearest, whole factors) to at least this many pixels.

    Returns:
        ``(3, H', W')`` image in [0, 1]; per-entity maps are grey, each min-max normalised (brighter = more of
        that entity), so structure shows even while the layout is still close to uniform.
    """
    if images.dim() != 4 or layout.dim() != 4 or images.shape[0] != layout.shape[0]:
        raise ValueError(
            f"layout_panel expects images (B, 3, H, W) and layout (B, n, h, w) with the same B, got "
            f"{tuple(images.shape)} and {tuple(layout.shape)}"
        )
    images = images[:max_rows].detach().float().cpu()
    layout = layout[:max_rows].detach().float().cpu()
    size = images.shape[-2:]
    layout = F.interpolate(layout, size=size, mode="nearest")
    order = layout.sum(dim=(0, 2, 3)).argsort(descending=True)[:max_entities]
    maps = _stretch(layout[:, order])  # (B, k, H, W), each map min-max normalised
    tiles = [images, layout_colormap(layout)] + [maps[:, j : j + 1].expand(-1, 3, -1, -1) for j in range(len(order))]
    labels = ["image", "layout (argmax)"] + [f"entity {int(e)}" for e in order]
    return labelled_grid(torch.stack(tiles, dim=1), labels, min_cell=min_cell)


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write a ``(3, H, W)`` or ``(1, H, W)`` image in [0, 1] as an 8-bit PNG; creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = image.detach().float().cpu().clamp(0.0, 1.0)
    if image.dim() != 3:
        raise ValueError(f"save_png expects (C, H, W), got shape {tuple(image.shape)}")
    array = (image * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
    return path
