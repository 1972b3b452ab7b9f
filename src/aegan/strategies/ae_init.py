"""`ae_init`: the AE as part of the generator. Pretrain the AE, then train adversarially.

G starts as a copy of the pretrained decoder Dec, then trains exactly like `dcgan`:

    L_D = -E[log D(x)] - E[log(1 - D(G(z)))]
    L_G = -E[log D(G(z))]

A decoder fed N(0, I) is off the manifold it learned, so by default (`latent_prior:
fitted`) z ~ N(mu, Sigma) with the mean and full covariance of the encoder codes E(x)
of the training split; the prior is a buffer stored with the generator, so evaluation
samples from it too. `standard` keeps z ~ N(0, I). Option `init_disc_from_encoder`:
D's trunk starts from the pretrained encoder's trunk (same architecture).
The caller's AE is only read: G and D get copies of its weights.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch

from aegan.strategies import register_strategy
from aegan.strategies.base import StrategyParams
from aegan.strategies.dcgan import DCGAN


class AEInitParams(StrategyParams):
    latent_prior: Literal["fitted", "standard"] = "fitted"
    init_disc_from_encoder: bool = False


@register_strategy("ae_init")
class AEInit(DCGAN):
    Params = AEInitParams
    uses_ae = True

    def __init__(self, params, shape, optimizer, ae):
        super().__init__(params, shape, optimizer, ae)  # dcgan's G, D and optimizers
        self.generator.load_state_dict(ae.decoder.state_dict())  # copies values: ae is never touched
        if params.init_disc_from_encoder:
            self.discriminator.trunk.load_state_dict(ae.encoder.trunk.state_dict())
        # frozen encoder copy for setup(), deliberately not a submodule (not checkpointed, not optimized)
        object.__setattr__(self, "_encoder", copy.deepcopy(ae.encoder).requires_grad_(False).eval())

    @torch.no_grad()
    def setup(self, train_images: torch.Tensor, batch_size: int = 512) -> None:
        if self.params.latent_prior == "fitted":
            encoder = self._encoder.to(train_images.device).eval()
            self.prior.fit(torch.cat([encoder(b).float() for b in train_images.split(batch_size)]))

    # train_step is dcgan's: after the AE-based start, ae_init trains exactly like the control.
