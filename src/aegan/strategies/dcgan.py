"""`dcgan`: the control. No autoencoder; non-saturating GAN (Goodfellow et al. 2014, Radford et al. 2015).

    L_D = -E[log D(x)] - E[log(1 - D(G(z)))]
    L_G = -E[log D(G(z))]

G is the shared `Decoder`, D the shared `Discriminator`, z ~ N(0, I); the step
is `NonSaturatingGAN.train_step` (strategies/base.py), which `ae_init` and
`ae_manifold` train with too.
"""

from __future__ import annotations

from aegan.strategies.base import NonSaturatingGAN


class DCGAN(NonSaturatingGAN):
    name = "dcgan"


STRATEGY = DCGAN
