"""A folder of mask files as a mask source (:class:`FolderMasks`), and the encoding it reads.

Convention (AN paper, Wang et al. CVPR 2020, Section 4): **1 = missing (hole), 0 = known**; see
:mod:`common.data.masks` for the generators and the mask checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from common.data.images import list_images, load_rgb
from common.data.masks import MaskGenerator, _randint

__all__ = ["MASK_FILE_ENCODING", "FolderMasks"]

MASK_FILE_ENCODING = (
    "mask files are grey images: black (0) = known, white (255) = missing (any grey level above the threshold, "
    "half of full scale by default, counts as white), or a 0/1 file with 1 = missing"
)
_COLOUR_SPREAD = 64  # a pixel whose R, G, B differ by more than this is coloured (JPEG noise of grey masks: a few)


class FolderMasks(MaskGenerator):
    """Masks read from a folder of image files.

    Files are read as grayscale and resized (nearest) to the requested size. A pixel is missing when its value,
    scaled to [0, 1], is above ``threshold`` (white = missing); files whose values are only 0 and 1 (masks saved as
    0/1 bytes) are read as they are. ``invert=True`` is for masks that use white = known.

    Files that this convention would misread are refused with an error naming the file (never read as "no hole"): a
    colour image (e.g. a pure red hole, whose grey level 76 is below the threshold) and a grey file whose brightest
    level is above 1 but not above the threshold (e.g. a hole of 100 on black). An all-black file is a mask without
    a hole.

    Args:
        root: Folder of mask images (see ``common.data.images.IMAGE_EXTENSIONS``).
        threshold: Gray level (in [0, 1]) above which a pixel is white.
        invert: The files mark known pixels in white (1 = known) instead of missing ones.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``root`` holds no image, or two files share a stem (``by_name`` would be ambiguous).
    """

    def __init__(self, root: str, threshold: float = 0.5, invert: bool = False) -> None:
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        self.root = str(root)
        self.threshold = threshold
        self.invert = invert
        self._files = list_images(root)
        self._by_stem: dict[str, Path] = {}
        for path in self._files:
            if path.stem in self._by_stem:
                raise ValueError(
                    f"mask folder {root} has two files named {path.stem!r}: {self._by_stem[path.stem].name} and "
                    f"{path.name}"
                )
            self._by_stem[path.stem] = path

    def __len__(self) -> int:
        return len(self._files)

    @property
    def names(self) -> list[str]:
        """File stems of the masks, sorted."""
        return sorted(self._by_stem)

    def load(self, path: str | Path, height: int, width: int, exact: bool = False) -> Tensor:
        """Read one mask file as a ``(1, height, width)`` float32 tensor, 1 = missing.

        A file of another size is resized (nearest), or with ``exact=True`` rejected with a ``ValueError``.
        """
        rgb = np.asarray(load_rgb(path), dtype=np.uint8)
        spread = int((rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)).max()) if rgb.size else 0
        if spread > _COLOUR_SPREAD:
            raise ValueError(
                f"mask {path} is a colour image (R, G and B differ by up to {spread} of 255, e.g. a red hole); "
                f"{MASK_FILE_ENCODING}. Save it as a black-and-white image."
            )
        gray = Image.fromarray(rgb).convert("L")
        if gray.size != (width, height):
            if exact:
                raise ValueError(
                    f"mask {Path(path).name} is {gray.size[0]}x{gray.size[1]} but its image is {width}x{height}"
                )
            gray = gray.resize((width, height), Image.Resampling.NEAREST)
        values = np.asarray(gray, dtype=np.uint8)
        top = int(values.max()) if values.size else 0
        missing = values > 0 if top <= 1 else values.astype(np.float32) / 255.0 > self.threshold
        if top > 1 and not missing.any():
            raise ValueError(
                f"mask {path}: its brightest grey level is {top} of 255, not above the threshold "
                f"{self.threshold:g} ({self.threshold * 255:.0f} of 255), so it would mark no pixel "
                f"{'known' if self.invert else 'missing'}; {MASK_FILE_ENCODING}. Rescale it (e.g. to 0 and 255)."
            )
        if self.invert:
            missing = ~missing
        return torch.from_numpy(missing.astype(np.float32)).unsqueeze(0)

    def size_of(self, stem: str) -> tuple[int, int]:
        """``(width, height)`` of the mask file whose stem is ``stem``."""
        path = self._by_stem.get(stem)
        if path is None:
            raise FileNotFoundError(f"no mask named {stem!r} (any image extension) in {self.root}")
        with Image.open(path) as img:
            return img.size

    def by_name(self, stem: str, height: int, width: int, exact: bool = False) -> Tensor:
        """The mask whose file stem is ``stem`` (e.g. the stem of the image it belongs to), resized.

        Raises:
            FileNotFoundError: No mask file has that stem.
        """
        path = self._by_stem.get(stem)
        if path is None:
            raise FileNotFoundError(f"no mask named {stem!r} (any image extension) in {self.root}")
        return self.load(path, height, width, exact)

    def __call__(self, height: int, width: int, generator: torch.Generator | None = None) -> Tensor:
        index = _randint(0, len(self._files) - 1, generator)
        return self.load(self._files[index], height, width)
