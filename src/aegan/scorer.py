"""The offline feature extractor (docs/design.md, the evaluation): a small CNN trained on the training split's labels.

Independent of every strategy and of the AE (reusing the AE's encoder would
favour the AE strategies). Without labels it learns a label-free pretext task:
which of four rotations was applied. Stage `train_scorer` trains it with
`ScorerTrainer`; metrics.py registers it with torch-fidelity.

Stacked digits (aegan.modes) are scored per channel: the net is a one-channel
digit classifier trained on the training split's channels, and `ChannelScorer`
applies it to each channel (features side by side, the mode's log-probability
as the output), so FID, the class counts and the mode counts all use it as
they use a plain scorer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from aegan.errors import UserError
from aegan.modes import CHANNELS


class ScorerNet(nn.Module):
    def __init__(self, channels: int, image_size: int, width: int, feature_dim: int, num_outputs: int):
        super().__init__()
        self.config = dict(
            channels=channels, image_size=image_size, width=width, feature_dim=feature_dim, num_outputs=num_outputs
        )

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.body = nn.Sequential(
            *block(channels, width), *block(width, width), nn.MaxPool2d(2),
            *block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(8 * width, feature_dim), nn.ReLU(True), nn.Dropout(0.2),
        )  # fmt: skip
        self.head = nn.Linear(feature_dim, num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


CHANNEL_TASK = "channel-digits"  # a digit classifier applied to each channel of stacked digits
CLASSIFYING_TASKS = ("classes", CHANNEL_TASK)  # the scorer's output is a class (a mode) of the data


class ChannelScorer(nn.Module):
    """A one-channel scorer applied to each channel of (N, C, H, W) images: features are the C channels' features
    side by side; the output, the log-probability of each of the K^C modes, mode = digits read in base K
    (100 d_R + 10 d_G + d_B for 10 digits), so its argmax is each channel's own class."""

    def __init__(self, digit: ScorerNet, channels: int):
        super().__init__()
        self.digit, self.channels = digit, channels
        self.config = dict(digit.config, channels=channels, num_outputs=digit.config["num_outputs"] ** channels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return self.digit.features(x.reshape(n * c, 1, h, w)).reshape(n, -1)

    def channel_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C * F) features -> (N, C, K) logits of each channel's class."""
        n = len(features)
        return self.digit.head(features.reshape(n * self.channels, -1)).reshape(n, self.channels, -1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(self.channel_logits(features), dim=2)
        joint = logp[:, 0]
        for c in range(1, self.channels):  # mode index = previous index * K + this channel's class
            joint = (joint[:, :, None] + logp[:, c, None, :]).reshape(len(logp), -1)
        return joint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def rotate_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-free pretext task: rotate each image by k*90 degrees, the target is k."""
    k = torch.randint(0, 4, (x.shape[0],), generator=generator, device="cpu").to(x.device)
    rotated = torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(x, k)])
    return rotated, k


class ScorerTrainer:
    """One classification step per call (labels, or the rotation task without them); the shared loop drives it."""

    def __init__(self, net: ScorerNet, lr: float, betas: tuple[float, float], seed: int):
        self.net = net
        self.opt = torch.optim.Adam(net.parameters(), lr=lr, betas=betas)
        self.rng = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if y is None:
            x, y = rotate_batch(x, self.rng)
        # light augmentation: random shifts of up to 1 pixel keep the scorer from memorising
        shift = torch.randint(-1, 2, (2,), generator=self.rng).tolist()
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss_scorer": loss.detach()}


@torch.no_grad()
def heldout_accuracy(net: ScorerNet, x: torch.Tensor, labels: torch.Tensor | None, seed: int) -> float:
    """Accuracy on held-out images in [-1, 1]: on their labels, or on the rotation task without labels."""
    net.eval()
    if labels is None:
        x, labels = rotate_batch(x, torch.Generator().manual_seed(seed + 1))
    pred = torch.cat([net(b).argmax(1) for b in x.split(512)])
    return float((pred == labels).float().mean())


@torch.no_grad()
def channel_accuracy(net: ChannelScorer, x: torch.Tensor, channel_labels: torch.Tensor) -> dict:
    """Held-out accuracy of stacked digits: per channel, over every channel, and of the whole mode."""
    net.eval()
    pred = torch.cat([net.channel_logits(net.features(b)).argmax(2) for b in x.split(512)])
    right = (pred == channel_labels).float()
    return {"heldout_accuracy": float(right.mean()), "heldout_channel_accuracy": right.mean(0).tolist(),
            "heldout_mode_accuracy": float(right.prod(1).mean())}  # fmt: skip


def save_scorer(net: ScorerNet, task: str, path: Path) -> str:
    """Save weights + config; returns the content hash that names the extractor."""
    from aegan.atomic import torch_save

    torch_save({"config": net.config, "task": task, "state_dict": net.state_dict()}, path)
    return scorer_hash(path)


def scorer_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def load_scorer(path: str | Path) -> tuple[ScorerNet | ChannelScorer, str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: scorer not found: run `aegan train-scorer` (or `dvc repro train_scorer`) first")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
        net = ScorerNet(**bundle["config"])
        net.load_state_dict(bundle["state_dict"])
    except Exception as err:  # corrupt file, wrong layout
        raise UserError(f"{path}: not a valid scorer checkpoint ({type(err).__name__}): re-run `aegan train-scorer`") from None
    if bundle["task"] == CHANNEL_TASK:
        net = ChannelScorer(net, CHANNELS)
    return net.eval(), bundle["task"]
