"""`ae_disc`: the autoencoder as the discriminator, BEGAN (Berthelot et al. 2017).

D is an autoencoder; its energy is the mean reconstruction error L(v) = mean |v - D(v)|.

    L_D = L(x) - k_t L(G(z_p))
    L_G = L(G(z_p))
    k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z_p))), 0, 1),   k_0 = 0
    M = L(x) + |gamma L(x) - L(G(z_p))|     (convergence measure, logged)

Defaults gamma 0.5, lambda_k 0.001 as in the paper. The paper used Adam 1e-4, beta1 0.5;
here the optimizer is the one shared by all strategies (Adam 2e-4, betas 0.5/0.999) for fairness.
Option `init_disc_from_ae`: D starts as a copy of the pretrained AE (the given AE is never changed).
"""

from __future__ import annotations

import copy

import torch
from pydantic import Field

from aegan.nets import AutoEncoder, Decoder
from aegan.strategies.base import Strategy, StrategyParams


class AEDiscParams(StrategyParams):
    gamma: float = Field(0.5, gt=0.0, le=1.0)  # diversity ratio E[L(G(z))] / E[L(x)] at equilibrium
    lambda_k: float = Field(0.001, ge=0.0)  # learning rate of k_t
    init_disc_from_ae: bool = False


class AEDisc(Strategy):
    name = "ae_disc"
    Params = AEDiscParams

    @classmethod
    def uses_ae(cls, params: AEDiscParams) -> bool:
        return params.init_disc_from_ae

    def __init__(self, params, shape, optimizer, ae=None):
        super().__init__(params, shape, optimizer, ae)
        self.generator = Decoder(shape)
        if params.init_disc_from_ae:
            self.discriminator = copy.deepcopy(ae).train().requires_grad_(True)
        else:
            self.discriminator = AutoEncoder(shape)
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
