"""The saved generator: decoder weights + latent prior + what built it.

Evaluation loads every strategy's generator the same way, so sampling goes
through one interface whatever the strategy's prior.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aegan.errors import UserError
from aegan.nets import Decoder, NetShape

FORMAT = "aegan-generator/1"


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


class LoadedGenerator(torch.nn.Module):
    def __init__(self, shape: NetShape):
        from aegan.strategies.base import LatentPrior

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
    from aegan.data import to_uint8

    eps = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([to_uint8(generate(e.to(device))) for e in eps.split(batch_size)])


def fixed_latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The one latent batch every strategy's sample grid uses (DESIGN 6)."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
