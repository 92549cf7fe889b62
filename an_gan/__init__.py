"""Class-conditional image generation with Attentive Normalization (Wang et al., CVPR 2020, Section 4).

``an_gan.networks`` (plain ``nn.Module`` generator and discriminator), ``an_gan.module`` (the ``ANGAN``
LightningModule), ``an_gan.predict`` (checkpoint loading, class grids, categorical interpolation, PNG writer) and
``an_gan.cli`` (``python -m an_gan``).
"""

from an_gan.networks import Discriminator, Generator

__all__ = ["Discriminator", "Generator"]
