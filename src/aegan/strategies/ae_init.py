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

import torch

from aegan.strategies.base import NonSaturatingGAN


class AEInit(NonSaturatingGAN):
    name = "ae_init"
    uses_ae = True

    def __init__(self, params, shape, optimizer, ae):
        super().__init__(params, shape, optimizer, ae)  # dcgan's G, D and optimizers
        self.generator.load_state_dict(ae.decoder.state_dict())  # copies values: ae is never touched
        if params.init_disc_from_encoder:
            self.discriminator.trunk.load_state_dict(ae.encoder.trunk.state_dict())

    @torch.no_grad()
    def setup(self, train_images: torch.Tensor, ae, batch_size: int = 512) -> None:
        if self.params.latent_prior == "fitted":
            encoder = ae.encoder  # read only, on the device of train_images
            was_training = encoder.training
            encoder.eval()
            self.prior.fit(torch.cat([encoder(b).float() for b in train_images.split(batch_size)]))
            encoder.train(was_training)

    # train_step is dcgan's (NonSaturatingGAN): after the AE-based start, ae_init trains exactly like the control.


STRATEGY = AEInit
