"""`dcgan`: the control. No autoencoder; non-saturating GAN (Goodfellow et al. 2014, Radford et al. 2015).

    L_D = -E[log D(x)] - E[log(1 - D(G(z)))]
    L_G = -E[log D(G(z))]
"""

from __future__ import annotations

import torch

from aegan.losses import bce
from aegan.nets import Decoder, Discriminator
from aegan.strategies import register_strategy
from aegan.strategies.base import Strategy, StrategyParams


class DCGANParams(StrategyParams):
    pass


@register_strategy("dcgan")
class DCGAN(Strategy):
    Params = DCGANParams

    def __init__(self, params, shape, optimizer, ae=None):
        super().__init__(params, shape, optimizer, ae)
        self.generator = Decoder(shape)
        self.discriminator = Discriminator(shape)
        self.opt_g = self.adam(self.generator.parameters())
        self.opt_d = self.adam(self.discriminator.parameters())

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        fake = self.generator(self.sample_prior(real.shape[0]))

        d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())
        loss_d = bce(d_real, 1.0) + bce(d_fake, 0.0)
        self.update(self.opt_d, loss_d)

        loss_g = bce(self.discriminator(fake), 1.0)
        self.update(self.opt_g, loss_g)

        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "d_real": torch.sigmoid(d_real).mean().detach(),
            "d_fake": torch.sigmoid(d_fake).mean().detach(),
        }
