"""The offline feature extractor (DESIGN 4): a small CNN trained on the training split's labels.

Independent of every strategy and of the AE (reusing the AE's encoder would
favour the AE strategies). Without labels it learns a label-free pretext task:
which of four rotations was applied. It is registered with torch-fidelity
under a name carrying a hash of its weights, so torch-fidelity's feature cache
can never mix two different scorers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from aegan.errors import UserError

FEATURES = ("features", "logits")


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


def rotate_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-free pretext task: rotate each image by k*90 degrees, the target is k."""
    k = torch.randint(0, 4, (x.shape[0],), generator=generator, device="cpu").to(x.device)
    rotated = torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(x, k)])
    return rotated, k


def save_scorer(net: ScorerNet, task: str, path: Path) -> str:
    """Save weights + config; returns the content hash that names the extractor."""
    from aegan.atomic import torch_save

    torch_save({"config": net.config, "task": task, "state_dict": net.state_dict()}, path)
    return scorer_hash(path)


def scorer_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def load_scorer(path: str | Path) -> tuple[ScorerNet, str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: scorer not found: run `aegan train-scorer` (or `dvc repro train_scorer`) first")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
        net = ScorerNet(**bundle["config"])
        net.load_state_dict(bundle["state_dict"])
    except Exception as err:  # corrupt file, wrong layout
        raise UserError(f"{path}: not a valid scorer checkpoint ({type(err).__name__}): re-run `aegan train-scorer`") from None
    return net.eval(), bundle["task"]


class ScorerFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity interface: uint8 (N, C, H, W) -> ('features', 'logits')."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        self.net, self.task = load_scorer(feature_extractor_weights_path)
        self.requires_grad_(False)

    @staticmethod
    def get_provided_features_list():
        return FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits"}.get(metric, "features")

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x: torch.Tensor):
        x = x.float().div(127.5).sub(1.0)
        features = self.net.features(x)
        out = {"features": features, "logits": self.net.head(features)}
        return tuple(out[name] for name in self.features_list)


def register_scorer(path: str | Path) -> str:
    """Register the scorer at `path` with torch-fidelity; returns its registered name."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    name = f"aegan-scorer-{scorer_hash(Path(path))}"
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, ScorerFeatureExtractor)
    return name
