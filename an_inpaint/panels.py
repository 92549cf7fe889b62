"""Validation pictures of the inpainting task: result panels, CA offset flow and AN layouts.

One row per validation sample: the input with its hole (white) | the coarse output | the refined output | the
composited result (what is scored; any seam at the hole's border shows here) | each classical baseline scored in
the same run (e.g. OpenCV Telea) | the ground truth | with contextual attention, CA's offset flow (hue = direction,
saturation = length of the shift to the attended patch; DeepFill v1's visualisation), upsampled to the image size.
The AN layouts of the refinement stage get their own panel (paper Figure 5 style).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from an_inpaint.baselines import METHODS
from common.layers.contextual_attention import offsets_to_image
from common.training.callbacks.images import log_image
from common.visualization import labelled_grid, layout_panel, to_unit

__all__ = ["log_panels", "result_panel"]


def result_panel(panel: dict[str, Any]) -> tuple[Tensor, str]:
    """The result grid ``(3, H', W')`` in [0, 1], a label above each column, tiles enlarged to at least 128 px
    (:func:`common.visualization.labelled_grid`), of a dict with ``image``, ``mask``, ``coarse``, ``refined``,
    ``inpainted`` (all in [-1, 1]), optional baseline outputs under their method names and optional CA
    ``offsets``; and its caption (the column names)."""
    image, mask = panel["image"], panel["mask"]
    masked = image * (1 - mask) + mask  # the hole shown in white
    columns = [("input with hole", masked), ("coarse", panel["coarse"]), ("refined", panel["refined"])]
    columns.append(("composited", panel["inpainted"]))
    columns += [(m, panel[m]) for m in METHODS if m in panel]
    columns.append(("ground truth", image))
    tiles = [to_unit(t.float()) for _, t in columns]
    if panel.get("offsets") is not None:
        flow = F.interpolate(offsets_to_image(panel["offsets"].float()), size=image.shape[-2:], mode="nearest")
        tiles.append(flow.cpu())
        columns.append(("CA offsets", None))
    names = [name for name, _ in columns]
    return labelled_grid(torch.stack([t.cpu() for t in tiles], dim=1), names), " | ".join(names)


def log_panels(trainer: pl.Trainer, panel: dict[str, Any], stage: str = "val") -> None:
    """Write (and log to W&B) the result panel as ``<stage>/panel`` and each AN layout as ``<stage>/layout_<name>``
    (``stage``: ``"val"`` or ``"test"``)."""
    grid, caption = result_panel(panel)
    log_image(trainer, f"{stage}/panel", grid, caption=caption)
    for name, layout in panel.get("layouts", {}).items():
        grid = layout_panel(to_unit(panel["inpainted"].float()), layout.float())
        log_image(trainer, f"{stage}/layout_{name}", grid, caption=f"AN layout of {name}")
