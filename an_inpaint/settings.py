"""Small typed settings objects of :class:`an_inpaint.module.ANInpaint` (one constructor argument per concept).

They mirror :mod:`an_gan.settings`: LightningCLI shows each as a nested section (``--model.schedule.lr_decay
cosine``, ``--model.pictures.num_images 4``); in Python they are plain frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LR_DECAYS", "PHASE1_STAGES", "PhaseSchedule", "PictureSettings"]

#: The generator's learning-rate schedules (``PhaseSchedule.lr_decay``).
LR_DECAYS: tuple[str, ...] = ("constant", "cosine")
#: What the phase-1 reconstruction loss trains (``PhaseSchedule.phase1_stages``).
PHASE1_STAGES: tuple[str, ...] = ("both", "coarse")


@dataclass(frozen=True)
class PhaseSchedule:
    """When what trains: the paper's two phases (Section 5.1) and the generator's learning-rate decay.

    Phase 1 trains the generator with the reconstruction loss only (the critics are neither used nor updated) until
    ``adversarial_start_step`` generator updates (during phase 1 this is ``trainer.global_step``), or earlier when
    ``plateau_patience`` validations pass without the validation reconstruction loss improving by
    ``plateau_min_delta`` (relative); phase 2 adds the adversarial term and the critic updates. DeepFill v1 has no
    phase 1 (``PRETRAIN_COARSE_NETWORK: False`` in its ``inpaint.yml``): ``adversarial_start_step=0``.

    Attributes:
        adversarial_start_step: generator updates of phase 1 before the critics start (ours: 100,000; the paper
            gives no count).
        plateau_patience: if set, also switch to phase 2 after this many validation runs without improvement
            (the paper's "after the whole training converges"); None: a fixed phase 1.
        plateau_min_delta: relative improvement of the validation reconstruction loss that resets the plateau count.
        orthogonal_in_phase1: add AN's orthogonality loss in phase 1 too (``False``: phase 2 only, as the authors'
            code, whose pretraining phase has no orthogonality term).
        phase1_stages: what phase 1's reconstruction loss (and validation's ``val/rec_loss`` in phase 1) covers:
            ``"both"`` (default: the paper's Section 5.1, phase 1 is the same objective with ``lambda_adv = 0``, so
            both stages) or ``"coarse"`` (the authors' ``--pretrain_network 1``: the L1 and known-region terms of the
            coarse output only, so the refinement stage, AN included, gets no gradient until phase 2).
        lr_decay: the generator's learning rate: ``"constant"`` (DeepFill v1; the paper names no schedule) or
            ``"cosine"`` (the optimiser's initial learning rate times ``0.5 (1 + cos(pi t / T))``, ``t`` =
            ``trainer.global_step``, ``T`` = ``trainer.max_steps``: a half cosine to 0, for short runs). The critics'
            learning rate stays constant. (``ANGAN``'s argument of the same name is its linear decay of both.)
    """

    adversarial_start_step: int = 100_000
    plateau_patience: int | None = None
    plateau_min_delta: float = 1e-3
    orthogonal_in_phase1: bool = True
    lr_decay: str = "constant"
    phase1_stages: str = "both"

    def __post_init__(self) -> None:
        if self.adversarial_start_step < 0:
            raise ValueError(f"adversarial_start_step must be >= 0, got {self.adversarial_start_step}")
        if self.plateau_patience is not None and self.plateau_patience < 1:
            raise ValueError(f"plateau_patience must be >= 1 or None, got {self.plateau_patience}")
        if self.phase1_stages not in PHASE1_STAGES:
            raise ValueError(f"phase1_stages must be one of {PHASE1_STAGES}, got {self.phase1_stages!r}")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}")

    def lr_factor(self, step: int, max_steps: int | None) -> float:
        """The multiplier of the generator's initial learning rate at ``trainer.global_step`` ``step`` of
        ``max_steps``.

        Raises:
            ValueError: ``lr_decay="cosine"`` without ``max_steps > 0``.
        """
        if self.lr_decay == "constant":
            return 1.0
        if max_steps is None or max_steps <= 0:
            raise ValueError("lr_decay='cosine' needs trainer.max_steps > 0")
        progress = min(step / max_steps, 1.0)
        return 0.5 * (1.0 + torch.cos(torch.tensor(progress * torch.pi)).item())  # float32 cosine, as always


@dataclass(frozen=True)
class PictureSettings:
    """The validation panels (input with hole | coarse | refined | composited | baselines | ground truth) and the AN
    layouts, drawn from the first validation batch at every validation during ``fit``.

    Attributes:
        num_images: validation samples shown (rows of the panels).
    """

    num_images: int = 8

    def __post_init__(self) -> None:
        if self.num_images < 1:
            raise ValueError(f"pictures need num_images >= 1, got {self.num_images}")
