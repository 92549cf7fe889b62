"""Class-conditional image generation with Attentive Normalization (Wang et al., CVPR 2020, Section 4).

``an_gan.networks`` (plain ``nn.Module`` generator and discriminator), ``an_gan.module`` (the ``ANGAN``
LightningModule), ``an_gan.predict`` (the PNG writer of ``predict``, class grids, categorical interpolation) and
``an_gan.cli`` (``python -m an_gan``).

The package itself imports nothing (no re-exports): ``python -m an_gan`` runs ``an_gan.__main__``, which sets
OpenMP's wait policy before anything loads torch. Import from the modules (``an_gan.module``, ``an_gan.networks``, ...).
"""
