"""Adversarial losses as functions: hinge (class-conditional GAN, paper eq. 7-8) and WGAN-GP (inpainting, eq. 10)."""

from common.losses.hinge import hinge_d_loss, hinge_g_loss
from common.losses.wgan_gp import gradient_penalty, wgan_d_loss, wgan_g_loss

__all__ = ["gradient_penalty", "hinge_d_loss", "hinge_g_loss", "wgan_d_loss", "wgan_g_loss"]
