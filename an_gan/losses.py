"""The losses of the class-conditional AN GAN, each returning ``(loss, logs)``.

Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020, Section 4: hinge adversarial
losses (eq. 7 for G, eq. 8 for D; the maths lives in :mod:`common.losses.hinge`) on the projection
discriminator's logits ``D(x, y) = linear(h) + <embed(y), h>`` (Miyato & Koyama 2018; computed by
:class:`an_gan.networks.Discriminator`), plus AN's orthogonal regularisation of the semantic entities, eq. 1,
``lambda_o ||W W^T - I||_F^2`` summed over the AN layers of the network being updated.

Logged values are detached tensors (no host synchronisation); the keys are namespaced by the module.
"""

from __future__ import annotations

from torch import Tensor, nn

from common.layers import orthogonal_loss
from common.losses.hinge import hinge_d_loss, hinge_g_loss

__all__ = ["discriminator_loss", "generator_loss", "orthogonal_regulariser"]


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 8: ``mean(relu(1 - D(x, y))) + mean(relu(1 + D(G(z, y), y)))``.

    Returns:
        The loss and ``{"d_adv": loss, "d_real": mean real logit, "d_fake": mean fake logit}``.
    """
    loss = hinge_d_loss(real_logits, fake_logits)
    logs = {"d_adv": loss.detach(), "d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}
    return loss, logs


def generator_loss(fake_logits: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 7: ``-mean(D(G(z, y), y))``.

    Returns:
        The loss and ``{"g_adv": loss}``.
    """
    loss = hinge_g_loss(fake_logits)
    return loss, {"g_adv": loss.detach()}


def orthogonal_regulariser(network: nn.Module, weight: float, prefix: str) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 1 over the AN layers of ``network``: ``weight * sum ||W W^T - I||_F^2`` (0 without AN layers).

    Args:
        network: the generator or the discriminator.
        weight: ``lambda_o`` (the paper gives no value; 0 is Table 4's "w/o orthogonal reg").
        prefix: log key prefix (``"g"`` or ``"d"``).

    Returns:
        The weighted loss and ``{f"{prefix}_orth": unweighted sum}``.
    """
    if weight < 0:
        raise ValueError(f"the orthogonal weight must be >= 0, got {weight}")
    raw = orthogonal_loss(network)
    return weight * raw, {f"{prefix}_orth": raw.detach()}
