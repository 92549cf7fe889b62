"""The prepared (streaming) dataset format: LitData chunks per split plus a manifest that readers check.

:mod:`common.data.prepare` writes, :mod:`common.data.prepared` reads::

    <root>/manifest.json           what was prepared, from what, how (checked by every reader)
    <root>/<split>/index.json      LitData's index of the split (``litdata.optimize``)
    <root>/<split>/chunk-*.bin     the samples, in the raw dataset's order

``<root>`` is a local folder or any location LitData streams from (``s3://``, ``gs://``, ``azure://``, ``r2://``,
``local:/path`` ...). Sample ``i`` of a split is item ``i`` of the raw DataModule's dataset of that split, stored as a
dict with its ``"index"`` (checked on every read), its image after the deterministic part of the raw preprocessing
(:func:`common.data.class_datasets.square_image`, :func:`common.data.inpainting_datasets.base_image`) and its label or
name. Image encodings (:data:`ENCODINGS`):

* ``"raw"`` (default): the uint8 ``(H, W, 3)`` array itself. Lossless and nothing to decode, so reading costs a copy;
  at 128 px, 48 KiB per image (ImageNet's 1.28M training images: 63 GB, less than half of its JPEG files).
* ``"png"``: PNG bytes (PIL, compression level 6). Lossless, smaller, but decoding costs CPU time again.
* ``"jpeg"``: JPEG bytes (PIL, ``jpeg_quality``, 4:4:4 chroma). Smallest, but lossy: pixels differ from the raw
  pipeline's by the JPEG error.

LitData is imported when first needed, so importing :mod:`common.data` stays cheap.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

__all__ = [
    "ENCODINGS",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "StreamedItems",
    "decode_image",
    "encode_image",
    "is_remote",
    "join_location",
    "labels_from_runs",
    "labels_to_runs",
    "litdata_version",
    "load_manifest",
    "read_json",
    "stream_count",
]

FORMAT = "attentive-norm-prepared"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ENCODINGS: tuple[str, ...] = ("raw", "png", "jpeg")
_REMOTE_PREFIXES = ("s3://", "gs://", "azure://", "r2://", "hf://", "local:")


def litdata_version() -> str:
    """The installed LitData version (written to the manifest)."""
    import litdata

    return litdata.__version__


def is_remote(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a location LitData downloads from (``s3://``, ``gs://``, ``local:`` ...), not a folder."""
    return str(root).startswith(_REMOTE_PREFIXES)


def join_location(root: str | os.PathLike, *parts: str) -> str:
    """``root/part/...`` for a folder or a URL."""
    if is_remote(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(Path(root).expanduser().joinpath(*parts))


def read_json(location: str, storage_options: dict | None = None) -> Any:
    """A JSON file from a folder or a remote location (fetched with LitData's downloader for its scheme, the one
    LitData fetches ``index.json`` with).

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
    """
    if not is_remote(location):
        path = Path(location)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        return json.loads(path.read_text())
    from litdata.streaming.downloader import get_downloader

    folder, name = location.rsplit("/", 1)
    scratch = tempfile.mkdtemp(prefix="an_prepared_")
    try:
        local = os.path.join(scratch, name)
        try:
            get_downloader(folder, scratch, [], storage_options).download_file(location, local)
        except Exception as err:
            raise FileNotFoundError(f"cannot fetch {location}: {err}") from err
        if not os.path.isfile(local):
            raise FileNotFoundError(f"cannot fetch {location}")
        with open(local) as handle:
            return json.load(handle)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def encode_image(image: np.ndarray, encoding: str, jpeg_quality: int = 95) -> np.ndarray | bytes:
    """An ``(H, W, 3)`` uint8 image as stored with ``encoding`` (see the module docstring)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; use one of {ENCODINGS}")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    if encoding == "raw":
        return image
    buffer = io.BytesIO()
    if encoding == "png":
        Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    else:
        Image.fromarray(image).save(buffer, format="JPEG", quality=jpeg_quality, subsampling=0)
    return buffer.getvalue()


def decode_image(data: np.ndarray | bytes, encoding: str) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 image stored by :func:`encode_image`."""
    if encoding == "raw":
        return np.asarray(data, dtype=np.uint8)
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; use one of {ENCODINGS}")
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def labels_to_runs(labels: Sequence[int]) -> list[list[int]]:
    """Run-length code ``[[label, count], ...]`` of a label sequence (the manifest's compact label list)."""
    runs: list[list[int]] = []
    for label in labels:
        if runs and runs[-1][0] == int(label):
            runs[-1][1] += 1
        else:
            runs.append([int(label), 1])
    return runs


def labels_from_runs(runs: Sequence[Sequence[int]]) -> np.ndarray:
    """The int64 labels of a :func:`labels_to_runs` code."""
    if not runs:
        return np.zeros(0, dtype=np.int64)
    values, counts = zip(*runs, strict=True)
    return np.repeat(np.asarray(values, dtype=np.int64), np.asarray(counts, dtype=np.int64))


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())


def load_manifest(root: str, dataset: str, settings: dict[str, Any], storage_options: dict | None = None) -> dict:
    """Read ``root``'s manifest and check it against what the reader expects.

    Args:
        root: The prepared folder or URL.
        dataset: The dataset the reader reads (``"imagenet"``, ``"paris"``).
        settings: The reader's settings that the preparation fixed (e.g. ``{"resolution": 128}``); every one must
            equal the manifest's.

    Raises:
        FileNotFoundError: no manifest (not a prepared folder, or an unfinished preparation).
        ValueError: another format, a newer format version, another dataset, a setting that differs, an unknown
            encoding, or a LitData version newer than the installed one; the message says what to do.
    """
    location = join_location(root, MANIFEST)
    try:
        manifest = read_json(location, storage_options)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{root} is not a prepared dataset: {err}. Prepare it first, e.g. `python -m common.data.prepare "
            f"{dataset} --root RAW_DATA --output {root}` (the manifest is written last, so an interrupted "
            "preparation has none either)"
        ) from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{location} is not a manifest of {FORMAT!r} data (format: {manifest.get('format')!r})")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{location} has format version {manifest['format_version']}, newer than this code reads "
            f"({FORMAT_VERSION}); update the package or prepare the data again"
        )
    if manifest.get("dataset") != dataset:
        raise ValueError(f"{root} holds prepared {manifest.get('dataset')!r} data, not {dataset!r}")
    stored = manifest.get("settings", {})
    for key, wanted in settings.items():
        if stored.get(key) != wanted:
            raise ValueError(
                f"{root} was prepared with {key}={stored.get(key)!r} but this DataModule asks for {key}={wanted!r}; "
                f"set {key}={stored.get(key)!r} or prepare again with --{key} {wanted}"
            )
    if manifest.get("encoding") not in ENCODINGS:
        raise ValueError(f"{location}: unknown encoding {manifest.get('encoding')!r}; known: {ENCODINGS}")
    written, installed = manifest.get("litdata_version", "0"), litdata_version()
    if _version_tuple(written) > _version_tuple(installed):
        raise ValueError(
            f"{root} was written by litdata {written}, newer than the installed {installed}; install "
            f"litdata>={written} to read it"
        )
    return manifest


def stream_count(location: str, storage_options: dict | None = None) -> int:
    """The number of samples in the LitData split at ``location`` (from its ``index.json``)."""
    index = read_json(join_location(location, "index.json"), storage_options)
    return sum(int(chunk["chunk_size"]) for chunk in index["chunks"])


class StreamedItems(Dataset):
    """Map-style access to one prepared split: ``items[i]`` is the dict written for sample ``i``.

    Wraps ``litdata.StreamingDataset`` (random access by global index, one item decoded per access), created lazily
    in each process that reads (DataLoader workers included), so the dataset pickles without open files. Every read
    checks that the stored ``"index"`` is ``i``: a folder whose samples are out of order is an error, never a silent
    mismatch of images and labels.

    Args:
        location: The split's folder or URL (``<root>/<split>``).
        count: Its number of samples (from the manifest; checked against LitData's index).
        cache_dir: Where LitData caches chunks of a remote location (default: LitData's, ``~/.lightning/chunks``).
        storage_options: Passed to LitData (credentials, endpoint of an S3-compatible store, ...).
    """

    def __init__(
        self, location: str, count: int, cache_dir: str | None = None, storage_options: dict | None = None
    ) -> None:
        self.location, self.count = location, int(count)
        self.cache_dir, self.storage_options = cache_dir, storage_options
        found = stream_count(location, storage_options)
        if found != self.count:
            raise ValueError(
                f"{location} holds {found} samples but its manifest says {self.count}: the split was rewritten or "
                "only partly copied; prepare it again"
            )
        self._stream, self._pid = None, None

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stream": None, "_pid": None}

    def stream(self):
        """This process's ``litdata.StreamingDataset`` of the split."""
        if self._stream is None or self._pid != os.getpid():
            from litdata import StreamingDataset

            self._stream = StreamingDataset(
                self.location, cache_dir=self.cache_dir, storage_options=self.storage_options, batch_decode=0
            )
            self._pid = os.getpid()
        return self._stream

    def __getitem__(self, index: int) -> dict:
        if not 0 <= int(index) < self.count:
            raise IndexError(f"index {int(index)} out of range for {self.count} samples of {self.location}")
        item = self.stream()[int(index)]
        if int(item["index"]) != int(index):
            raise ValueError(
                f"{self.location}: sample {int(index)} holds item {int(item['index'])}; the split is out of order "
                "(written by another tool?); prepare it again"
            )
        return item
