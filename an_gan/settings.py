"""Small typed settings objects of :class:`an_gan.module.ANGAN` (one constructor argument per concept).

LightningCLI shows each as a nested section (``--model.ema.decay 0.999``); in Python they are plain dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EMASettings", "LinearDecay", "PictureSettings"]


@dataclass(frozen=True)
class EMASettings:
    """Exponential moving average of the generator and its standing batch-norm statistics.

    The AN paper reports no EMA; BigGAN (Brock et al., ICLR 2019) and StudioGAN keep one with decay 0.9999 from
    step 20k. The EMA generator's batch-norm statistics are its own: before it is used (pictures, evaluation,
    checkpoints), they are recomputed as BigGAN's "standing statistics" over ``standing_batches`` batches of
    ``standing_batch_size`` noise vectors and uniformly drawn labels (seeded, so the same weights always give the
    same statistics). ``standing_batches = 0`` keeps the raw generator's statistics instead (copied at every update).

    Attributes:
        decay: EMA decay in [0, 1).
        start_step: generator steps before which the average copies the weights.
        standing_batches: batches of the standing-statistics pass (BigGAN-PyTorch's default accumulation: 16).
        standing_batch_size: batch size of that pass.
        standing_seed: seed of its noise and labels.
    """

    decay: float = 0.9999
    start_step: int = 20000
    standing_batches: int = 16
    standing_batch_size: int = 256
    standing_seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"ema decay must lie in [0, 1), got {self.decay}")
        if self.start_step < 0 or self.standing_batches < 0 or self.standing_batch_size < 1:
            raise ValueError(
                "need start_step >= 0, standing_batches >= 0, standing_batch_size >= 1; got "
                f"{self.start_step}, {self.standing_batches}, {self.standing_batch_size}"
            )


@dataclass(frozen=True)
class LinearDecay:
    """Learning rates multiplied by 1 until iteration ``start``, then decayed linearly to 0 at ``end``.

    SN-GAN with a projection discriminator decays both learning rates linearly from 400k to 450k iterations
    (``pfnet-research/sngan_projection``, ``configs/sn_projection.yml``: ``iteration_decay_start: 400000``,
    ``iteration: 450000``; Chainer's ``LinearShift`` on the generator iteration). Iterations are generator steps.

    Attributes:
        start: last iteration at the full learning rate.
        end: iteration at which the learning rate reaches 0.
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"linear decay needs 0 <= start < end, got {self.start}, {self.end}")

    def factor(self, iteration: int) -> float:
        """The learning-rate multiplier at ``iteration``."""
        if iteration <= self.start:
            return 1.0
        return max(0.0, (self.end - iteration) / (self.end - self.start))


@dataclass(frozen=True)
class PictureSettings:
    """The fixed-noise sample grid (one row per class) and AN layout maps logged during training.

    Attributes:
        every_n_steps: log them every this many generator steps (0: only at the end of training).
        classes: classes shown, one row each; None: the first ``min(10, num_classes)``.
        per_class: columns (samples per class).
        seed: seed of the fixed noise.
    """

    every_n_steps: int = 1000
    classes: list[int] | None = None
    per_class: int = 8
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.every_n_steps < 0 or self.per_class < 1:
            raise ValueError(f"need every_n_steps >= 0 and per_class >= 1, got {self.every_n_steps}, {self.per_class}")
