"""The one interface every strategy implements; the shared loop knows nothing else.

A strategy owns its networks and optimizers and does one training step
(one generator update, plus whatever discriminator/encoder updates its paper
prescribes) in `train_step`. Sampling for evaluation always goes through
`generator` and `prior`, whatever the strategy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from aegan.nets import AutoEncoder, Decoder, NetShape
from aegan.params import OptimizerParams


class StrategyParams(BaseModel):
    """Base of every strategy's params section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LatentPrior(nn.Module):
    """z = mean + L @ eps with eps ~ N(0, I). Standard normal: mean 0, L = I.

    Stored with the generator, so sampling after training uses the prior the
    strategy trained with, and the fixed grid latents (eps) mean the same
    thing for every strategy.
    """

    def __init__(self, z_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(z_dim))
        self.register_buffer("scale_tril", torch.eye(z_dim))

    def transform(self, eps: torch.Tensor) -> torch.Tensor:
        return self.mean + eps @ self.scale_tril.T

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(n, self.mean.numel(), device=self.mean.device, generator=generator)
        return self.transform(eps)

    def fit(self, codes: torch.Tensor, jitter: float = 1e-4) -> None:
        """Gaussian with the mean and full covariance of `codes` (N, z_dim)."""
        codes = codes.double()
        mean = codes.mean(0)
        cov = torch.cov(codes.T) + jitter * torch.eye(codes.shape[1], dtype=codes.dtype, device=codes.device)
        self.mean.copy_(mean.float())
        self.scale_tril.copy_(torch.linalg.cholesky(cov).float())


class Strategy(nn.Module, ABC):
    name: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    uses_ae: ClassVar[bool] = False
    generator: Decoder

    @classmethod
    def needs_ae(cls, params: StrategyParams) -> bool:
        """Whether these params use the pretrained AE (then its cost is charged to the strategy)."""
        return cls.uses_ae

    def __init__(self, params: StrategyParams, shape: NetShape, optimizer: OptimizerParams, ae: AutoEncoder | None):
        super().__init__()
        if self.needs_ae(params) and ae is None:
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
    def setup(self, train_images: torch.Tensor) -> None:
        """Called once before training with the whole training split in [-1, 1] (e.g. to fit a prior)."""

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
