"""WGAN-GP losses (Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017).

The AN paper trains its inpainting critics with WGAN-GP (Wang et al., CVPR 2020, eq. 10):
``L_D = E[D(fake)] - E[D(real)] + lambda_gp * E[(||grad D(x_tilde)||_2 - 1)^2]`` with
``x_tilde = t * fake + (1 - t) * real``, ``t ~ U[0, 1]`` per sample. DeepFill v1 (Yu et al., CVPR 2018)
multiplies the critic's input gradient by the hole mask before taking its norm, so that only the missing
region is constrained; :func:`gradient_penalty` does the same when a mask is given. The weight ``lambda_gp``
is applied by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["gradient_penalty", "wgan_d_loss", "wgan_g_loss"]


def wgan_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Critic loss ``E[D(fake)] - E[D(real)]`` (to be minimised).

    Args:
        real: Critic scores of real images, any shape.
        fake: Critic scores of generated images, any shape.

    Returns:
        Scalar loss.
    """
    return fake.mean() - real.mean()


def wgan_g_loss(fake: Tensor) -> Tensor:
    """Generator loss ``-E[D(fake)]`` (to be minimised).

    Args:
        fake: Critic scores of generated images, any shape (``(B,)`` for the inpainting critics).

    Returns:
        Scalar (0-dim) loss.
    """
    return -fake.mean()


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Gradient penalty ``E[(||m * grad_x D(x_tilde)||_2 - 1)^2]`` of paper eq. 10.

    Args:
        critic: Callable mapping a batch ``(B, ...)`` to scores ``(B,)`` or ``(B, 1)``.
        real: Real batch ``(B, C, H, W)``.
        fake: Generated batch of the same shape (detached by this function).
        mask: Optional ``(B, 1, H, W)`` or broadcastable weights (1 = hole); the input gradient is multiplied
            by it before the norm (DeepFill v1).
        generator: Optional RNG for the interpolation weights ``t`` (one per sample, on CPU then moved).

    Returns:
        Scalar penalty (without ``lambda_gp``).

    Raises:
        ValueError: If ``real`` and ``fake`` differ in shape or the mask does not broadcast to them.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if mask is not None:
        try:
            torch.broadcast_shapes(mask.shape, real.shape)
        except RuntimeError as err:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(real.shape)}") from err
    batch = real.shape[0]
    t = torch.rand((batch,) + (1,) * (real.dim() - 1), generator=generator, dtype=real.dtype)
    t = t.to(real.device)
    interp = (t * fake.detach() + (1 - t) * real.detach()).requires_grad_(True)
    with torch.enable_grad():
        scores = critic(interp)
        (grad,) = torch.autograd.grad(scores.sum(), interp, create_graph=True)
    if mask is not None:
        grad = grad * mask
    norm = grad.flatten(1).norm(2, dim=1)
    return ((norm - 1.0) ** 2).mean()
