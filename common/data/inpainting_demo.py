"""The bundled inpainting demo: photographs that ship inside scikit-image, scikit-learn and matplotlib.

Nothing is downloaded. :data:`DEMO_PHOTOS` is the one place that says which photograph serves which split:

* ``train``: scikit-image's colour photographs ``astronaut``, ``coffee``, ``rocket``, ``hubble_deep_field``,
  ``immunohistochemistry`` and ``retina``, scikit-learn's ``china.jpg``, and scikit-image's grey-level photographs
  and textures ``camera``, ``moon``, ``coins``, ``brick``, ``grass`` and ``gravel`` (as grey RGB): many different
  structures, so that the network learns inpainting rather than a few pictures.
* ``val`` (best checkpoint, plateau switch): scikit-image's ``chelsea`` and scikit-learn's ``flower.jpg``.
* ``test`` (never trained on nor selected on): scikit-image's ``motorcycle_left`` and matplotlib's
  ``grace_hopper.jpg``. (``motorcycle_right``, the other half of the same stereo pair, is in no split.)

Training samples are random crops at a random scale (a square of side ``s * resolution``, ``s`` log-uniform in
``[1, max_scale]``, resized to ``resolution``) of the photographs resized to a short side of
``max_scale * resolution`` pixels, with flips, 90-degree rotations, channel permutations and colour jitter.
Evaluation samples are ``num_eval_crops`` fixed crops per photograph, on a grid, of the photographs resized to a
short side of ``eval_scale * resolution``, with the centre-square hole (half the side) as in the Paris protocol.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from torch import Tensor

from common.data.inpainting import InpaintingDataModule, PredictSplit
from common.data.inpainting_datasets import Augmentation, TensorCropDataset, to_tensor
from common.data.mask_mixtures import MixedMasks
from common.data.masks import CenterSquareMasks, FreeFormMasks, MaskGenerator, RandomRectangleMasks

__all__ = ["DEMO_PHOTOS", "DemoInpaintingDataModule", "load_demo_photo"]

DEMO_PHOTOS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "china",
        "camera",
        "moon",
        "coins",
        "brick",
        "grass",
        "gravel",
    ),
    "val": ("chelsea", "flower"),
    "test": ("motorcycle_left", "grace_hopper"),
}
"""Which bundled photograph is in which split of the demo (the only place that says so)."""


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")

    return load


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(filename) as file:
            return np.asarray(Image.open(file).convert("RGB"))

    return load


def _motorcycle_left() -> np.ndarray:
    from skimage import data

    return data.stereo_motorcycle()[0]


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    **{n: _skimage(n) for n in ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")},
    **{n: _skimage(n) for n in ("retina", "camera", "moon", "coins", "brick", "grass", "gravel", "chelsea")},
    "china": _sklearn("china"),
    "flower": _sklearn("flower"),
    "motorcycle_left": _motorcycle_left,
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
}


def load_demo_photo(name: str) -> Image.Image:
    """One bundled photograph as an RGB PIL image (grey-level ones repeated to three channels)."""
    if name not in _LOADERS:
        raise ValueError(f"unknown demo photograph {name!r}; known: {', '.join(sorted(_LOADERS))}")
    array = np.asarray(_LOADERS[name]())
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.dtype != np.uint8:
        array = (255 * (array.astype(np.float64) / max(float(array.max()), 1e-8))).round().astype(np.uint8)
    return Image.fromarray(array[..., :3]).convert("RGB")


def _resized(photo: Image.Image, short: int) -> Tensor:
    width, height = photo.size
    factor = short / min(width, height)
    return to_tensor(photo.resize((round(width * factor), round(height * factor)), Image.Resampling.BICUBIC))


def grid_crops(images: list[Tensor], size: int, per_image: int) -> list[tuple[int, int, int]]:
    """``per_image`` fixed ``(image index, top, left)`` crops per image, spread on a grid over rows then columns."""
    crops = []
    for k, image in enumerate(images):
        height, width = image.shape[-2:]
        cols = max(1, int(np.ceil(np.sqrt(per_image * width / height))))
        rows = int(np.ceil(per_image / cols))
        tops = np.linspace(0, height - size, rows).round().astype(int)
        lefts = np.linspace(0, width - size, cols).round().astype(int)
        crops += [(k, int(t), int(left)) for t in tops for left in lefts][:per_image]
    return crops


class DemoInpaintingDataModule(InpaintingDataModule):
    """Bundled demo: crops of real photographs shipped with scikit-image, scikit-learn and matplotlib.

    Args:
        resolution: Crop size (divisible by 8).
        batch_size: Training batch size.
        num_workers: DataLoader workers (0 is fastest for in-memory crops).
        max_scale: Largest training crop scale (see the module docstring; 1 = crops at one scale).
        eval_scale: Short side of the evaluation photographs, in units of ``resolution``.
        train_samples_per_epoch: Random crops per training epoch.
        num_eval_crops: Evaluation crops per validation / test photograph.
        augment: Vertical flips, rotations, channel permutation and colour jitter of the training crops
            (horizontal flips always).
        train_masks: Training mask generator (default: DeepFill's random rectangles or free-form strokes, 1:1).
        val_masks: Validation mask generator (default ``CenterSquareMasks(0.5)``).
        test_masks: Test mask generator (default ``CenterSquareMasks(0.5)``).
        photos: Override :data:`DEMO_PHOTOS` (``{"train": [...], "val": [...], "test": [...]}``), e.g. to judge a
            trained model on other bundled photographs.
        val_batch_size: Evaluation batch size (default: ``batch_size``).
        predict_root: Folder of images to inpaint with ``predict``.
        predict_mask_root: Folder of their masks (same file stems).
        predict_split: What ``predict`` inpaints: ``"folder"``, ``"val"`` or ``"test"``.
    """

    def __init__(
        self,
        resolution: int = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        max_scale: float = 4.0,
        eval_scale: float = 2.0,
        train_samples_per_epoch: int = 1024,
        num_eval_crops: int = 16,
        augment: bool = True,
        train_masks: MaskGenerator | None = None,
        val_masks: MaskGenerator | None = None,
        test_masks: MaskGenerator | None = None,
        photos: dict[str, list[str]] | None = None,
        val_batch_size: int | None = None,
        predict_root: str | None = None,
        predict_mask_root: str | None = None,
        predict_split: PredictSplit = "folder",
    ) -> None:
        super().__init__(
            resolution, batch_size, num_workers, predict_root, predict_mask_root, val_batch_size, predict_split,
        )  # fmt: skip
        if max_scale < 1 or eval_scale < 1:
            raise ValueError(f"max_scale and eval_scale must be >= 1, got {max_scale} and {eval_scale}")
        self.max_scale = max_scale
        self.eval_scale = eval_scale
        self.train_samples_per_epoch = train_samples_per_epoch
        self.num_eval_crops = num_eval_crops
        self.augment = augment
        self.train_masks = train_masks or MixedMasks([RandomRectangleMasks(), FreeFormMasks()], [1.0, 1.0])
        self.val_masks = val_masks if val_masks is not None else CenterSquareMasks(0.5)
        self.test_masks = test_masks if test_masks is not None else CenterSquareMasks(0.5)
        self.photos = {split: tuple(names) for split, names in {**DEMO_PHOTOS, **(photos or {})}.items()}
        for split, names in self.photos.items():
            if split not in DEMO_PHOTOS:
                raise ValueError(f"unknown split {split!r} in photos; use 'train', 'val' and 'test'")
            unknown = sorted(set(names) - set(_LOADERS))
            if unknown:
                raise ValueError(f"unknown demo photograph(s) {unknown}; known: {', '.join(sorted(_LOADERS))}")
        overlap = set(self.photos["train"]) & (set(self.photos["val"]) | set(self.photos["test"]))
        if overlap:
            raise ValueError(f"photographs in the training split and an evaluation split: {sorted(overlap)}")

    def _eval_split(self, split: str, masks: MaskGenerator) -> TensorCropDataset:
        names = list(self.photos[split])
        images = [_resized(load_demo_photo(n), round(self.eval_scale * self.resolution)) for n in names]
        crops = grid_crops(images, self.resolution, self.num_eval_crops)
        return TensorCropDataset(images, self.resolution, masks, crops=crops, names=names)

    def setup_splits(self, stage: str | None) -> None:
        """Random crops of the bundled training photographs for ``fit``; fixed val / test crops of their own
        photographs.
        """
        if stage in (None, "fit"):
            names = list(self.photos["train"])
            short = round(self.max_scale * self.resolution)
            self.train_set = TensorCropDataset(
                [_resized(load_demo_photo(n), short) for n in names],
                self.resolution,
                self.train_masks,
                length=self.train_samples_per_epoch,
                names=names,
                max_scale=self.max_scale,
                augmentation=Augmentation(geometric=self.augment, colour=self.augment),
            )
        self.val_set = self._eval_split("val", self.val_masks)
        if stage in (None, "test"):
            self.test_set = self._eval_split("test", self.test_masks)
