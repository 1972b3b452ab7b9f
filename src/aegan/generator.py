"""The generator every strategy trains and every evaluation loads: decoder weights + latent prior.

Evaluation loads every strategy's generator the same way, so sampling goes
through one interface whatever the strategy's prior.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aegan.errors import UserError
from aegan.nets import Decoder, NetShape

FORMAT = "aegan-generator/1"


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


def save_generator(strategy, path: Path, extra: dict | None = None) -> None:
    from aegan.atomic import torch_save

    torch_save(
        {
            "format": FORMAT,
            "strategy": strategy.name,
            "shape": strategy.shape.as_dict(),
            "decoder": strategy.generator.state_dict(),
            "prior": strategy.prior.state_dict(),
            **(extra or {}),
        },
        path,
    )


class LoadedGenerator(nn.Module):
    def __init__(self, shape: NetShape):
        super().__init__()
        self.shape = shape
        self.decoder = Decoder(shape)
        self.prior = LatentPrior(shape.z_dim)

    @torch.no_grad()
    def generate(self, eps: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] for standard-normal `eps` pushed through the stored prior."""
        return self.decoder(self.prior.transform(eps))


def load_generator(path: str | Path, shape: NetShape | None = None, device="cpu") -> tuple[LoadedGenerator, dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: generator not found: run the matching `aegan train` stage first")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
        if bundle.get("format") != FORMAT:  # an AE, scorer or checkpoint
            raise ValueError("not a generator")
        saved = NetShape(**bundle["shape"])
    except Exception as err:
        raise UserError(f"{path}: not a valid generator file ({type(err).__name__}): re-run its train stage") from None
    if shape is not None and saved != shape:
        raise UserError(f"{path}: generator built for {saved}, params.yaml asks for {shape}: re-run its train stage")
    gen = LoadedGenerator(saved)
    gen.decoder.load_state_dict(bundle["decoder"])
    gen.prior.load_state_dict(bundle["prior"])
    return gen.to(device).eval(), bundle


@torch.no_grad()
def sample_uint8(generate, n: int, z_dim: int, seed: int, device, batch_size: int = 500) -> torch.Tensor:
    """n samples as uint8 from `generate(eps)`, eps drawn from a seeded CPU generator (same on any device)."""
    from aegan.images import to_uint8

    eps = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([to_uint8(generate(e.to(device))) for e in eps.split(batch_size)])


def fixed_latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The one latent batch every strategy's sample grid uses (docs/design.md, the evaluation)."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
