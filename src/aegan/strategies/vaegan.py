"""`vaegan`: a VAE whose decoder is also a GAN generator (Larsen et al. 2016, Algorithm 1).

Trains its own VAE from scratch (the pretrained AE is not used). With
(mu, log sigma^2) = Enc(x), z = mu + sigma * eps, x~ = Dec(z), x_p = Dec(z_p), z_p ~ N(0, I):

    L_prior = KL(q(z|x) || N(0, I))    = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
    L_llike = ||D_l(x) - D_l(x~)||^2   = 1/2 sum over the features of D's hidden layer D_l
    L_GAN   = -E[log D(x)] - E[log(1 - D(x~))] - E[log(1 - D(x_p))]          (D's loss)
    L_G     = -E[log D(x~)] - E[log D(x_p)]                                  (non-saturating, Dec's)

both per image (summed over latent dims / features), averaged over the batch: a unit-variance
Gaussian log-likelihood in feature space, so beta = 1 is the ELBO's own balance of the two.
Updates, all from one forward pass and applied together as in the paper:

    Enc <- grad_Enc(beta L_prior + L_llike)        (no GAN gradient reaches the encoder)
    Dec <- grad_Dec(gamma L_llike + L_G)
    D   <- grad_D(L_GAN)                           (D never sees L_llike)

L_llike is a per-image sum over all of D_l's features, so it is far larger than L_G: gamma puts gamma L_llike at
the scale of L_G, the balance Larsen's 1e-6 strikes between their summed losses (`python bench/loss_scales.py`).
"""

from __future__ import annotations

import torch
from torch import nn

from aegan.losses import bce
from aegan.nets import Decoder, Discriminator, Encoder
from aegan.strategies.base import Strategy


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over latent dims, averaged over the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()


class VAEGAN(Strategy):
    name = "vaegan"

    def __init__(self, params, shape, optimizer, ae=None):
        super().__init__(params, shape, optimizer, ae)
        self.encoder = Encoder(shape, out_dim=2 * shape.z_dim)
        self.generator = Decoder(shape)
        self.discriminator = Discriminator(shape)
        self.opt_enc = self.adam(self.encoder.parameters())
        self.opt_dec = self.adam(self.generator.parameters())
        self.opt_d = self.adam(self.discriminator.parameters())

    def losses(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every loss term of one step, from one forward pass, with its graph."""
        n = real.shape[0]
        mu, logvar = self.encoder(real).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        # One pass of Dec over both kinds of codes (its batch statistics are those of one batch, docs/design.md). D sees
        # the real batch and the fake batch [x~, x_p] in a pass each, as in every other strategy, and D_l comes from
        # those same passes, so the feature loss sees the batch statistics D's logits see. (One mixed pass of D over
        # real and fake images trained far worse here: see docs/design.md.)
        x_tilde, x_p = self.generator(torch.cat([z, self.sample_prior(n)])).chunk(2)
        f_real, d_real = self.discriminator.features_and_logits(real)
        f_fake, d_fake = self.discriminator.features_and_logits(torch.cat([x_tilde, x_p]))
        f_tilde, (d_tilde, d_p) = f_fake[:n], d_fake.chunk(2)
        return {
            "kl": kl_standard_normal(mu, logvar),
            "loss_llike": 0.5 * (f_real - f_tilde).pow(2).sum(1).mean(),
            "loss_g": bce(d_tilde, 1.0) + bce(d_p, 1.0),
            "loss_d": bce(d_real, 1.0) + bce(d_tilde, 0.0) + bce(d_p, 0.0),
            "d_real": torch.sigmoid(d_real).mean(),
            "d_fake": torch.sigmoid(d_p).mean(),
        }

    @staticmethod
    def set_grads(loss: torch.Tensor, module: nn.Module) -> None:
        """.grad of `module`'s parameters = d loss / d parameters, and nothing else anywhere."""
        params = list(module.parameters())
        for param, grad in zip(params, torch.autograd.grad(loss, params, retain_graph=True)):
            param.grad = grad

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        p, out = self.params, self.losses(real)
        out["loss_enc"] = p.beta * out["kl"] + out["loss_llike"]
        out["loss_dec"] = p.gamma * out["loss_llike"] + out["loss_g"]
        self.set_grads(out["loss_enc"], self.encoder)
        self.set_grads(out["loss_dec"], self.generator)
        self.set_grads(out["loss_d"], self.discriminator)
        for opt in (self.opt_enc, self.opt_dec, self.opt_d):  # all gradients first, then the steps
            opt.step()
        return {k: v.detach() for k, v in out.items()}


STRATEGY = VAEGAN
