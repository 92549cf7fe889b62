"""Log per-step training values only on the steps whose values reach the loggers.

Lightning's ``LightningModule.log`` does real work on every call, whether or not the step is written out: each call
moves the key's result object to the value's device (``_ResultMetric.to``, about 1 ms per key on a CPU, measured
with cProfile in the digits demo), and the loggers only receive the values of every ``log_every_n_steps``-th batch
(``Trainer(log_every_n_steps=...)``). A GAN iteration that logs a dozen scalars therefore spent about a tenth of
the digits demo's time on values nobody sees. :func:`is_logging_step` answers "will this batch's logged values be
written?" with Lightning's own rule, so a module can call ``self.log`` only then; what the loggers receive is
unchanged. What changes: ``trainer.callback_metrics`` (and the progress bar) hold the values of the last logging
step, not of the last step. ``an_gan.module.ANGAN`` uses it (a dozen scalars per ~0.15 s CPU iteration in the
demo); ``an_inpaint`` logs every step (its ~8 scalars are ~4% of a demo step, and its progress bar and tests read
the latest phase and losses).
"""

from __future__ import annotations

import pytorch_lightning as pl

__all__ = ["is_logging_step"]


def is_logging_step(module: pl.LightningModule, ahead: int = 0) -> bool:
    """True when the current training batch's logged values, or those of one of the next ``ahead`` batches, are
    written to the loggers, and on the first batch.

    The rule is Lightning's ``trainer._logger_connector.should_update_logs`` (batch count + 1 divisible by
    ``log_every_n_steps``, or the trainer stopping). ``ahead`` is for values logged only every few batches: a GAN
    logs its G values on one batch in ``n_dis``, and Lightning writes the latest value of every key at a logging
    batch, so with ``ahead=n_dis - 1`` the G values written are those of the last G step, as when every batch logs.
    The first batch of a fit (``global_step == 0``) also logs, so that ``trainer.callback_metrics`` holds the
    training values from the start. Call it once at the start of ``training_step`` (before any optimiser step changes
    ``global_step``). Without an attached trainer, True.
    """
    trainer = getattr(module, "_trainer", None)
    connector = getattr(trainer, "_logger_connector", None)
    if connector is None or module.global_step == 0 or connector.should_update_logs:
        return True
    every = trainer.log_every_n_steps
    batches = getattr(getattr(trainer.fit_loop, "epoch_loop", None), "_batches_that_stepped", None)
    if not ahead or not every or batches is None:
        return False
    return any((batches + 1 + j) % every == 0 for j in range(1, ahead + 1))
