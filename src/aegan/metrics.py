"""Evaluation through torch-fidelity (docs/design.md, the evaluation): every metric comes from `calculate_metrics`.

One `Evaluator` holds the protocol (feature extractor, reference images,
sample count) so every strategy and seed is scored identically. The scorer
(scorer.py) is registered with torch-fidelity as a feature extractor under a
name carrying a hash of its weights, so torch-fidelity's feature cache can
never mix two different scorers.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import Dataset

from aegan import paths
from aegan.errors import UserError, one_line
from aegan.images import to_unit_range
from aegan.params_sections import EvaluateParams
from aegan.scorer import CLASSIFYING_TASKS, load_scorer, scorer_hash

SCORER_FEATURES = ("features", "logits")

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"

# torch-fidelity's keys -> ours
KEYS = {
    "frechet_inception_distance": "fid",
    "kernel_inception_distance_mean": "kid_mean",
    "kernel_inception_distance_std": "kid_std",
    "inception_score_mean": "is_mean",
    "inception_score_std": "is_std",
    "precision": "precision",
    "recall": "recall",
    "f_score": "f_score",
}


class UInt8Images(Dataset):
    """A fixed set of uint8 images for torch-fidelity; grayscale repeated to RGB for Inception."""

    def __init__(self, images: torch.Tensor, rgb: bool):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("expected uint8 images (N, C, H, W)")
        self.images = images.expand(-1, 3, -1, -1) if rgb and images.shape[1] == 1 else images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def inception_weights(params: EvaluateParams) -> Path:
    """Where the Inception weights are, offline, checked (`check_inception_file`); a one-line error otherwise."""
    if params.feature_extractor_weights_path:
        path = Path(params.feature_extractor_weights_path).expanduser()
        if not path.is_file():
            raise UserError(
                f"evaluate.feature_extractor_weights_path: {path} does not exist: point it at {INCEPTION_FILE}"
            )
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
        if not path.is_file():
            raise UserError(
                f"Inception weights not available offline ({path} missing): download {INCEPTION_URL} there or set "
                "evaluate.feature_extractor_weights_path, or use evaluate.feature_extractor: scorer"
            )
    stat = path.stat()
    check_inception_file(path, stat.st_size, stat.st_mtime_ns)
    return path


@functools.lru_cache(maxsize=4)
def check_inception_file(path: Path, size: int = 0, mtime_ns: int = 0) -> None:
    """Refuse in one line anything but a plain state dict with inception-v3-compat's tensor names and shapes.

    torch-fidelity loads the file with weights_only=False, which runs any code a pickle carries. Here it is
    loaded with weights_only=True first (a pickle's code cannot run; it fails to load), and torch-fidelity's
    own loads then run under TORCH_FORCE_WEIGHTS_ONLY_LOAD (`_weights_only_loads`). Cached per file version.
    """
    fix = f"use torch-fidelity's {INCEPTION_FILE} ({INCEPTION_URL})"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle with code in it, not a torch file, truncated, ...
        raise UserError(f"{path}: refused: not a plain file of tensors ({type(err).__name__}: "
                        f"{one_line(err, 100)}): {fix}") from None  # fmt: skip
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise UserError(f"{path}: refused: not a state dict of named tensors ({type(state).__name__}): {fix}")
    expected = inception_layout()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or extra or reshaped:
        first = (missing + extra + reshaped)[0]
        raise UserError(
            f"{path}: refused: not the {INCEPTION} weights ({len(missing)} tensors missing, {len(extra)} unexpected, "
            f"{len(reshaped)} of another shape; first: {first}): {fix}"
        )


@functools.lru_cache(maxsize=1)
def inception_layout() -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor torch-fidelity's inception-v3-compat loads: its module, built without weights
    (on the meta device, from an empty state dict this function writes itself)."""
    import tempfile

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):  # keep the (weightless) parameters as built
            return None

    with tempfile.TemporaryDirectory() as tmp, _weights_only_loads():
        empty = Path(tmp) / "empty.pt"
        torch.save({}, empty)
        with torch.device("meta"):
            net = Skeleton(INCEPTION, ["2048"], feature_extractor_weights_path=str(empty))
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Every torch.load inside, torch-fidelity's included, runs with weights_only=True (no code from a pickle)."""
    saved = {k: os.environ.pop(k, None) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def check_feature_extractor(params: EvaluateParams) -> None:
    """Called before any training or evaluation starts, so a missing extractor fails early."""
    if params.feature_extractor == "inception":
        inception_weights(params)


@functools.lru_cache(maxsize=None)
def scorer_feature_extractor() -> type:
    """The scorer's torch-fidelity adapter class, defined on first use: torch-fidelity (and the torchvision it
    imports) load only when a metric is computed, not with this module."""
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class ScorerFeatureExtractor(FeatureExtractorBase):
        """torch-fidelity interface: uint8 (N, C, H, W) -> ('features', 'logits')."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            self.net, self.task = load_scorer(feature_extractor_weights_path)
            self.requires_grad_(False)

        @staticmethod
        def get_provided_features_list():
            return SCORER_FEATURES

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
            features = self.net.features(to_unit_range(x, x.device))
            out = {"features": features, "logits": self.net.head(features)}
            return tuple(out[name] for name in self.features_list)

    return ScorerFeatureExtractor


def scorer_name(path: str | Path) -> str:
    return f"aegan-scorer-{scorer_hash(Path(path))}"


def register_scorer(path: str | Path) -> str:
    """Register the scorer at `path` with torch-fidelity; returns its registered name."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    name = scorer_name(path)
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, scorer_feature_extractor())
    return name


class Evaluator:
    def __init__(self, params: EvaluateParams, scorer_path: Path, reference: torch.Tensor, device: torch.device):
        self.params = params
        self.device = device
        self.cuda = device.type == "cuda"
        self.rgb = params.feature_extractor == "inception"
        self.classifier = None  # the scorer's class head, for mode coverage; loaded once
        if self.rgb:
            self.extractor = INCEPTION
            self.weights = str(inception_weights(params))
            if Path(scorer_path).is_file():
                self.classifier, task = load_scorer(scorer_path)
        else:
            self.classifier, task = load_scorer(scorer_path)  # one-line error if missing or corrupt
            self.extractor = scorer_name(scorer_path)  # registered with torch-fidelity on first use
            self.weights = str(scorer_path)
        if self.classifier is not None:
            self.classifier = self.classifier.to(device) if task in CLASSIFYING_TASKS else None
        self.reference = UInt8Images(reference, self.rgb)

    @torch.no_grad()
    def class_counts(self, samples: torch.Tensor) -> list[int] | None:
        """How many samples the scorer assigns to each class (mode coverage); None when it learnt no classes.

        Not a torch-fidelity metric: it is the scorer classifier's own prediction, used to spot missing modes.
        """
        net = self.classifier
        if net is None:  # rotation pretext task, or Inception features without a trained scorer
            return None
        x = to_unit_range(samples, self.device)
        pred = torch.cat([net(b).argmax(1) for b in x.split(self.params.batch_size)])
        return torch.bincount(pred.cpu(), minlength=net.config["num_outputs"]).tolist()

    def _kwargs(self) -> dict:
        if not self.rgb:
            register_scorer(self.weights)
        return dict(
            feature_extractor=self.extractor,
            feature_extractor_weights_path=self.weights,
            cuda=self.cuda,
            batch_size=self.params.batch_size,
            cache=False,  # reference features are cheap; a cache could go stale across datasets
            save_cpu_ram=True,  # no DataLoader worker processes for in-memory tensors
            verbose=False,
            rng_seed=self.params.sample_seed,
        )

    def score(self, samples: torch.Tensor, reference: torch.Tensor | None = None) -> dict[str, float | int]:
        """FID, KID, IS of every uint8 sample against the reference split; precision/recall at equal counts.

        Precision and recall compare k-NN radii, which shrink as N grows: scored as 2,000 samples against 449
        held-out images they would not mean what the floor's (or a smaller run's) mean. So they come from a
        second torch-fidelity call on the first n samples against the first n reference images, n the smaller
        count (`prc_samples` in the result); FID, KID and IS keep every sample.
        """
        import torch_fidelity

        ref = self.reference if reference is None else UInt8Images(reference, self.rgb)
        n = min(len(samples), len(ref))
        with _weights_only_loads():
            raw = torch_fidelity.calculate_metrics(
                input1=UInt8Images(samples, self.rgb), input2=ref, fid=True, kid=True, isc=True,
                kid_subset_size=min(self.params.kid_subset_size, n), **self._kwargs(),
            )  # fmt: skip
            raw |= torch_fidelity.calculate_metrics(
                input1=UInt8Images(samples[:n], self.rgb), input2=UInt8Images(ref.images[:n], self.rgb), prc=True,
                prc_neighborhood=self.params.prc_neighborhood, **self._kwargs(),
            )  # fmt: skip
        return {KEYS[k]: float(v) for k, v in raw.items() if k in KEYS} | {"prc_samples": n}

    def fid(self, samples: torch.Tensor, reference: torch.Tensor | None = None) -> float:
        """FID alone (the small-sample training curve)."""
        import torch_fidelity

        ref = self.reference if reference is None else UInt8Images(reference, self.rgb)
        with _weights_only_loads():
            raw = torch_fidelity.calculate_metrics(input1=UInt8Images(samples, self.rgb), input2=ref, fid=True,
                                                   **self._kwargs())  # fmt: skip
        return float(raw["frechet_inception_distance"])


def heldout_evaluator(params, device: torch.device):
    """The packed dataset and an Evaluator against its whole held-out split (the protocol of `reference` and
    `evaluate`: `evaluate.num_samples` generated images are scored against every held-out image)."""
    from aegan.data.packed import load_packed

    check_feature_extractor(params.evaluate)
    data = load_packed(paths.DATASET_FILE)
    return data, Evaluator(params.evaluate, paths.SCORER_FILE, torch.as_tensor(data.heldout_images), device)
