"""``predict`` for trained AN GANs: the PNG writer of ``python -m an_gan predict``, class grids, class interpolation.

Categorical interpolation follows Wang et al., "Attentive Normalization for Conditional Image Generation",
CVPR 2020, Section 5.2 and Figure 8: with a fixed noise ``z``, the conditional batch-norm statistics (gain and
bias embeddings) of two labels are mixed linearly, ``(1 - a) * e(y1) + a * e(y2)``; the generator takes the
mixture as soft class weights ``(B, num_classes)``.

``python -m an_gan predict`` uses :class:`ClassFolderWriter`: it owns the prediction settings (classes, images per
class, seed, which generator, output folder) and writes ``<output>/<class:04d>/<index:06d>.png``, image ``index`` of
class ``class``'s noise stream (:mod:`an_gan.noise`), so ``python -m an_gan evaluate --samples <output>`` with the
same seed scores exactly the images an in-training evaluation would generate.

Example (notebook)::

    from an_gan.module import load_generator
    from an_gan.predict import sample_grid, interpolate_classes
    generator = load_generator("runs/an_gan/.../checkpoints/last.ckpt")   # EMA weights (standing stats), eval, CPU
    grid = sample_grid(generator, classes=[0, 1, 2], per_class=8)          # (3, H, W) in [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import Tensor
from torch.utils.data import DataLoader

from an_gan.networks import Generator
from an_gan.noise import ClassSampleDataset
from common.training.runs import results_dir
from common.visualization import image_grid, save_png, to_unit

__all__ = ["ClassFolderWriter", "class_weights", "interpolate_classes", "sample_grid"]


def class_weights(labels: Tensor, num_classes: int) -> Tensor:
    """One-hot class weights ``(B, num_classes)`` (float) for integer labels ``(B,)``."""
    return torch.nn.functional.one_hot(labels.long(), num_classes).float()


@torch.no_grad()
def sample_grid(
    generator: Generator, classes: Sequence[int], per_class: int = 8, seed: int = 0, z: Tensor | None = None
) -> Tensor:
    """A grid image (3, H, W) in [0, 1]: one row per class, ``per_class`` samples per row.

    Args:
        generator: the generator (use eval mode for deterministic AN and running BN statistics).
        classes: the classes, one row each.
        per_class: columns.
        seed: seed of the noise (ignored when ``z`` is given).
        z: optional noise ``(per_class, z_dim)`` reused for every row (same z across classes).
    """
    device = next(generator.parameters()).device
    if z is None:
        z = torch.randn(per_class, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    labels = torch.tensor(list(classes), dtype=torch.long).repeat_interleave(per_class)
    images = generator(z.repeat(len(classes), 1).to(device), labels.to(device))
    return image_grid(to_unit(images), nrow=per_class)


@torch.no_grad()
def interpolate_classes(generator: Generator, z: Tensor, y1: int, y2: int, steps: int = 8) -> Tensor:
    """Categorical interpolation (paper Figure 8): images for ``a`` in ``linspace(0, 1, steps)``.

    The conditional-BN gain/bias of ``y1`` and ``y2`` are mixed as ``(1 - a) * e(y1) + a * e(y2)`` with the same
    noise ``z`` for every step; ``a = 0`` gives exactly ``G(z, y1)`` and ``a = 1`` exactly ``G(z, y2)``.

    Args:
        generator: the generator.
        z: one noise vector, ``(z_dim,)`` or ``(1, z_dim)``.
        y1: start class.
        y2: end class.
        steps: number of images (>= 2).

    Returns:
        ``(steps, 3, R, R)`` images in [-1, 1].
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    k = generator.num_classes
    if not (0 <= y1 < k and 0 <= y2 < k):
        raise ValueError(f"classes must lie in [0, {k}), got {y1} and {y2}")
    device = next(generator.parameters()).device
    z = z.reshape(1, -1).to(device).expand(steps, -1)
    alpha = torch.linspace(0.0, 1.0, steps, device=device)
    weights = torch.zeros(steps, k, device=device)
    weights[:, y1] += 1.0 - alpha
    weights[:, y2] += alpha
    return generator(z, weights)


class ClassFolderWriter(BasePredictionWriter):
    """``predict``: generate images per class and write ``<output_dir>/<class:04d>/<index:06d>.png``.

    Image ``index`` of a class is image ``index`` of that class's noise stream for ``seed``
    (:mod:`an_gan.noise`), the same image an evaluation with that seed generates.

    Args:
        output_dir: output folder (one sub-folder per class); None: ``<results dir>/samples``.
        classes: classes to generate; None: all.
        num_per_class: images per class.
        seed: noise seed (use the evaluator's seed to write its evaluation set).
        generator: ``"raw"``, ``"ema"``, or None (the module's ``eval_generator``).
        batch_size: generation batch size.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        classes: list[int] | None = None,
        num_per_class: int = 10,
        seed: int = 0,
        generator: str | None = None,
        batch_size: int = 50,
    ) -> None:
        super().__init__(write_interval="batch")
        if num_per_class < 1 or batch_size < 1:
            raise ValueError(f"need num_per_class >= 1 and batch_size >= 1, got {num_per_class}, {batch_size}")
        if generator not in (None, "raw", "ema"):
            raise ValueError(f"generator must be 'raw', 'ema' or None, got {generator!r}")
        self.output_dir_setting = output_dir
        self.classes, self.num_per_class, self.seed = classes, num_per_class, seed
        self.generator, self.batch_size = generator, batch_size
        self.output_dir: Path | None = None

    def dataloader(self, num_classes: int, z_dim: int) -> DataLoader:
        """Items ``(noise, class, index)`` for every image this writer writes (class-major)."""
        classes = list(range(num_classes)) if self.classes is None else list(self.classes)
        dataset = ClassSampleDataset(classes, self.num_per_class, z_dim, self.seed, num_classes=num_classes)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """For ``predict``, choose the output folder (``output_dir`` or ``<run folder>/samples``)."""
        if stage == "predict":
            configured = self.output_dir_setting
            self.output_dir = Path(configured) if configured else results_dir(trainer) / "samples"

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Tensor],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Write each generated image (``(3, R, R)`` in [0, 1]) as ``<class:04d>/<index:06d>.png``."""
        assert self.output_dir is not None
        for image, label, index in zip(prediction["images"], prediction["labels"], prediction["indices"], strict=True):
            save_png(image, self.output_dir / f"{int(label):04d}" / f"{int(index):06d}.png")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Print where the PNGs were written (rank 0)."""
        if trainer.is_global_zero:
            print(f"an_gan predict: wrote PNGs (one folder per class) to {self.output_dir}")
