"""`ae_hybrid`: the encoder output feeds the generator; L = L_GAN + L_rec(x, x') + L_rec(x, x'').

Generator and decoder are one network G; E and G start as copies of the pretrained AE
(the AE itself is never touched). With x'' = G(E(x)) and z_p ~ N(0, I):

    L_E,G = lambda_rec mean|x - x''| + L_GAN(G(z_p)) + L_GAN(x'') + lambda_lat L_lat(E)
    L_GAN(v) = -E[log D(v)]                                       (non-saturating)
    L_D   = -E[log D(x)] - 1/2 (E[log(1 - D(G(z_p)))] + E[log(1 - D(x''))])

D sees prior samples and reconstructions as fakes; the two fake terms are averaged so
real and fake weigh as in `dcgan`. L_lat pulls E(x) towards N(0, I), where prior samples land:
  adversarial (Makhzani et al. 2015): D_z tells z_p (real) from E(x) (fake),
      L_Dz = -E[log D_z(z_p)] - E[log(1 - D_z(E(x)))],   L_lat = -E[log D_z(E(x))]
  moments: L_lat = ||mean(E(x))||^2 / z_dim + ||cov(E(x)) - I||_F^2 / z_dim
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from aegan.losses import bce
from aegan.nets import Discriminator
from aegan.strategies.base import Strategy


def moment_penalty(z: torch.Tensor) -> torch.Tensor:
    """||mean||^2 / z_dim + ||cov - I||_F^2 / z_dim of a batch of codes (N, z_dim): 0 for N(0, I) as N grows."""
    d = z.shape[1]
    mean = z.mean(0)
    centred = z - mean
    cov = centred.T @ centred / (z.shape[0] - 1)
    return (mean.pow(2).sum() + (cov - torch.eye(d, device=z.device, dtype=z.dtype)).pow(2).sum()) / d


def latent_discriminator(z_dim: int, width: int) -> nn.Sequential:
    """Small MLP z -> logit, as in adversarial autoencoders."""
    return nn.Sequential(
        nn.Linear(z_dim, width), nn.LeakyReLU(0.2, True),
        nn.Linear(width, width), nn.LeakyReLU(0.2, True),
        nn.Linear(width, 1), nn.Flatten(0),
    )  # fmt: skip


class AEHybrid(Strategy):
    name = "ae_hybrid"
    uses_ae = True

    def __init__(self, params, shape, optimizer, ae):
        super().__init__(params, shape, optimizer, ae)
        # deep copies: training them never changes the caller's (read-only, maybe frozen, eval-mode) AE
        self.encoder = copy.deepcopy(ae.encoder).train().requires_grad_(True)
        self.generator = copy.deepcopy(ae.decoder).train().requires_grad_(True)
        self.discriminator = Discriminator(shape)
        self.opt_eg = self.adam([*self.encoder.parameters(), *self.generator.parameters()])
        self.opt_d = self.adam(self.discriminator.parameters())
        if params.latent_reg == "adversarial":
            self.latent_disc = latent_discriminator(shape.z_dim, params.latent_disc_width)
            self.opt_dz = self.adam(self.latent_disc.parameters())

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        p, log = self.params, {}
        z = self.encoder(real)
        z_p = self.sample_prior(real.shape[0])
        # one pass of G over both kinds of codes: its batch statistics are those of one batch (docs/design.md)
        x_p, x_rec = self.generator(torch.cat([z_p, z])).chunk(2)  # G(z_p), x'' = G(E(x))

        d_real = self.discriminator(real)
        d_p, d_rec = self.discriminator(torch.cat([x_p, x_rec]).detach()).chunk(2)
        loss_d = bce(d_real, 1.0) + 0.5 * (bce(d_p, 0.0) + bce(d_rec, 0.0))
        self.update(self.opt_d, loss_d)

        if p.latent_reg == "adversarial":
            loss_dz = bce(self.latent_disc(z_p), 1.0) + bce(self.latent_disc(z.detach()), 0.0)
            self.update(self.opt_dz, loss_dz)
            loss_lat = bce(self.latent_disc(z), 1.0)
            log["loss_dz"] = loss_dz.detach()
        else:
            loss_lat = moment_penalty(z)

        g_p, g_rec = self.discriminator(torch.cat([x_p, x_rec])).chunk(2)
        loss_rec = (real - x_rec).abs().mean()
        loss_g = p.lambda_rec * loss_rec + bce(g_p, 1.0) + bce(g_rec, 1.0) + p.lambda_lat * loss_lat
        self.update(self.opt_eg, loss_g)

        return log | {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "loss_rec": loss_rec.detach(),
            "loss_lat": loss_lat.detach(),
            "d_real": torch.sigmoid(d_real).mean().detach(),
            "d_fake": torch.sigmoid(d_p).mean().detach(),
        }


STRATEGY = AEHybrid
