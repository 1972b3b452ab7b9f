"""`ae_disc`: the autoencoder as the discriminator, BEGAN (Berthelot et al. 2017).

D is an autoencoder; its energy is the mean reconstruction error L(v) = mean |v - D(v)|.

    L_D = L(x) - k_t L(G(z_p))
    L_G = L(G(z_p))
    k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z_p))), 0, 1),   k_0 = 0
    M = L(x) + |gamma L(x) - L(G(z_p))|     (convergence measure, logged)

D is the paper's autoencoder (its Fig. 1) scaled to our image sizes: 3x3 conv + ELU
blocks and no BatchNorm, so each image's energy depends on that image alone and real
and fake batches are judged by the same function. G stays the shared `Decoder`, as for
every strategy. gamma is the paper's 0.5. The paper ran for hundreds of thousands of
steps with lambda_k = 0.001; our budget is a thousand, so the default lambda_k is ten
times that, which lets k_t reach its equilibrium band (L(G(z)) / L(x) near gamma, k_t
steady) within the default budget; the report plots k_t and M. D's width n and
bottleneck h are scaled down with the images: its 3x3 convolutions at full resolution
make it the costliest network of all six strategies. The optimizer is the one shared
by all strategies.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aegan.nets import Decoder, NetShape
from aegan.strategies.base import Strategy


def conv_elu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1), nn.ELU()]


class BEGANAutoEncoder(nn.Module):
    """Berthelot et al. (2017) Fig. 1 down to 8x8: encoder n, 2n, 3n, ... channels, halving the resolution by
    stride-2 convs, then a linear map to h; decoder h -> 8x8xn, two conv blocks per scale, nearest upsampling."""

    def __init__(self, shape: NetShape, width: int, hidden: int):
        super().__init__()
        n, halvings = width, int(math.log2(shape.image_size // 8))
        enc, ch = conv_elu(shape.channels, n), n
        for i in range(halvings):
            enc += [*conv_elu(ch, ch), *conv_elu(ch, ch), *conv_elu(ch, n * (i + 2), stride=2)]
            ch = n * (i + 2)
        self.encoder = nn.Sequential(*enc, *conv_elu(ch, ch), *conv_elu(ch, ch), nn.Flatten(), nn.Linear(ch * 64, hidden))
        dec: list[nn.Module] = [nn.Linear(hidden, n * 64), nn.Unflatten(1, (n, 8, 8))]
        for _ in range(halvings):
            dec += [*conv_elu(n, n), *conv_elu(n, n), nn.Upsample(scale_factor=2, mode="nearest")]
        self.decoder = nn.Sequential(*dec, *conv_elu(n, n), *conv_elu(n, n), nn.Conv2d(n, shape.channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class AEDisc(Strategy):
    name = "ae_disc"

    def __init__(self, params, shape, optimizer, ae=None):
        super().__init__(params, shape, optimizer, ae)
        self.generator = Decoder(shape)
        self.discriminator = BEGANAutoEncoder(shape, params.disc_width, params.disc_hidden)
        # a tensor so the step never syncs with the host; not persistent: it is checkpointed by extra_state
        self.register_buffer("k_t", torch.zeros(()), persistent=False)
        self.opt_g = self.adam(self.generator.parameters())
        self.opt_d = self.adam(self.discriminator.parameters())

    def energy(self, v: torch.Tensor) -> torch.Tensor:
        return (v - self.discriminator(v)).abs().mean()

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        p = self.params
        fake = self.generator(self.sample_prior(real.shape[0]))

        energy_real, energy_fake = self.energy(real), self.energy(fake.detach())
        loss_d = energy_real - self.k_t * energy_fake
        self.update(self.opt_d, loss_d)

        # The paper updates G and D simultaneously from the same batch. Like dcgan we alternate:
        # G's loss is the same fake through the freshly updated D, so G chases the D it will face next.
        loss_g = self.energy(fake)
        self.update(self.opt_g, loss_g)

        # k_t and M use the D-step energies: L(x) and L(G(z)) measured by the same D, detached.
        balance = p.gamma * energy_real.detach() - energy_fake.detach()
        self.k_t.copy_((self.k_t + p.lambda_k * balance).clamp(0.0, 1.0))
        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "k_t": self.k_t.clone(),  # k_{t+1}: the value the next step uses
            "convergence_M": energy_real.detach() + balance.abs(),
            "energy_real": energy_real.detach(),
            "energy_fake": energy_fake.detach(),
        }

    def extra_state(self) -> dict[str, float]:
        return {"k_t": float(self.k_t)}

    def load_extra_state(self, state: dict[str, float]) -> None:
        self.k_t.fill_(float(state["k_t"]))


STRATEGY = AEDisc
