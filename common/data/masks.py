"""Inpainting masks: generators, a folder of mask files, and validation.

Convention (AN paper, Wang et al. CVPR 2020, Section 4): **1 = missing (hole), 0 = known**. Every mask is a float32
tensor of shape ``(1, H, W)`` with values in {0, 1}.

Generators are small callable classes, so that configs pick them with ``class_path``; each is called as
``masks(height, width, generator)`` with an optional ``torch.Generator`` (seeded: deterministic masks).

* :class:`RandomRectangleMasks`: DeepFill v1's random boxes (Yu et al., CVPR 2018; ``random_bbox`` +
  ``bbox2mask``): a box of ``max_size`` of the image side at a random position inside the margins, whose opposite
  sides both shrink by a random amount in ``[0, max_delta / 2]`` of the side (128x128 boxes in 256x256 images,
  each side shrunk by 0-16 px, ``max_delta`` 32 px).
* :class:`CenterSquareMasks`: the fixed centre square of the evaluation protocol (128x128 at (64, 64) in 256x256).
* :class:`FreeFormMasks`: DeepFill v2's free-form brush strokes (Yu et al., ICCV 2019, "Free-Form Image Inpainting
  with Gated Convolution": random walks of thick lines with round joints, random flips), with lengths and widths
  given as fractions of the image so that the defaults reproduce the 256x256 settings at any size.
* A folder of mask files: :class:`common.data.mask_files.FolderMasks`.
* Mixtures of these (several generators at once, area-binned evaluation masks): :mod:`common.data.mask_mixtures`.

Sources: DeepFill v1's ``random_bbox`` / ``bbox2mask`` and DeepFill v2's ``brush_stroke_mask`` (the authors' public
code, github.com/JiahuiYu/generative_inpainting, ``inpaint_ops.py``) and the AN authors' inpainting test script
(github.com/dvlab-research/AttenNorm, ``inpaint-attnorm/test.py``: with ``random_mask`` off, a centre hole of
``mask_shapes``, 128x128 in 256x256).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

__all__ = [
    "CenterSquareMasks",
    "FreeFormMasks",
    "MaskGenerator",
    "RandomRectangleMasks",
    "fixed_boxes",
    "mask_bbox",
    "mask_bboxes",
    "validate_mask",
]


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[low, high]`` (both inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator).item())


class MaskGenerator(ABC):
    """Base class of the mask generators: ``masks(height, width, generator) -> (1, H, W)`` float32, 1 = missing."""

    @abstractmethod
    def __call__(self, height: int, width: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw one mask of size ``height`` x ``width`` (a seeded ``generator`` makes it deterministic)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class RandomRectangleMasks(MaskGenerator):
    """DeepFill v1's random rectangular holes (``random_bbox`` + ``bbox2mask``).

    A box of ``round(max_size * H)`` x ``round(max_size * W)`` is placed uniformly at random inside the margins; its
    top and bottom sides then both move inwards by the same random ``dh`` in ``[0, floor(max_delta * H) // 2]``
    pixels, and its left and right sides by ``dw`` (drawn independently). With the defaults at 256x256: a 128x128
    box, hole sides between 96 and 128 pixels.

    Args:
        max_size: Box side as a fraction of the image side (DeepFill: 128 / 256).
        max_delta: Largest total shrink of a side as a fraction of the image side (DeepFill: 32 / 256).
        margin: Distance kept between the box and the image border, as a fraction of the side (DeepFill: 0).
    """

    def __init__(self, max_size: float = 0.5, max_delta: float = 0.125, margin: float = 0.0) -> None:
        if not 0.0 < max_size <= 1.0:
            raise ValueError(f"max_size must be in (0, 1], got {max_size}")
        if not 0.0 <= max_delta < max_size:
            raise ValueError(f"max_delta must be in [0, max_size), got {max_delta}")
        if not margin >= 0.0 or 2 * margin + max_size > 1.0:
            raise ValueError(f"margin must be >= 0 with 2 * margin + max_size <= 1, got margin={margin}")
        self.max_size = max_size
        self.max_delta = max_delta
        self.margin = margin

    def box(self, height: int, width: int, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
        """The hole as ``(top, left, height, width)`` (the mask of :meth:`__call__` is this box filled with 1)."""
        box_h, box_w = round(self.max_size * height), round(self.max_size * width)
        margin_h, margin_w = round(self.margin * height), round(self.margin * width)
        if box_h < 1 or box_w < 1 or box_h + 2 * margin_h > height or box_w + 2 * margin_w > width:
            raise ValueError(f"image of size {height}x{width} is too small for {self!r}")
        top = _randint(margin_h, height - margin_h - box_h, generator)
        left = _randint(margin_w, width - margin_w - box_w, generator)
        delta_h = _randint(0, min(int(self.max_delta * height) // 2, (box_h - 1) // 2), generator)
        delta_w = _randint(0, min(int(self.max_delta * width) // 2, (box_w - 1) // 2), generator)
        return top + delta_h, left + delta_w, box_h - 2 * delta_h, box_w - 2 * delta_w

    def __call__(self, height: int, width: int, generator: torch.Generator | None = None) -> Tensor:
        top, left, h, w = self.box(height, width, generator)
        mask = torch.zeros(1, height, width)
        mask[:, top : top + h, left : left + w] = 1.0
        return mask


class CenterSquareMasks(MaskGenerator):
    """A fixed centre square hole (the evaluation protocol: 128x128 at (64, 64) in 256x256 images).

    Args:
        size: Side of the square as a fraction of the image's shorter side.
    """

    def __init__(self, size: float = 0.5) -> None:
        if not 0.0 < size <= 1.0:
            raise ValueError(f"size must be in (0, 1], got {size}")
        self.size = size

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The hole as ``(top, left, height, width)``."""
        side = max(1, round(self.size * min(height, width)))
        return (height - side) // 2, (width - side) // 2, side, side

    def __call__(self, height: int, width: int, generator: torch.Generator | None = None) -> Tensor:
        top, left, h, w = self.box(height, width)
        mask = torch.zeros(1, height, width)
        mask[:, top : top + h, left : left + w] = 1.0
        return mask


class FreeFormMasks(MaskGenerator):
    """DeepFill v2's free-form brush strokes (``brush_stroke_mask`` of Yu et al., ICCV 2019), size-relative.

    Each of 1 to ``max_strokes`` strokes starts at a random pixel and walks ``min_vertex`` to ``max_vertex``
    segments. Segment directions alternate around ``mean_angle`` (+/- up to ``angle_range``); segment lengths are
    normal with mean ``max_length / 2`` and std ``max_length / 4`` (of the image diagonal), clipped to
    ``[0, max_length]``; vertices are clipped to the image. The stroke is drawn as a thick line of a random width in
    ``[min_brush_width, max_brush_width]`` (fractions of the shorter side) with a disc at every vertex. The mask is
    then flipped left-right and top-bottom with probability 1/2 each. The defaults are DeepFill v2's settings at
    256x256 (vertices 4-12, widths 12-40 px, mean segment length diagonal / 8).

    Args:
        max_vertex: Largest number of segments per stroke.
        max_length: Largest segment length as a fraction of the image diagonal.
        max_brush_width: Largest stroke width as a fraction of the shorter image side.
        max_strokes: Largest number of strokes.
        min_vertex: Smallest number of segments per stroke.
        min_brush_width: Smallest stroke width as a fraction of the shorter image side.
        mean_angle: Mean turning angle in radians.
        angle_range: Largest deviation of the angle bounds from ``mean_angle``, in radians.
    """

    def __init__(
        self,
        max_vertex: int = 12,
        max_length: float = 0.25,
        max_brush_width: float = 40 / 256,
        max_strokes: int = 3,
        min_vertex: int = 4,
        min_brush_width: float = 12 / 256,
        mean_angle: float = 2 * math.pi / 5,
        angle_range: float = 2 * math.pi / 15,
    ) -> None:
        if not 1 <= min_vertex <= max_vertex:
            raise ValueError(f"need 1 <= min_vertex <= max_vertex, got {min_vertex} and {max_vertex}")
        if max_strokes < 1:
            raise ValueError(f"max_strokes must be >= 1, got {max_strokes}")
        if not 0.0 < min_brush_width <= max_brush_width:
            raise ValueError(
                f"need 0 < min_brush_width <= max_brush_width, got {min_brush_width} and {max_brush_width}"
            )
        if max_length <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.max_vertex = max_vertex
        self.max_length = max_length
        self.max_brush_width = max_brush_width
        self.max_strokes = max_strokes
        self.min_vertex = min_vertex
        self.min_brush_width = min_brush_width
        self.mean_angle = mean_angle
        self.angle_range = angle_range

    def __call__(self, height: int, width: int, generator: torch.Generator | None = None) -> Tensor:
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        mean_radius = self.max_length * math.hypot(height, width) / 2
        short = min(height, width)
        for _ in range(_randint(1, self.max_strokes, generator)):
            num_vertex = _randint(self.min_vertex, self.max_vertex, generator)
            angle_min = self.mean_angle - _uniform(0.0, self.angle_range, generator)
            angle_max = self.mean_angle + _uniform(0.0, self.angle_range, generator)
            brush = max(1, round(short * _uniform(self.min_brush_width, self.max_brush_width, generator)))
            x, y = _randint(0, width - 1, generator), _randint(0, height - 1, generator)
            vertices = [(x, y)]
            for i in range(num_vertex):
                angle = _uniform(angle_min, angle_max, generator)
                if i % 2 == 0:
                    angle = 2 * math.pi - angle
                radius = mean_radius + mean_radius / 2 * float(torch.randn((), generator=generator).item())
                radius = min(max(radius, 0.0), 2 * mean_radius)
                x = int(min(max(x + radius * math.cos(angle), 0), width - 1))
                y = int(min(max(y + radius * math.sin(angle), 0), height - 1))
                vertices.append((x, y))
            draw.line(vertices, fill=255, width=brush)
            r = brush / 2
            for vx, vy in vertices:
                draw.ellipse((vx - r, vy - r, vx + r, vy + r), fill=255)
        mask = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0).unsqueeze(0)
        if float(torch.rand((), generator=generator)) < 0.5:
            mask = mask.flip(-1)
        if float(torch.rand((), generator=generator)) < 0.5:
            mask = mask.flip(-2)
        return (mask > 0.5).float().contiguous()


#: How mask files are read (:class:`FolderMasks`); quoted by its errors.
def mask_bbox(mask: Tensor) -> tuple[int, int, int, int]:
    """Bounding box ``(top, left, height, width)`` of the hole (non-zero pixels) of one mask.

    Exact for rectangular masks. Accepts ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)``.

    Raises:
        ValueError: The mask has no hole, or a shape other than the above.
    """
    if mask.dim() not in (2, 3, 4) or (mask.dim() > 2 and math.prod(mask.shape[:-2]) != 1):
        raise ValueError(f"mask_bbox expects one mask of shape (H, W), (1, H, W) or (1, 1, H, W), got {mask.shape}")
    hole = mask.reshape(mask.shape[-2:]) != 0
    rows = torch.nonzero(hole.any(dim=1)).flatten()
    cols = torch.nonzero(hole.any(dim=0)).flatten()
    if rows.numel() == 0:
        raise ValueError("mask_bbox: the mask has no hole (all pixels known)")
    top, bottom = int(rows[0]), int(rows[-1])
    left, right = int(cols[0]), int(cols[-1])
    return top, left, bottom - top + 1, right - left + 1


def mask_bboxes(masks: Tensor) -> Tensor:
    """Hole bounding boxes of a batch ``(B, 1, H, W)`` as a ``(B, 4)`` long tensor of ``(top, left, height, width)``.

    Raises:
        ValueError: A mask has no hole, or ``masks`` is not ``(B, 1, H, W)``.
    """
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(f"mask_bboxes expects masks of shape (B, 1, H, W), got {tuple(masks.shape)}")
    boxes = []
    for i, m in enumerate(masks):
        try:
            boxes.append(mask_bbox(m))
        except ValueError as err:
            raise ValueError(f"sample {i}: {err}") from err
    return torch.tensor(boxes, dtype=torch.long, device=masks.device).view(-1, 4)


def fixed_boxes(mask: Tensor, height: int, width: int) -> Tensor:
    """DeepFill v1's fixed-size box around each sample's hole: ``(B, 2)`` long tensor of ``(top, left)``.

    DeepFill v1 draws a ``height`` x ``width`` box (128x128 at 256x256), then shrinks the hole symmetrically inside
    it (``bbox2mask``); its spatially discounted L1 and its local critic both work on that box, hole plus 0-16 px of
    known context. Here the box is recovered from the mask alone: it is centred on the hole's bounding box (the
    top-left corner rounded down) and moved inside the image. For DeepFill's random rectangles this is exactly the
    box the hole was drawn in.

    Args:
        mask: ``(B, 1, H, W)``, 1 = missing.
        height: Box height in pixels.
        width: Box width in pixels.

    Raises:
        ValueError: A mask has no hole, the box is larger than the image, or a hole's bounding box does not fit in
            the box (free-form holes: use a hole-based discount or a mask-pooled critic instead).
    """
    img_h, img_w = mask.shape[-2:]
    if height > img_h or width > img_w:
        raise ValueError(f"a {height}x{width} box does not fit in {img_h}x{img_w} images")
    boxes = mask_bboxes(mask)
    too_big = torch.nonzero((boxes[:, 2] > height) | (boxes[:, 3] > width)).flatten().tolist()
    if too_big:
        i = too_big[0]
        raise ValueError(
            f"the hole of sample {i} spans {int(boxes[i, 2])}x{int(boxes[i, 3])} pixels, more than the fixed "
            f"{height}x{width} box of DeepFill v1's rectangular holes; for larger or free-form holes use the "
            "hole-based discount (discount='hole') and a resizing or mask-pooled local critic"
        )
    top = (boxes[:, 0] + (boxes[:, 2] - height).div(2, rounding_mode="floor")).clamp(0, img_h - height)
    left = (boxes[:, 1] + (boxes[:, 3] - width).div(2, rounding_mode="floor")).clamp(0, img_w - width)
    return torch.stack([top, left], dim=1)


def validate_mask(mask: Tensor, image: Tensor, allow_empty: bool = False, allow_full: bool = False) -> Tensor:
    """Check that ``mask`` is a binary hole mask (1 = missing) for ``image`` and return it as float.

    Args:
        mask: ``(1, H, W)`` for an image ``(C, H, W)``, or ``(B, 1, H, W)`` for a batch ``(B, C, H, W)``.
        image: The image(s) the mask belongs to.
        allow_empty: Accept masks without any missing pixel.
        allow_full: Accept masks whose every pixel is missing.

    Returns:
        The mask as a floating-point tensor (float32 unless it already was floating point).

    Raises:
        ValueError: Wrong number of dimensions or channels, a size or batch size different from the image's,
            values other than 0 and 1, or an all-known / all-missing mask when not allowed.
    """
    if image.dim() not in (3, 4):
        raise ValueError(f"image must be (C, H, W) or (B, C, H, W), got shape {tuple(image.shape)}")
    if mask.dim() != image.dim() or mask.shape[-3] != 1:
        expected = "(1, H, W)" if image.dim() == 3 else "(B, 1, H, W)"
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not fit image of shape {tuple(image.shape)}: expected {expected}"
        )
    if mask.shape[-2:] != image.shape[-2:]:
        mh, mw = mask.shape[-2:]
        ih, iw = image.shape[-2:]
        raise ValueError(f"mask of size {mh}x{mw} does not match image of size {ih}x{iw}")
    if image.dim() == 4 and mask.shape[0] != image.shape[0]:
        raise ValueError(f"mask batch size {mask.shape[0]} does not match image batch size {image.shape[0]}")
    mask = mask if mask.is_floating_point() else mask.float()
    if not torch.all((mask == 0) | (mask == 1)):
        bad = mask[(mask != 0) & (mask != 1)]
        raise ValueError(
            f"mask must be binary (1 = missing, 0 = known), found {bad.numel()} other value(s), e.g. {bad[0].item():g}"
        )
    per_sample = mask.reshape(-1 if mask.dim() == 4 else 1, mask.shape[-2] * mask.shape[-1])
    holes = per_sample.sum(dim=1)
    label = (lambda i: f" (sample {i})") if mask.dim() == 4 else (lambda i: "")
    for i, count in enumerate(holes.tolist()):
        if not allow_empty and count == 0:
            raise ValueError(f"mask has no missing pixel{label(i)}: nothing to inpaint (1 = missing, 0 = known)")
        if not allow_full and count == per_sample.shape[1]:
            raise ValueError(f"mask is all missing{label(i)}: no known pixel to inpaint from (1 = missing, 0 = known)")
    return mask
