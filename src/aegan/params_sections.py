"""params.yaml's stage sections, named after the stages that read them (`prepare`, `train`, ...), and the
comparison-wide ones (`report`, `study`, `decide`): what each key may be, with no default (params.py)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from aegan.params_base import OptimizerParams, Seed, StrictModel

SourceName = Literal["digits", "stacked-digits", "mnist", "fashion-mnist", "cifar10", "idx", "npz", "folder"]
FILE_SOURCES = {"idx": "the IDX images file", "npz": "the .npz file", "folder": "the image folder"}
TORCHVISION_SOURCES = ("mnist", "fashion-mnist", "cifar10")
Positive = Annotated[int, Field(ge=1)]


class PrepareParams(StrictModel):
    """Which data, and the packed form every source ends in (docs/own-data.md; data/sources.py lists the sources)."""

    source: SourceName
    path: Optional[str]
    labels_path: Optional[str]
    root: str
    download: bool
    stacked_images: int = Field(ge=100, le=1_000_000)
    image_size: Literal[16, 32, 64]
    channels: Literal[1, 3]
    heldout_fraction: float = Field(gt=0.0, lt=1.0)
    split_seed: Seed
    allow_missing_classes: bool
    max_input_mib: Positive

    @model_validator(mode="after")
    def _paths_fit_source(self) -> "PrepareParams":
        if self.source in FILE_SOURCES and not self.path:
            raise ValueError(f"source {self.source!r} needs path: set prepare.path to {FILE_SOURCES[self.source]}")
        if self.source not in FILE_SOURCES and self.path is not None:
            raise ValueError(f"path is read only by the idx, npz and folder sources, not {self.source!r}: remove it")
        if self.labels_path is not None and self.source != "idx":
            raise ValueError(f"labels_path is read only by the idx source, not {self.source!r}: remove it")
        if not self.root:
            raise ValueError("root is empty: set prepare.root to the folder that holds (or will hold) the dataset")
        if self.source == "stacked-digits" and self.channels != 3:
            raise ValueError("source 'stacked-digits' makes 3-channel images (one digit per channel): set "
                             "prepare.channels: 3")
        return self


class ModelParams(StrictModel):
    """Shared architecture: every generator is the AE decoder built from these."""

    z_dim: int = Field(ge=2, le=1024)
    width: int = Field(ge=4, le=1024)


class ComputeParams(StrictModel):
    """Device and speed (compute.py)."""

    device: Literal["auto", "cpu", "cuda"]
    amp: bool
    cpu_threads: int = Field(ge=0, le=1024)
    fused_optimizer: bool
    channels_last: bool
    compile: bool
    cuda_graphs: bool


class PretrainAEParams(StrictModel):
    steps: Positive
    batch_size: Positive
    optimizer: OptimizerParams


class TrainScorerParams(StrictModel):
    steps: Positive
    batch_size: Positive
    width: int = Field(ge=4, le=1024)
    feature_dim: int = Field(ge=2, le=4096)
    optimizer: OptimizerParams
    seed: Seed


class TrainParams(StrictModel):
    """The shared loop. `budget` counts generator-side updates, the same for every strategy (docs/design.md, the protocol)."""

    budget: Positive
    match_budget: bool
    batch_size: Positive
    optimizer: OptimizerParams
    log_every: Positive
    eval_every: int = Field(ge=0)
    eval_samples: int = Field(ge=16)
    grid_samples: int = Field(ge=1, le=1024)
    grid_seed: Seed
    divergence_bound: float = Field(gt=0.0)


class EvaluateParams(StrictModel):
    feature_extractor: Literal["scorer", "inception"]
    feature_extractor_weights_path: Optional[str]
    num_samples: int = Field(ge=16)
    kid_subset_size: int = Field(ge=2)
    prc_neighborhood: Positive
    batch_size: Positive
    sample_seed: Seed

    @model_validator(mode="after")
    def _kid_fits(self) -> "EvaluateParams":
        if self.kid_subset_size > self.num_samples:
            raise ValueError(
                f"kid_subset_size ({self.kid_subset_size}) must be <= num_samples ({self.num_samples})"
            )
        return self


class PrimaryMeasures(StrictModel):
    """The one measure per claim that gives its verdict (report/claims.py)."""

    better: Literal["fid", "kid_mean"]
    faster: Literal["log_fid_area"]
    stable: Literal["failure_rate", "fid_oscillation", "fid_spread", "mode_kl"]


class EquivalenceMargins(StrictModel):
    """Per measure, the largest difference from the baseline that does not matter (report/claims.py)."""

    fid: float = Field(gt=1.0)
    kid_mean: float = Field(gt=0.0, lt=1.0)
    log_fid_area: float = Field(gt=1.0)
    failure_rate: float = Field(gt=0.0, lt=1.0)
    fid_oscillation: float = Field(gt=1.0)
    fid_spread: float = Field(gt=1.0)
    mode_kl: float = Field(gt=1.0)


class ReportParams(StrictModel):
    title: str
    baseline: str
    confidence: float = Field(gt=0.5, lt=1.0)
    tail_fraction: float = Field(gt=0.0, le=1.0)
    coverage_min_share: float = Field(gt=0.0, le=1.0)
    collapse_recall_ratio: float = Field(gt=0.0, le=1.0)
    plateau_tolerance: float = Field(gt=0.0, lt=1.0)
    primary: PrimaryMeasures
    equivalence: EquivalenceMargins
    speed_targets: list[Annotated[float, Field(gt=1.0)]] = Field(min_length=1)


class Range(StrictModel):
    """A search range: uniform on [low, high], or log-uniform (`log: true`) for a scale such as a learning rate."""

    low: float
    high: float
    log: bool

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        return self


Knobs = dict[str, Range]  # a strategy's knob -> its search range (its float knobs only: checked by Params)


class StudyParams(StrictModel):
    """The equal-hyperparameter-budget study (docs/study.md; aegan.study), off while its three lists are empty."""

    settings: list[int]
    seeds: list[Seed]
    fresh_seeds: list[Seed]
    draw_seed: Seed
    lr: Range
    beta1: Range
    dcgan: Knobs
    ae_init: Knobs
    ae_disc: Knobs
    ae_hybrid: Knobs
    ae_manifold: Knobs
    vaegan: Knobs

    @model_validator(mode="after")
    def _ids(self) -> "StudyParams":
        if any(k < 1 for k in self.settings) or len(set(self.settings)) != len(self.settings):
            raise ValueError("settings must be distinct ids >= 1, e.g. [1, 2, 3, 4] (setting 0, each strategy's own, "
                             "is always in the study: the pipeline's own runs)")
        if set(self.seeds) & set(self.fresh_seeds):
            raise ValueError("seeds and fresh_seeds share a seed: the best setting must be re-trained on fresh seeds")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.fresh_seeds)) != len(self.fresh_seeds):
            raise ValueError("a seed is listed twice in seeds or fresh_seeds")
        if self.settings and (len(self.seeds) < 1 or len(self.fresh_seeds) < 2):
            raise ValueError("a study needs at least one seed and two fresh_seeds (a spread to test), e.g. seeds: [0, 1], "
                             "fresh_seeds: [2, 3]")
        if not self.settings and (self.seeds or self.fresh_seeds):
            raise ValueError("seeds or fresh_seeds are set but settings is empty: list the drawn settings (e.g. [1, 2, 3, 4]) "
                             "or empty all three to turn the study off")
        return self


class DecideRun(StrictModel):
    strategy: str
    seed: Seed


class DecideParams(StrictModel):
    """`aegan decide` (report/sequential.py); `runs` and `ae_seeds` are written by the command."""

    batch: Positive
    max_seeds: int = Field(ge=2)
    replicate: int = Field(ge=0)
    runs: dict[str, DecideRun]
    ae_seeds: list[Seed]

    @model_validator(mode="after")
    def _consistent(self) -> "DecideParams":
        if self.replicate == 1:
            raise ValueError("replicate: 1 leaves no spread to test: give 0 (no replication) or at least 2")
        for name, run in self.runs.items():
            if name != f"{run.strategy}-{run.seed}":
                raise ValueError(f"runs: {name!r} must be named <strategy>-<seed> ({run.strategy}-{run.seed}): "
                                 "let `aegan decide` write runs")  # fmt: skip
        if sorted({r.seed for r in self.runs.values()}) != self.ae_seeds:
            raise ValueError("ae_seeds must list each seed of runs once, in order: let `aegan decide` write them")
        return self
