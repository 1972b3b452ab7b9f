"""Shared DCGAN-style networks, sized from image size, channels, z_dim and width.

Every strategy's generator is a `Decoder` built from the same `NetShape`, so
all generators have the same architecture and parameter count (docs/design.md, the protocol).
Resolution halves layer by layer down to 4x4; channels double as it does
(width at S/2, 2*width at S/4, ...), as in Radford et al. 2015.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetShape:
    image_size: int
    channels: int
    z_dim: int
    width: int

    def __post_init__(self) -> None:
        if self.image_size < 8 or 2 ** int(math.log2(self.image_size)) != self.image_size:
            raise ValueError(f"image_size must be a power of two >= 8, got {self.image_size}")

    @property
    def n_halvings(self) -> int:
        """Stride-2 layers between the image and the 4x4 bottleneck."""
        return int(math.log2(self.image_size)) - 2

    @property
    def bottleneck_channels(self) -> int:
        return self.width * 2 ** (self.n_halvings - 1)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_data(cls, model, data_shape: tuple[int, int, int]) -> "NetShape":
        """The shape of every network for images of `data_shape` (C, S, S) and params.yaml's `model` section."""
        channels, size, _ = data_shape
        return cls(image_size=size, channels=channels, z_dim=model.z_dim, width=model.width)


class AutocastModule(nn.Module):
    """Runs its forward under bf16 autocast when enabled (CUDA mixed precision), returning float32.

    Putting autocast inside the networks keeps strategies free of AMP code and
    keeps every loss and backward pass in float32.
    """

    autocast_device: str | None = None

    def forward(self, *args, **kwargs):
        if self.autocast_device is None:
            return self.body(*args, **kwargs)
        with torch.autocast(self.autocast_device, dtype=torch.bfloat16):
            out = self.body(*args, **kwargs)
        return out.float() if torch.is_tensor(out) else tuple(o.float() for o in out)

    def body(self, *args, **kwargs):  # pragma: no cover - overridden
        raise TypeError(f"{type(self).__name__} must define body()")


def set_autocast(module: nn.Module, device_type: str | None) -> None:
    """Enable (device_type='cuda') or disable (None) autocast in every AutocastModule of `module`."""
    for m in module.modules():
        if isinstance(m, AutocastModule):
            m.autocast_device = device_type


class Decoder(AutocastModule):
    """z (N, z_dim) -> image (N, C, S, S) in [-1, 1]. The generator of every strategy."""

    def __init__(self, shape: NetShape):
        super().__init__()
        self.shape = shape
        ch = shape.bottleneck_channels
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(shape.z_dim, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(shape.n_halvings - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, shape.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def body(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class ConvTrunk(nn.Module):
    """image -> (N, bottleneck_channels, 4, 4): the shared body of encoders and discriminators."""

    def __init__(self, shape: NetShape):
        super().__init__()
        ch = shape.width
        layers: list[nn.Module] = [nn.Conv2d(shape.channels, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(shape.n_halvings - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        self.net = nn.Sequential(*layers)
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Encoder(AutocastModule):
    """image -> code (N, out_dim); out_dim = z_dim for an AE, 2*z_dim for a VAE (mu, log sigma^2)."""

    def __init__(self, shape: NetShape, out_dim: int | None = None):
        super().__init__()
        self.shape = shape
        self.out_dim = out_dim or shape.z_dim
        self.trunk = ConvTrunk(shape)
        self.head = nn.Conv2d(self.trunk.out_channels, self.out_dim, 4, 1, 0)
        self.apply(dcgan_init)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)).flatten(1)


class Discriminator(AutocastModule):
    """image -> real/fake logit (N,). `features_and_logits` also gives the hidden layer D_l used by VAE-GAN."""

    def __init__(self, shape: NetShape):
        super().__init__()
        self.shape = shape
        self.trunk = ConvTrunk(shape)
        self.head = nn.Conv2d(self.trunk.out_channels, 1, 4, 1, 0)
        self.apply(dcgan_init)

    def body(self, x: torch.Tensor, with_features: bool = False):
        h = self.trunk(x)
        logits = self.head(h).flatten()
        return (h.flatten(1), logits) if with_features else logits

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D_l(x) (N, features) and the logits (N,) from one pass, so both see the same batch statistics."""
        return self(x, with_features=True)


class AutoEncoder(nn.Module):
    """Dec(E(x)); pretrained once by `aegan pretrain-ae`, loaded read-only by the strategies that use it."""

    def __init__(self, shape: NetShape):
        super().__init__()
        self.shape = shape
        self.encoder = Encoder(shape)
        self.decoder = Decoder(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def dcgan_init(m: nn.Module) -> None:
    """N(0, 0.02) conv weights, N(1, 0.02) batch-norm scales (Radford et al. 2015)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
