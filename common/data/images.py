"""Reading image files with clear errors, shared by every DataModule of both tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "CorruptImageError",
    "center_crop_long_side",
    "list_images",
    "load_rgb",
    "resize",
    "to_rgb",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"})


class CorruptImageError(ValueError):
    """An image file that exists but cannot be decoded."""


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Sorted image files (by :data:`IMAGE_EXTENSIONS`, case-insensitive) in ``folder``.

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a directory.
        ValueError: ``folder`` holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(
            f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {folder}"
            + (" or its sub-folders" if recursive else "")
        )
    return files


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as RGB: grey (``L``, ``I;16``, ``I``, ``F``) replicated, ``CMYK`` / ``YCbCr`` / palette converted,
    and images with transparency (``RGBA``, ``LA``, ``PA``, palette or grey with a transparent colour) composited
    over white, so transparent pixels do not turn into whatever colour they happen to store."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / 32-bit grey: rescale to 8 bits
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(array.max()), 1.0)
        img = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as an RGB PIL image, fully decoded (other modes converted by :func:`to_rgb`).

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptImageError: the file cannot be decoded (truncated, not an image, ...); the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CorruptImageError(f"cannot read image {path}: {err}") from err


def center_crop_long_side(img: Image.Image) -> Image.Image:
    """Square centre crop whose side is the image's short side (the long side is cropped)."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def resize(img: Image.Image, size: int | tuple[int, int], antialias: bool = True) -> Image.Image:
    """Resize to ``size`` (an int gives a square; a tuple is ``(width, height)``).

    ``antialias=True`` uses PIL's Lanczos filter (antialiased when downsampling). ``antialias=False`` is plain
    bilinear interpolation without any prefilter (``torch.nn.functional.interpolate``, ``align_corners=False``),
    since PIL's bilinear filter widens its support, i.e. antialiases, when downsampling.
    """
    if isinstance(size, int):
        size = (size, size)
    if img.size == tuple(size):
        return img
    if antialias:
        return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=None)
    array = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    out = F.interpolate(array, size=(size[1], size[0]), mode="bilinear", align_corners=False, antialias=False)
    return Image.fromarray(out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
