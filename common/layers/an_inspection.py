"""What the AN layers inside a network are doing: their last soft layouts and their learned output scale ``rho``.

AN's output is ``X + rho * X_bar`` (paper eq. 6) with ``rho`` initialised to 0, so an AN layer whose ``rho`` stays
near 0 leaves its input unchanged whatever its layouts look like: ``rho`` is the first thing to read when asking
whether AN contributes. Both tasks log :func:`an_rho` during training and draw :func:`collect_layouts`.
"""

from __future__ import annotations

from torch import Tensor, nn

from common.layers.attentive_norm import AttentiveNorm2d

__all__ = ["an_rho", "collect_layouts"]


def collect_layouts(module: nn.Module) -> dict[str, Tensor]:
    """Last soft layouts of the AN layers inside ``module``: ``{qualified name: (B, n, H, W)}``.

    Layers that have not run yet are left out.
    """
    return {
        name: m.layout for name, m in module.named_modules() if isinstance(m, AttentiveNorm2d) and m.layout is not None
    }


def an_rho(module: nn.Module) -> dict[str, Tensor]:
    """The learned ``rho`` of every AN layer inside ``module`` (detached scalars): ``{qualified name: rho}``."""
    return {name: m.rho.detach() for name, m in module.named_modules() if isinstance(m, AttentiveNorm2d)}
