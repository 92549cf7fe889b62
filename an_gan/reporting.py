"""Which checkpoint ``python -m an_gan test`` reports, by which rule (it prints both).

Table 1 of the paper reports every model at its iteration count (column "Iterations": "Ours" 880K, the baselines
1000K), not at its best evaluation. The paper configs train exactly that long (``trainer.max_steps`` = iterations x
(``n_dis`` + 1) optimiser steps), so a row's reported checkpoint is ``last.ckpt`` of the finished run: the model at G
step ``max_steps / (n_dis + 1)``. ``best-fid.ckpt`` keeps the lowest ``val/fid`` of the run's validations (about 88
for the AN model): a checkpoint chosen on a metric close to the reported one, so its test numbers go *beside* the
final ones, labelled "best val-FID checkpoint", never in their place.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RULE", "checkpoint_label"]

#: The reporting rule, as ``test`` prints it.
RULE = (
    "Table 1 rule: report the checkpoint at the config's iteration count (last.ckpt of the finished run); "
    "best-fid.ckpt is reported beside it, labelled 'best val-FID checkpoint'"
)


def checkpoint_label(ckpt_path: str | Path | None, g_steps: int, max_steps: int | None, n_dis: int) -> tuple[str, str]:
    """``(label, sentence)`` of the checkpoint a ``test`` scores.

    Args:
        ckpt_path: the checkpoint given to ``test`` (None: the model in memory).
        g_steps: its generator steps (iterations).
        max_steps: the run's ``trainer.max_steps`` (optimiser steps of both networks; None or < 0: unknown).
        n_dis: D steps per G step.

    Returns:
        ``label`` is ``"best-val-fid"`` (a ``best-fid*.ckpt`` file), ``"final"`` (G step = the run's iteration count),
        ``"intermediate"`` (fewer) or ``"unknown-length"``; ``sentence`` says what it is and how to report it.
    """
    name = Path(ckpt_path).name if ckpt_path else "the model in memory"
    target = max_steps // (n_dis + 1) if max_steps is not None and max_steps > 0 else None
    where = f"G step {g_steps}" + (f" of {target}" if target is not None else "")
    if name.startswith("best-fid"):
        return "best-val-fid", (
            f"{name} ({where}) is the best val-FID checkpoint (chosen on the validation evaluator): report its "
            "numbers beside the final checkpoint's, labelled 'best val-FID checkpoint', never in their place"
        )
    if target is None:
        return "unknown-length", f"{name} ({where}); the run length is unknown (trainer.max_steps is not set)"
    if g_steps >= target:
        return "final", f"{name} ({where}) is the model at the config's iteration count: the Table 1 number"
    return "intermediate", (
        f"{name} ({where}) is an intermediate checkpoint, not a Table 1 number: the row reports the model at "
        f"G step {target} (last.ckpt of the finished run)"
    )
