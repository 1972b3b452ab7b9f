"""The one interface every strategy implements; the shared loop knows nothing else.

A strategy owns its networks and optimizers and does one training step
(one generator update, plus whatever discriminator/encoder updates its paper
prescribes) in `train_step`. Sampling for evaluation always goes through
`generator` and `prior`, whatever the strategy.

`NonSaturatingGAN` is the standard GAN step (Goodfellow et al. 2014) that
`dcgan` trains with; `ae_init` trains with it unchanged and `ae_manifold`
adds its penalty through the `generator_penalty` hook.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from aegan.generator import LatentPrior
from aegan.losses import bce
from aegan.nets import AutoEncoder, Decoder, Discriminator, NetShape
from aegan.params_base import OptimizerParams, StrategyParams


class Strategy(nn.Module, ABC):
    name: ClassVar[str] = ""
    # whether `compute.cuda_graphs` may replay train_step as a captured graph: no host sync, no per-step Python state
    cuda_graph_safe: ClassVar[bool] = False
    # whether the strategy uses the pretrained AE (then it is loaded, and its cost charged to the strategy)
    uses_ae: ClassVar[bool] = False
    generator: Decoder

    def __init__(self, params: StrategyParams, shape: NetShape, optimizer: OptimizerParams, ae: AutoEncoder | None):
        super().__init__()
        if self.uses_ae and ae is None:
            raise ValueError(f"strategy {self.name!r} needs the pretrained autoencoder")
        self.params = params
        self.shape = shape
        self.optimizer_params = optimizer
        self.prior = LatentPrior(shape.z_dim)

    # --- helpers for subclasses -------------------------------------------------
    def adam(self, parameters, **override: Any) -> torch.optim.Adam:
        o = self.optimizer_params.model_copy(update=override)
        return torch.optim.Adam(parameters, lr=o.lr, betas=(o.beta1, o.beta2))

    @staticmethod
    def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sample_prior(self, n: int) -> torch.Tensor:
        return self.prior.sample(n)

    # --- the interface ------------------------------------------------------------
    def setup(self, train_images: torch.Tensor, ae: AutoEncoder | None) -> None:
        """Called once before training with the training split in [-1, 1] and the AE (or None): e.g. fit a prior."""

    @abstractmethod
    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One generator update (plus the strategy's other updates); returns scalar tensors to log."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.optim.Optimizer)}

    def extra_state(self) -> dict[str, Any]:
        """Non-tensor state to checkpoint (e.g. BEGAN's k_t)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` returned."""

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue training: networks, optimizers, strategy state."""
        return {
            "modules": self.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "extra": self.extra_state(),
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["modules"])
        optimizers = self.optimizers()
        if set(optimizers) != set(state["optimizers"]):
            raise ValueError(f"checkpoint optimizers {sorted(state['optimizers'])} != {sorted(optimizers)}")
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.load_extra_state(state["extra"])

    @torch.no_grad()
    def generate(self, eps: torch.Tensor) -> torch.Tensor:
        """Images for standard-normal `eps` pushed through the prior: the shared sampling path."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generator(self.prior.transform(eps))
        finally:
            self.generator.train(was_training)


class NonSaturatingGAN(Strategy):
    """G = the shared Decoder, D = the shared Discriminator, one D update then one G update per step:

        L_D = -E[log D(x)] - E[log(1 - D(G(z)))]
        L_G = -E[log D(G(z))] + penalty(G(z))          (penalty: the `generator_penalty` hook, 0 by default)
    """

    cuda_graph_safe = True  # with the default hook; a subclass whose penalty keeps per-step Python state says False

    def __init__(self, params, shape, optimizer, ae=None):
        super().__init__(params, shape, optimizer, ae)
        self.generator = Decoder(shape)
        self.discriminator = Discriminator(shape)
        self.opt_g = self.adam(self.generator.parameters())
        self.opt_d = self.adam(self.discriminator.parameters())

    def generator_penalty(self, fake: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """An extra term of G's loss on this step's fakes (with its graph), and what to log; None: no term."""
        return None, {}

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        fake = self.generator(self.sample_prior(real.shape[0]))

        d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())
        loss_d = bce(d_real, 1.0) + bce(d_fake, 0.0)
        self.update(self.opt_d, loss_d)

        loss_gan = bce(self.discriminator(fake), 1.0)
        penalty, logged = self.generator_penalty(fake)
        loss_g = loss_gan if penalty is None else loss_gan + penalty
        self.update(self.opt_g, loss_g)

        if penalty is not None:
            logged = {"loss_gan": loss_gan.detach(), **logged}
        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            **logged,
            "d_real": torch.sigmoid(d_real).mean().detach(),
            "d_fake": torch.sigmoid(d_fake).mean().detach(),
        }
