"""Run plumbing shared by both tasks: what turns a LightningModule into a run a researcher can leave for days.

``cli`` (the LightningCLI base of ``python -m an_gan`` / ``python -m an_inpaint``), ``runs`` (run folders and loading a
run's checkpoint), ``checkpoints`` (atomic checkpoint I/O and the task / architecture stamp), ``callbacks``
(interrupt checkpoints, exact resume, the non-finite guard, speed options, image logging), ``optimization`` (the manual
optimisation step), ``tracking`` (W&B), ``ema`` (exponential moving average and standing statistics),
``step_logging``, ``ddp`` and ``prefetch``. Sub-modules are imported on demand.
"""
