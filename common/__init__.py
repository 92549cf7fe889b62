"""Shared code of the Attentive Normalization package (Wang et al., CVPR 2020), grouped by concern.

``common.layers`` (AN and its baselines), ``common.losses``, ``common.metrics``, ``common.data`` (DataModules,
masks), ``common.training`` (the run plumbing both tasks share: the LightningCLI base, run folders, checkpoints,
callbacks, the manual optimisation step, W&B tracking, EMA, DDP helpers), ``common.visualization`` (pictures) and
``common.notebooks`` (paths for the notebooks). Sub-packages are imported on demand; importing any of them changes
no environment variable.
"""
