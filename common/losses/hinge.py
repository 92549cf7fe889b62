"""Hinge adversarial losses (Lim & Ye, "Geometric GAN", 2017; Miyato et al., SN-GAN, ICLR 2018).

The AN paper trains its class-conditional GAN with them (Wang et al., CVPR 2020, Section 4):

* generator, eq. (7):      ``L_G = -E[D(G(z, y), y)]``
* discriminator, eq. (8):  ``L_D = E[relu(1 - D(x, y))] + E[relu(1 + D(G(z, y), y))]``

(eq. 8 prints ``min(...)``; the hinge form ``E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]`` is what SN-GAN,
SA-GAN and the authors' code minimise.) Expectations are batch means.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["hinge_d_loss", "hinge_g_loss"]


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss ``mean(relu(1 - real)) + mean(relu(1 + fake))`` (paper eq. 8).

    Args:
        real_logits: D's outputs on real images, any shape (typically (B,)).
        fake_logits: D's outputs on generated images, any shape.

    Returns:
        Scalar loss (0 when every real logit is >= 1 and every fake logit <= -1).
    """
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """Generator hinge loss ``-mean(fake)`` (paper eq. 7).

    Args:
        fake_logits: D's outputs on generated images, any shape.

    Returns:
        Scalar loss.
    """
    return -fake_logits.mean()
