"""Which checkpoint ``python -m an_inpaint test`` reports for Table 3, by which rule (it prints both).

Table 3 of the paper compares CA and AN on Paris StreetView without saying which checkpoint each row is. Picking
the best ``val/psnr`` over the whole run would usually pick a phase-1 (reconstruction-only) checkpoint, since the
adversarial phase lowers PSNR, and could pick CA and AN in different phases. The rule here is the same for every
arm: the reported checkpoint is the one at the config's step count (``last.ckpt`` of the finished run,
``trainer.global_step == trainer.max_steps``, which the paris256 configs place in phase 2). Beside it, labelled,
goes ``best-phase2-*.ckpt``: the best ``val/psnr_phase2``, a metric the module logs only at validations in phase 2
(:class:`BestInPhaseCheckpoint` ignores the others), so it is never a reconstruction-only model. The same protocol
as :mod:`an_gan.reporting` (the final checkpoint is the number; a checkpoint chosen on validation goes beside it).
"""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint

__all__ = [
    "BEST_PREFIX",
    "PHASE2_METRIC",
    "RULE",
    "BestInPhaseCheckpoint",
    "best_phase2_checkpoint",
    "checkpoint_label",
]

#: The validation metric logged only in phase 2 (``val/psnr`` of validations run in the adversarial phase).
PHASE2_METRIC = "val/psnr_phase2"
#: File-name prefix of the best phase-2 checkpoint.
BEST_PREFIX = "best-phase2-psnr"

#: The reporting rule, as ``test`` prints it.
RULE = (
    "Table 3 rule (every arm alike): report the checkpoint at the config's step count (last.ckpt of the finished "
    f"run, in phase 2); {BEST_PREFIX}-*.ckpt (best val/psnr among phase-2 validations) is reported beside it, "
    "labelled 'best phase-2 val-PSNR checkpoint', never in its place"
)


class BestInPhaseCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose monitored metric may be missing: validations that did not log it are skipped.

    The inpainting module logs :data:`PHASE2_METRIC` only in phase 2, so phase-1 validations (where Lightning's own
    ``ModelCheckpoint`` would raise on the missing key) never save or replace the best checkpoint.
    """

    def _save_topk_checkpoint(self, trainer, monitor_candidates) -> None:  # noqa: ANN001 (Lightning's signature)
        if self.monitor is not None and self.monitor not in monitor_candidates:
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)


def best_phase2_checkpoint() -> BestInPhaseCheckpoint:
    """The ``fit`` callback keeping the best phase-2 checkpoint, ``best-phase2-psnr-step<global step>.ckpt``."""
    return BestInPhaseCheckpoint(
        monitor=PHASE2_METRIC,
        mode="max",
        save_top_k=1,
        filename=BEST_PREFIX + "-step{step}",
        auto_insert_metric_name=False,
    )


def checkpoint_label(ckpt_path: str | Path | None, step: int, max_steps: int | None, phase: int) -> tuple[str, str]:
    """``(label, sentence)`` of the checkpoint a ``test`` scores.

    Args:
        ckpt_path: the checkpoint given to ``test`` (None: the model in memory).
        step: its ``trainer.global_step`` (optimiser steps of the generator and the critics).
        max_steps: the run's ``trainer.max_steps`` (None or < 0: unknown).
        phase: its training phase (1: reconstruction only, 2: adversarial).

    Returns:
        ``label`` is ``"best-phase2-val-psnr"`` (a ``best-phase2-psnr*.ckpt`` file), ``"final"`` (step = the run's
        step count), ``"intermediate"`` (fewer) or ``"unknown-length"``; ``sentence`` says what it is and how to
        report it.
    """
    name = Path(ckpt_path).name if ckpt_path else "the model in memory"
    target = max_steps if max_steps is not None and max_steps > 0 else None
    where = f"step {step}" + (f" of {target}" if target is not None else "") + f", phase {phase}"
    if name.startswith(BEST_PREFIX):
        return "best-phase2-val-psnr", (
            f"{name} ({where}) is the best phase-2 val-PSNR checkpoint (chosen on the validation split): report its "
            "numbers beside the final checkpoint's, labelled 'best phase-2 val-PSNR checkpoint', never in their place"
        )
    if target is None:
        return "unknown-length", f"{name} ({where}); the run length is unknown (trainer.max_steps is not set)"
    if step >= target:
        extra = "" if phase == 2 else " (but still in phase 1: the config never reached the adversarial phase)"
        return "final", f"{name} ({where}) is the model at the config's step count: the Table 3 number{extra}"
    return "intermediate", (
        f"{name} ({where}) is an intermediate checkpoint, not a Table 3 number: the row reports the model at "
        f"step {target} (last.ckpt of the finished run)"
    )
