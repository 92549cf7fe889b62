"""Shared code of the Attentive Normalization package (Wang et al., CVPR 2020).

``common.layers`` (AN and its baselines), ``common.losses``, ``common.metrics``, ``common.data``,
``common.callbacks``, plus ``common.cli`` (the LightningCLI base), ``common.tracking`` (W&B),
``common.visualization`` (pictures) and ``common.ema``. Sub-packages are imported on demand.

Importing this package (which ``an_gan`` and ``an_inpaint`` do first, before torch) sets
``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it: with OpenMP's default spin-waiting, torch's CPU
threads busy-wait for each other, and on a machine whose cores are shared with other processes (a laptop, a CI
runner, a data-loading pool) small CPU steps become many times slower (the digits demo under one other busy process:
0.5 instead of 6.4 training batches per second on 2 cores). OpenMP reads the variable when torch loads it, so it
must be set before ``import torch``; set ``OMP_WAIT_POLICY=ACTIVE`` yourself to keep spinning.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
