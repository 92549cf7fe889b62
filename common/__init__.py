"""Shared code of the Attentive Normalization package (Wang et al., CVPR 2020).

``common.layers`` (AN and its baselines), ``common.losses``, ``common.metrics``, ``common.data``,
``common.callbacks``, plus ``common.cli`` (the LightningCLI base), ``common.tracking`` (W&B),
``common.visualization`` (pictures) and ``common.ema``. Sub-packages are imported on demand.
"""
