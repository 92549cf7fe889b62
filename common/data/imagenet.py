"""ImageNet (ILSVRC2012) from JPEG folders, the data of the AN paper's class-conditional experiments.

Wang et al., "Attentive Normalization", CVPR 2020, Section 5: ImageNet at 128x128. Train images come from class
folders ``root/train/<wnid>/*.JPEG``; validation labels from class folders (``val/<wnid>/*.JPEG``) or, for the flat
official layout (``val/ILSVRC2012_val_00000001.JPEG`` ...), from a labels file:

* a CSV ``filename,wnid`` such as Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first token
  of the second column is the wnid; a header row is skipped), matched to the image file names without extension;
* or the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (one 1-based ILSVRC2012_ID per line, in file-name
  order) together with ``val_synsets_file``: the devkit's ``data/meta.mat`` (read with SciPy) or a text file with
  one wnid per line in ILSVRC2012_ID order. ILSVRC2012_ID order is NOT alphabetical wnid order, so an alphabetical
  list such as ``LOC_synset_mapping.txt`` is refused for the ground-truth file.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import Dataset

from common.data.class_datasets import ImageFileDataset, list_class_images, scan_class_folders
from common.data.class_images import ClassImageDataModule
from common.data.images import IMAGE_EXTENSIONS, list_images

__all__ = ["ImageNetDataModule"]

_WNID = re.compile(r"^n\d{8}$")


class ImageNetDataModule(ClassImageDataModule):
    """ImageNet (ILSVRC2012) from JPEG folders, as in the paper's ImageNet 128x128 experiments.

    Splits: ``train``; ``val`` and ``test`` are both the validation folder (ImageNet has no labelled test set).
    Layout: ``root/train/<wnid>/*.JPEG``; validation either ``root/<val_split>/<wnid>/*.JPEG`` or flat
    ``root/<val_split>/*.JPEG`` with ``val_labels_file`` (see the module docstring for the accepted formats).
    Class index = position of the wnid in the sorted list of train folders; ``class_names`` are the wnids. Subsets
    of ImageNet work (any number >= 2 of wnid folders); validation images of classes absent from ``train`` are
    skipped with a warning.

    Args:
        root: ImageNet folder holding ``train/`` and the validation folder.
        resolution: Side length of the square images (centre crop on the long side, Lanczos resize).
        batch_size: Images per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        val_labels_file: Labels of a flat validation folder: a ``filename,wnid`` CSV (e.g. ``LOC_val_solution.csv``)
            or the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (then ``val_synsets_file`` is required).
            Ignored when the validation folder has class sub-folders.
        hflip: Random horizontal flips for training.
        val_split: Name of the validation folder under ``root``.
        val_synsets_file: ILSVRC2012_ID -> wnid mapping for the devkit ground-truth file: the devkit's
            ``data/meta.mat`` or a text file with one wnid per line (first token) in ILSVRC2012_ID order.
    """

    def __init__(
        self,
        root: str,
        resolution: int = 128,
        batch_size: int = 256,
        num_workers: int = 8,
        val_labels_file: str | None = None,
        hflip: bool = True,
        val_split: str = "val",
        val_synsets_file: str | None = None,
    ) -> None:
        super().__init__(resolution, batch_size, num_workers, hflip)
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        expected = "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (or a flat val/ plus val_labels_file)"
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageNet root not found: {self.root}; expected layout: {self.root}/{expected}")
        if not (self.root / "train").is_dir():
            raise FileNotFoundError(
                f"no train/ folder in ImageNet root {self.root} (found: "
                f"{', '.join(sorted(p.name for p in self.root.iterdir())[:8]) or 'nothing'}); "
                f"expected layout: {self.root}/{expected}"
            )
        self.class_names = scan_class_folders(self.root / "train", 2, "train/<wnid>/*.JPEG")
        odd = [c for c in self.class_names if not _WNID.match(c)]
        if odd:
            rank_zero_warn(
                f"{len(odd)} train folders of {self.root} are not ImageNet wnids (e.g. {odd[0]!r}); they are used "
                "as classes anyway. ClassFolderDataModule is meant for non-ImageNet trees."
            )
        self.num_classes = len(self.class_names)
        self.dataset_name = "imagenet"
        self.val_split = val_split
        self.val_labels_file = val_labels_file
        self.val_synsets_file = val_synsets_file

    def _identity(self, split: str) -> str:
        root = self.root.resolve()
        if split == "train":
            return f"{root}|train"
        # "test" is the validation folder too (ImageNet has no labelled test set): same images, same key.
        labels, synsets = (Path(f).resolve() if f else None for f in (self.val_labels_file, self.val_synsets_file))
        return f"{root}|{self.val_split}|{labels}|{synsets}"

    def _build_datasets(self) -> dict[str, Dataset]:
        index = {name: i for i, name in enumerate(self.class_names)}
        train_paths, train_labels = [], []
        for name in self.class_names:
            for path in list_class_images(self.root / "train" / name, IMAGE_EXTENSIONS):
                train_paths.append(path.relative_to(self.root))
                train_labels.append(index[name])
        datasets = {"train": ImageFileDataset(self.root, train_paths, train_labels, self.resolution, self.hflip)}
        val_paths, val_labels = self._scan_val(index)
        datasets["val"] = ImageFileDataset(self.root, val_paths, val_labels, self.resolution, hflip=False)
        datasets["test"] = datasets["val"]
        return datasets

    def _scan_val(self, index: dict[str, int]) -> tuple[list[Path], list[int]]:
        val_dir = self.root / self.val_split
        if not val_dir.is_dir():
            raise FileNotFoundError(
                f"validation folder not found: {val_dir}; expected {val_dir}/<wnid>/*.JPEG or a flat {val_dir}/*.JPEG "
                "with val_labels_file"
            )
        subdirs = sorted(p for p in val_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        loose = [p for p in val_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if subdirs and loose:
            raise ValueError(
                f"{val_dir} mixes {len(loose)} loose images with {len(subdirs)} folders; use either class folders "
                "or a flat folder with val_labels_file"
            )
        pairs: list[tuple[Path, str]] = []
        if subdirs:
            if len(subdirs) == 1 and any(p.is_dir() for p in subdirs[0].iterdir()):
                raise ValueError(
                    f"{val_dir} holds a single folder {subdirs[0].name!r} that holds further folders: one level "
                    f"too deep; expected {val_dir}/<wnid>/*.JPEG"
                )
            for folder in subdirs:
                pairs += [(p, folder.name) for p in list_class_images(folder, IMAGE_EXTENSIONS)]
        else:
            files = list_images(val_dir)
            if self.val_labels_file is None:
                raise ValueError(
                    f"{val_dir} is a flat folder of {len(files)} images without class folders, so its labels are "
                    "unknown: pass val_labels_file (LOC_val_solution.csv, or ILSVRC2012_validation_ground_truth.txt "
                    "with val_synsets_file) or sort the images into val/<wnid>/ folders"
                )
            pairs = list(zip(files, self._read_val_labels(files), strict=True))

        paths, labels, skipped = [], [], 0
        for path, wnid in pairs:
            if wnid in index:
                paths.append(path.relative_to(self.root))
                labels.append(index[wnid])
            else:
                skipped += 1
        if not paths:
            raise ValueError(
                f"none of the {len(pairs)} validation images in {val_dir} belongs to one of the {self.num_classes} "
                f"train classes ({', '.join(self.class_names[:3])}, ...)"
            )
        if skipped:
            rank_zero_warn(
                f"skipped {skipped} validation images of {val_dir} whose class is not among the train folders"
            )
        return paths, labels

    def _read_val_labels(self, files: list[Path]) -> list[str]:
        labels_file = Path(self.val_labels_file).expanduser()
        if not labels_file.is_file():
            raise FileNotFoundError(f"val_labels_file not found: {labels_file}")
        with labels_file.open(newline="") as handle:
            first = handle.readline()
        if labels_file.suffix.lower() == ".csv" or "," in first:
            return self._read_csv_labels(labels_file, files)
        return self._read_ground_truth(labels_file, files)

    def _read_csv_labels(self, labels_file: Path, files: list[Path]) -> list[str]:
        by_stem: dict[str, str] = {}
        with labels_file.open(newline="") as handle:
            for row_number, row in enumerate(csv.reader(handle)):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2 or not row[1].split():
                    raise ValueError(f"{labels_file} line {row_number + 1}: expected 'filename,wnid ...', got {row}")
                name, wnid = Path(row[0].strip()).stem, row[1].split()[0]
                if row_number == 0 and not _WNID.match(wnid) and wnid not in self.class_names:
                    continue  # header, e.g. "ImageId,PredictionString"
                by_stem[name] = wnid
        missing = [p.name for p in files if p.stem not in by_stem]
        if missing:
            raise ValueError(
                f"{labels_file} has no label for {len(missing)} of the {len(files)} images in "
                f"{files[0].parent} (e.g. {', '.join(missing[:3])})"
            )
        return [by_stem[p.stem] for p in files]

    def _read_ground_truth(self, labels_file: Path, files: list[Path]) -> list[str]:
        if self.val_synsets_file is None:
            raise ValueError(
                f"{labels_file} looks like the devkit's ground truth (one ILSVRC2012_ID per line); its IDs follow the "
                "devkit's synset order, not the alphabetical wnid order of the train folders. Pass val_synsets_file "
                "(the devkit's data/meta.mat, or a text file with one wnid per line in ILSVRC2012_ID order), or use a "
                "'filename,wnid' CSV such as LOC_val_solution.csv"
            )
        synsets = self._read_synsets(Path(self.val_synsets_file).expanduser())
        lines = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
        if len(lines) != len(files):
            raise ValueError(
                f"{labels_file} has {len(lines)} labels but {files[0].parent} holds {len(files)} images; the "
                "ground-truth file labels the complete validation set in file-name order"
            )
        wnids = []
        for number, line in enumerate(lines, 1):
            if not line.isdigit() or not 1 <= int(line) <= len(synsets):
                raise ValueError(
                    f"{labels_file} line {number}: expected an ILSVRC2012_ID in 1..{len(synsets)}, got {line!r}"
                )
            wnids.append(synsets[int(line) - 1])
        return wnids

    def _read_synsets(self, path: Path) -> list[str]:
        if not path.is_file():
            raise FileNotFoundError(f"val_synsets_file not found: {path}")
        if path.suffix.lower() == ".mat":
            from scipy.io import loadmat

            table = loadmat(str(path), squeeze_me=True)["synsets"]
            rows = sorted(
                (int(ids), str(wnid))
                for ids, wnid, children in zip(
                    np.atleast_1d(table["ILSVRC2012_ID"]),
                    np.atleast_1d(table["WNID"]),
                    np.atleast_1d(table["num_children"]),
                    strict=True,
                )
                if int(children) == 0
            )
            if [i for i, _ in rows] != list(range(1, len(rows) + 1)):
                raise ValueError(f"{path}: leaf synsets do not have ILSVRC2012_IDs 1..{len(rows)}")
            return [wnid for _, wnid in rows]
        wnids = [line.split()[0].rstrip(",") for line in path.read_text().splitlines() if line.strip()]
        bad = [w for w in wnids if not _WNID.match(w)]
        if bad:
            raise ValueError(f"{path}: expected one wnid (n########) per line, got {bad[0]!r}")
        if len(wnids) >= 1000 and wnids == sorted(wnids):
            raise ValueError(
                f"{path} lists the wnids in alphabetical order (like LOC_synset_mapping.txt), but the devkit's "
                "ground truth uses ILSVRC2012_ID order, which is not alphabetical: every label would be wrong. "
                "Pass the devkit's data/meta.mat instead, or a 'filename,wnid' CSV as val_labels_file"
            )
        return wnids
