"""On-disk cache of reference statistics: file names, atomic writes, metadata checks.

Reference statistics (the real side of FID / KID / precision-recall, and the per-class real features of
intra-FID) are expensive (a pass of the feature extractor over a dataset split) and depend only on the images and
the extractor, so they are computed once and cached:

* pooled: ``<cache_dir>/<key>__<extractor>.pt``;
* per class: ``<cache_dir>/<key>__<extractor>/class_<class:04d>.pt``.

``key`` names the images (dataset, split, resolution, subset, a hash of the data's identity; see
``ClassImageDataModule.reference_key``). Every file stores a format tag and metadata (extractor, feature width,
...); loading a file whose metadata differ from the caller's raises, so a stale cache is never used silently.
Files are written to a temporary name and renamed, so an interrupted run never leaves a truncated cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["REFERENCE_FORMAT", "class_reference_path", "load_payload", "reference_cache_path", "save_payload"]

#: Format tag of the cache files (bump when the payload changes).
REFERENCE_FORMAT = "attentive-norm/generation-reference/v2"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]", "_", text)


def reference_cache_path(cache_dir: str | os.PathLike, key: str, extractor_name: str) -> Path:
    """File of pooled reference statistics: ``<cache_dir>/<key>__<extractor_name>.pt``.

    Characters other than letters, digits, ``.``, ``_``, ``-`` and ``=`` are replaced by ``_``.
    """
    return Path(cache_dir) / f"{_safe(key)}__{_safe(extractor_name)}.pt"


def class_reference_path(cache_dir: str | os.PathLike, key: str, extractor_name: str, cls: int) -> Path:
    """File of one class's reference features: ``<cache_dir>/<key>__<extractor_name>/class_<cls:04d>.pt``."""
    return Path(cache_dir) / f"{_safe(key)}__{_safe(extractor_name)}" / f"class_{int(cls):04d}.pt"


def save_payload(path: str | os.PathLike, metadata: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``metadata`` and CPU copies of ``tensors`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": REFERENCE_FORMAT, **metadata}
    payload.update({name: value.detach().cpu().clone() for name, value in tensors.items()})
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_payload(path: str | os.PathLike, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The payload saved at ``path``, or None when there is no file.

    Raises:
        ValueError: the file is not a reference file of this format, or its metadata differ from ``metadata``
            (the message names every differing field and says to delete the file or move the cache).
    """
    path = Path(path)
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != REFERENCE_FORMAT:
        raise ValueError(f"{path} is not a generation reference file ({REFERENCE_FORMAT})")
    mismatches = [
        f"{key}: file has {payload.get(key)!r}, expected {expected!r}"
        for key, expected in metadata.items()
        if payload.get(key) != expected
    ]
    if mismatches:
        raise ValueError(
            f"reference statistics {path} do not match ({'; '.join(mismatches)}). Delete the file or point the "
            "cache elsewhere to recompute them."
        )
    return payload
