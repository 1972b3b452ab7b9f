"""params.yaml, validated by pydantic every time a command starts.

Sections are named after the stages that read them (`prepare`, `train`, ...);
each strategy's knobs live in a section named after the strategy, defined by
the `Params` model in the strategy's own module. A wrong type, an unknown key
or an impossible value becomes a one-line `UserError` (exit code 2).

A command validates the stage sections and the strategy sections it reads
(`strategies=`): `aegan train --strategy ae_disc` imports only the `ae_disc`
module, so no other strategy's code is part of that stage (dvc.yaml deps).
Strategy names are known from the module files, without importing them.
`aegan check-params` validates every section.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Collection, Literal, Optional

from pydantic import Field, ValidationError, create_model, model_validator

from aegan.errors import UserError
from aegan.params_base import OptimizerParams, Seed, StrictModel
from aegan.paths import PARAMS_FILE

SourceName = Literal["digits", "stacked-digits", "mnist", "fashion-mnist", "cifar10", "idx", "npz", "folder"]
FILE_SOURCES = {"idx": "the IDX images file", "npz": "the .npz file", "folder": "the image folder"}
TORCHVISION_SOURCES = ("mnist", "fashion-mnist", "cifar10")
# The code's defaults are the values params.yaml ships with (tested), so the report can list what a run changed.
DEFAULT_STRATEGIES = ("dcgan", "ae_init", "ae_disc", "ae_hybrid", "ae_manifold", "vaegan")
ALL = None  # `strategies=ALL`: validate every strategy's section


class PrepareParams(StrictModel):
    """Which data, and the packed form every source ends in (docs/own-data.md; data/sources.py lists the sources)."""

    source: SourceName = "digits"
    path: Optional[str] = Field(None, description="idx: images file; npz: the .npz file; folder: the image folder")
    labels_path: Optional[str] = Field(None, description="idx only: the labels file (optional)")
    root: str = Field("data/raw", description="mnist, fashion-mnist, cifar10: where torchvision finds or downloads them")
    download: bool = Field(True, description="mnist, fashion-mnist, cifar10: download when not under root")
    stacked_images: int = Field(20_000, ge=100, le=1_000_000,
                                description="stacked-digits: how many stacked images to make (training + held-out)")
    image_size: Literal[16, 32, 64] = Field(16, description="power-of-two side length of the packed images")
    channels: Literal[1, 3] = 1
    heldout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    split_seed: Seed = 0
    allow_missing_classes: bool = Field(
        False, description="folder: go on without a class sub-folder that cannot be read (else: an error)"
    )
    max_input_mib: int = Field(
        2048, ge=1, description="idx, npz: the largest array a file may declare, in MiB; read no further than that"
    )

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

    z_dim: int = Field(32, ge=2, le=1024)
    width: int = Field(32, ge=4, le=1024, description="channels of the widest-resolution conv layer")


class ComputeParams(StrictModel):
    """Device and speed (compute.py). The speed-ups are off by default: today's step, selectable against them."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(False, description="bf16 autocast on CUDA (ignored on CPU)")
    cpu_threads: int = Field(1, ge=0, le=1024, description="torch threads per stage on CPU, fixed so results do not "
                             "depend on the machine or on `aegan run --jobs` (0: cores / stages at once)")
    fused_optimizer: bool = Field(False, description="Adam's fused kernel instead of its per-tensor loop")
    channels_last: bool = Field(False, description="NHWC layout for networks and batches, cudnn autotuning (CUDA)")
    compile: bool = Field(False, description="torch.compile every network; compile time counts in train_seconds")
    cuda_graphs: bool = Field(False, description="capture the training step once as a CUDA graph and replay it")


class PretrainAEParams(StrictModel):
    """One AE per training seed (the seed comes from `seeds`); its steps are charged to the strategies using it."""

    steps: int = Field(500, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerParams = OptimizerParams(lr=1e-3, beta1=0.9, beta2=0.999)


class TrainScorerParams(StrictModel):
    steps: int = Field(400, ge=1)
    batch_size: int = Field(64, ge=1)
    width: int = Field(16, ge=4, le=1024)
    feature_dim: int = Field(64, ge=2, le=4096)
    optimizer: OptimizerParams = OptimizerParams(lr=1e-3, beta1=0.9, beta2=0.999)
    seed: Seed = 0


class TrainParams(StrictModel):
    """The shared loop. `budget` counts generator-side updates, the same for every strategy (docs/design.md, the protocol)."""

    budget: int = Field(1000, ge=1, description="generator-side updates per run, AE pretraining included (match_budget)")
    match_budget: bool = Field(
        True, description="a strategy that uses the AE trains budget - pretrain_ae.steps steps of its own, so its "
        "generator-side updates match the others'; false: every strategy trains `budget` steps (AE head start)")
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerParams = OptimizerParams()
    log_every: int = Field(10, ge=1, description="losses are averaged over this many steps, then logged")
    eval_every: int = Field(25, ge=0, description="small-sample FID every N steps (0: off)")
    eval_samples: int = Field(512, ge=16)
    grid_samples: int = Field(64, ge=1, le=1024)
    grid_seed: Seed = Field(1234, description="seed of the fixed latent batch shared by all sample grids")
    divergence_bound: float = Field(1e4, gt=0.0, description="a logged loss above this magnitude (or non-finite) ends the run as diverged")


class EvaluateParams(StrictModel):
    feature_extractor: Literal["scorer", "inception"] = "scorer"
    feature_extractor_weights_path: Optional[str] = None
    num_samples: int = Field(2000, ge=16, description="generated samples scored against every held-out image")
    kid_subset_size: int = Field(200, ge=2)
    prc_neighborhood: int = Field(3, ge=1)
    batch_size: int = Field(200, ge=1)
    sample_seed: Seed = 2020

    @model_validator(mode="after")
    def _kid_fits(self) -> "EvaluateParams":
        if self.kid_subset_size > self.num_samples:
            raise ValueError(
                f"kid_subset_size ({self.kid_subset_size}) must be <= num_samples ({self.num_samples})"
            )
        return self


class PrimaryMeasures(StrictModel):
    """The one measure per claim that gives its verdict, declared before the run (report/claims.py); every other
    measure of the claim is shown as secondary."""

    better: Literal["fid", "kid_mean"] = "fid"
    faster: Literal["log_fid_area"] = "log_fid_area"
    stable: Literal["failure_rate", "fid_oscillation", "fid_spread", "mode_kl"] = "failure_rate"


class EquivalenceMargins(StrictModel):
    """Per measure, the largest difference from the baseline that does not matter (report/claims.py): a strategy
    is "equivalent" when its difference is surely inside (two one-sided tests). Declared before the run."""

    fid: float = Field(1.1, gt=1.0, description="ratio of geometric mean FIDs within 1/m .. m")
    kid_mean: float = Field(0.1, gt=0.0, lt=1.0, description="KID difference within ± this share of the baseline's mean KID")
    log_fid_area: float = Field(1.1, gt=1.0, description="ratio of the FID curves' geometric means within 1/m .. m")
    failure_rate: float = Field(0.25, gt=0.0, lt=1.0, description="difference of the shares of failed runs within ± m")
    fid_oscillation: float = Field(1.25, gt=1.0, description="ratio of late oscillation amplitudes within 1/m .. m")
    fid_spread: float = Field(1.5, gt=1.0, description="ratio of the stds of log FID over seeds within 1/m .. m")
    mode_kl: float = Field(1.25, gt=1.0, description="stacked digits: ratio of the mode KLs to uniform within 1/m .. m")


class ReportParams(StrictModel):
    """How the report judges the runs; changing these re-runs only the report."""

    title: str = "Autoencoder/GAN fusion strategies on digits"
    baseline: str = Field("dcgan", description="the strategy every other one is compared with")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="level of the confidence intervals")
    tail_fraction: float = Field(0.25, gt=0.0, le=1.0, description="last part of training judged for loss oscillation")
    coverage_min_share: float = Field(
        0.25, gt=0.0, le=1.0,
        description="a class counts as covered when its share of the samples is at least this part of its share "
                    "of the held-out images",
    )  # fmt: skip
    collapse_recall_ratio: float = Field(
        0.5, gt=0.0, le=1.0, description="flag possible mode collapse when recall < this x precision"
    )
    plateau_tolerance: float = Field(
        0.1, gt=0.0, lt=1.0, description="the baseline's FID has flattened when its mean over the last quarter of the "
        "budget is within this fraction of its mean over the quarter before")
    primary: PrimaryMeasures = Field(default_factory=PrimaryMeasures)
    equivalence: EquivalenceMargins = Field(default_factory=EquivalenceMargins)
    speed_targets: list[Annotated[float, Field(gt=1.0)]] = Field(
        [2.0, 1.25, 1.1], min_length=1,
        description="secondary speed measure: budget to reach each of these x the baseline's final small-sample FID")


class Range(StrictModel):
    """A search range: uniform on [low, high], or log-uniform (`log: true`) for a scale such as a learning rate."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        return self


class StudyParams(StrictModel):
    """The equal-hyperparameter-budget study (docs/study.md; Lucic et al. 2018), off while its three lists are empty.

    Every strategy gets the same settings: setting 0 is its own (train.optimizer and its section, as written:
    the pipeline's own runs, under `seeds`), and each drawn setting k in `settings` draws lr and beta1 (shared
    by all strategies at that k) and the strategy's own knobs from the ranges below (aegan.study). Each
    strategy's best setting (lowest mean FID over `seeds`) is trained again under `fresh_seeds`, so its
    figure is not selected on its own noise.
    """

    settings: list[int] = Field(default_factory=list, description="drawn setting ids, each >= 1 (0 is the strategy's own)")
    seeds: list[Seed] = Field(default_factory=list, description="seeds of every setting (the search)")
    fresh_seeds: list[Seed] = Field(default_factory=list, description="seeds the best setting re-trains with")
    draw_seed: Seed = 0
    lr: Range = Range(low=5e-5, high=1e-3, log=True)
    beta1: Range = Range(low=0.0, high=0.9)
    # one field per strategy (its knobs' ranges) is added by params_model; defaults: each strategy's `knob_space`

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
    """`aegan decide` (report/sequential.py): seeds added in batches to each strategy (and the baseline) whose
    primary verdict is still undecided, up to a cap, under a group-sequential rule; then each decided verdict is
    tested again on fresh seeds. `runs` and `ae_seeds` are written by the command (off while empty)."""

    batch: int = Field(4, ge=1, description="seeds added per look to each undecided strategy and to the baseline")
    max_seeds: int = Field(20, ge=2, description="seeds per side at most")
    replicate: int = Field(4, ge=0, description="fresh seeds per side for the replication of each decided verdict")
    runs: dict[str, DecideRun] = Field(default_factory=dict, description="written by `aegan decide`: the runs beyond `seeds`")
    ae_seeds: list[Seed] = Field(default_factory=list, description="written by `aegan decide`: the AEs of those runs")

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


class StageParams(StrictModel):
    """Every section but the strategies' own."""

    prepare: PrepareParams = PrepareParams()
    model: ModelParams = ModelParams()
    compute: ComputeParams = ComputeParams()
    pretrain_ae: PretrainAEParams = PretrainAEParams()
    train_scorer: TrainScorerParams = TrainScorerParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()
    study: StudyParams = StudyParams()
    decide: DecideParams = DecideParams()
    strategies: list[str] = Field(default_factory=lambda: list(DEFAULT_STRATEGIES), min_length=1)
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2, 3], min_length=1)

    @model_validator(mode="after")
    def _known_strategies(self) -> "StageParams":
        from aegan.strategies import names

        known = names()
        for i, name in enumerate(self.strategies):
            if name not in known:
                raise ValueError(f"strategies[{i}] = {name!r} is not a strategy (available: {', '.join(known)})")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError("strategies lists a strategy twice")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds lists a seed twice")
        if self.report.baseline not in known:
            raise ValueError(f"report.baseline = {self.report.baseline!r} is not a strategy (available: {', '.join(known)})")
        if self.train.match_budget and self.train.budget <= self.pretrain_ae.steps:
            raise ValueError(
                f"train.budget ({self.train.budget}) must exceed pretrain_ae.steps ({self.pretrain_ae.steps}): strategies "
                "that use the AE are charged its steps; raise the budget, or set train.match_budget: false"
            )
        if self.report.primary.stable == "mode_kl" and self.prepare.source != "stacked-digits":
            raise ValueError("report.primary.stable: mode_kl needs modes to count: set prepare.source: stacked-digits "
                             "(`aegan preset stacked-digits`) or choose failure_rate")  # fmt: skip
        for name, run in self.decide.runs.items():
            if run.strategy not in self.strategies or run.seed in self.seeds:
                raise ValueError(f"decide.runs: {name} is not a run beyond the pipeline's own (a strategy of "
                                 "`strategies`, a seed not in `seeds`): let `aegan decide` write runs")  # fmt: skip
        outside = [s for s in [*self.study.seeds, *self.study.fresh_seeds] if s not in self.seeds]
        if outside:
            raise ValueError(f"study: seed {outside[0]} is not in seeds: the study uses the pipeline's own runs (setting "
                             "0) and the AEs of `seeds`; add it there or pick the study's seeds from them")  # fmt: skip
        return self



@functools.lru_cache(maxsize=None)
def params_model(validated: frozenset[str], strategies: tuple[str, ...]) -> type[StageParams]:
    """The full model: the stage sections, the `strategies` in `validated` by their `Params`, the others as mappings."""
    from aegan.strategies import get_strategy

    fields: dict[str, Any] = {}
    for name in strategies:
        if name in validated:
            cls = get_strategy(name).Params
            fields[name] = (cls, cls())
        else:
            fields[name] = (dict[str, Any], {})
    study = study_model(validated, strategies)
    fields["study"] = (study, study())
    return create_model("Params", __base__=StageParams, **fields)


@functools.lru_cache(maxsize=None)
def study_model(validated: frozenset[str], strategies: tuple[str, ...]) -> type[StudyParams]:
    """`study` with one field per strategy: the ranges of its knobs (validated strategies: knobs of its `Params`)."""
    from aegan.strategies import get_strategy

    fields: dict[str, Any] = {}
    for name in strategies:
        if name in validated:
            cls = get_strategy(name)
            space = {k: Range(**v) for k, v in cls.knob_space.items()}
            fields[name] = (dict[str, Range], space)
        else:
            fields[name] = (dict[str, Any], {})
    return create_model("StudyParams", __base__=StudyParams, **fields)


def check_knob_space(params: StageParams, validated: Collection[str]) -> None:
    """Each study range names a float knob of its strategy's `Params` (else one line: which, and what exists)."""
    from aegan.strategies import get_strategy

    for name in validated:
        space = getattr(params.study, name, {})
        fields = get_strategy(name).Params.model_fields
        floats = sorted(k for k, f in fields.items() if f.annotation is float)
        for knob in space:
            if knob not in floats:
                raise UserError(f"study.{name}.{knob}: {name} has no float knob {knob!r} to search (its float knobs: "
                                f"{', '.join(floats) or 'none'}): remove it or fix its spelling")  # fmt: skip


def format_validation_error(err: ValidationError, source: str) -> str:
    """First error as one line: where, what was given, what is allowed."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    kind = e["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key '{loc}': remove it or fix its spelling"
    if kind == "value_error":
        msg = e["msg"].removeprefix("Value error, ")
        return f"{source}: {loc + ': ' if loc else ''}{msg}"
    given = e.get("input")
    quoted = " (a number in quotes is a string: remove the quotes)" if isinstance(given, str) and kind in (
        "int_type", "float_type") else ""  # fmt: skip
    return f"{source}: {loc} = {given!r} is not allowed: {e['msg']}{quoted}"


def validate_params(raw: Any, source: str = str(PARAMS_FILE), strategies: Collection[str] | None = ALL) -> StageParams:
    """Validate a params mapping: the stage sections and the sections of `strategies` (ALL: every strategy)."""
    from aegan.strategies import get_strategy, names

    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    validated = frozenset(names() if strategies is ALL else strategies)
    for name in validated:
        get_strategy(name)  # one-line error for an unknown strategy
    try:
        params = params_model(validated, tuple(names())).model_validate(raw)
    except ValidationError as err:
        raise UserError(format_validation_error(err, source)) from None
    check_knob_space(params, validated)
    return params


def load_params(path: str | Path = PARAMS_FILE, strategies: Collection[str] | None = ALL) -> StageParams:
    return load_params_and_text(path, strategies)[0]


def load_params_and_text(path: str | Path, strategies: Collection[str] | None = ALL) -> tuple[StageParams, Any]:
    """The validated params and the file's data as written (which keys it states), from one read."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found: run the command inside the workspace (a folder holding dvc.yaml or params.yaml), or pass --params PATH")
    raw = read_yaml(path)
    return validate_params(raw, str(path), strategies), raw


def read_yaml(path: Path) -> Any:
    """The file's data: UTF-8, YAML 1.2 as DVC reads it (ruamel.yaml), a key given twice in one mapping refused."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import ConstructorError, DuplicateKeyError
    from ruamel.yaml.error import YAMLError

    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}): save it as UTF-8") from None
    try:
        return YAML(typ="safe").load(text)
    except DuplicateKeyError as err:
        key = re.search(r'duplicate key "(.*?)" with value', err.problem or "")
        first, again = err.context_mark.line + 1, err.problem_mark.line + 1
        raise UserError(
            f"{path}: key '{key.group(1) if key else '?'}' is given twice in the mapping that starts on line {first} "
            f"(again on line {again}): keep one, the second would silently replace the first"
        ) from None
    except ConstructorError as err:  # a tag such as !!python/object: YAML that is valid, values that are not plain
        mark = err.problem_mark
        tag = re.search(r"tag '(?:tag:yaml\.org,2002:)?(.*?)'", err.problem or "")
        raise UserError(
            f"{path}: line {mark.line + 1 if mark else '?'}: the tag !!{tag.group(1) if tag else '?'} is not allowed: "
            "params hold plain values (numbers, strings, booleans, lists, mappings): remove the tag"
        ) from None
    except (YAMLError, RecursionError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}: fix the syntax") from None


def differences_from_defaults(params: StageParams) -> list[tuple[str, Any, Any]]:
    """(key, value, default) for every validated parameter that differs from the code's defaults, sorted by key.

    Sections of strategies that were not validated (`strategies=` at load time) are left out.
    """
    dump = params.model_dump()
    skipped = {name for name in dump if isinstance(getattr(params, name), dict)}
    ours = flatten({k: v for k, v in dump.items() if k not in skipped})
    defaults = flatten({k: v for k, v in params.model_validate({}).model_dump().items() if k not in skipped})
    return [(k, ours.get(k), defaults.get(k)) for k in sorted(set(ours) | set(defaults)) if ours.get(k) != defaults.get(k)]


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`, for MLflow params."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}.{k}" if prefix else k
        out |= flatten(v, key) if isinstance(v, dict) else {key: v}
    return out


# ------------------------------------------------------------------ a complete file, and values that would fail later
def section_names(model: StrictModel, prefix: str) -> list[str]:
    """`prefix.key` for every field of a section, recursively (a sub-section such as `optimizer` by its keys)."""
    out = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        out += section_names(value, f"{prefix}.{name}") if isinstance(value, StrictModel) else [f"{prefix}.{name}"]
    return out


def required_names(params: StageParams, declared: Collection[str] | None = None) -> list[str]:
    """What params.yaml must state: every key of the `declared` names (dvc.yaml's, a section meaning all its keys);
    None: of every stage section, `strategies`, `seeds` and each listed strategy's section."""
    if declared is None:
        listed = set(params.strategies)
        declared = [n for n in type(params).model_fields if n in StageParams.model_fields or n in listed]
    out = []
    for name in declared:
        section, _, key = name.partition(".")
        value = getattr(params, section)
        if key:
            out.append(name)
        elif isinstance(value, StrictModel):
            out += section_names(value, section) or [section]  # a section with no keys (dcgan) must still be there
        else:
            out.append(section)
    return out


def _stated(raw: Any, name: str) -> bool:
    for part in name.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return False
        raw = raw[part]
    return True


def check_complete(raw: Any, names: Collection[str], source: str) -> None:
    """Every name is stated in the file: a value left to the code's default is one DVC does not see change."""
    fix = ("state every key: the committed params.yaml has them all (git show HEAD:params.yaml), `aegan preset` "
           "keeps them, and DVC tracks each one only if it is written")  # fmt: skip
    if not raw:
        raise UserError(f"{source}: empty: {fix}")
    missing = [n for n in names if not _stated(raw, n)]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise UserError(f"{source}: {len(missing)} key(s) missing ({shown}): {fix}")


# images each built-in source packs (train and test splits together), so check-params knows the training split
SOURCE_SIZES = {"digits": 1797, "mnist": 70_000, "fashion-mnist": 70_000, "cifar10": 60_000}
BATCH_KEYS = ("train.batch_size", "pretrain_ae.batch_size", "train_scorer.batch_size")


def source_size(p: PrepareParams) -> int | None:
    """Images a built-in source packs (stacked-digits: as many as it is asked for); None for a file source."""
    return p.stacked_images if p.source == "stacked-digits" else SOURCE_SIZES.get(p.source)


def too_few_for_a_batch(where: str, n_train: int, n_heldout: int, key: str, size: int) -> UserError:
    return UserError(f"{where}: {n_train} training / {n_heldout} held-out images, fewer training images than "
                     f"{key} = {size}: lower {key}, lower prepare.heldout_fraction or add images")  # fmt: skip


def too_few_to_score(where: str, n_train: int, n_heldout: int, neighbourhood: int) -> UserError | None:
    """The held-out split every generator is scored against must hold more images than precision/recall's
    neighbourhood (each image's k nearest others), which also gives FID a covariance; None if it does."""
    if n_heldout > neighbourhood:
        return None
    return UserError(f"{where}: {n_train} training / {n_heldout} held-out images, too few held-out images to score "
                     f"(precision and recall compare each with its evaluate.prc_neighborhood = {neighbourhood} "
                     f"nearest others, so at least {neighbourhood + 1}): raise prepare.heldout_fraction or add images")


def check_inside_raw(p: PrepareParams) -> None:
    """Refuse input outside data/raw/: DVC tracks that folder only, so it would never see such a file change.

    Paths are compared after resolving symbolic links: a link under data/raw/ to a file elsewhere is refused too.
    """
    from aegan.paths import RAW_DIR

    raw = RAW_DIR.resolve()
    keys = ("path", "labels_path") if p.source in FILE_SOURCES else ("root",)
    for key in keys:
        value = getattr(p, key)
        if value is None:
            continue
        where = Path(value).expanduser().resolve()
        if where != raw and raw not in where.parents:
            how = "copy the files" if key == "root" else "copy it"
            raise UserError(
                f"prepare.{key}: {value} is outside {RAW_DIR}/ (resolved: {where}), so DVC would never see it "
                f"change: {how} under {RAW_DIR}/ (e.g. {RAW_DIR / Path(value).name}) and set "
                f"prepare.{key} to that path"
            )


def check_runnable(params: StageParams, source: str) -> None:
    """What validates but would only fail once the pipeline runs: input outside data/raw/, a batch larger than
    the training split of a built-in source (a file source's size is known once prepare has read it)."""
    check_inside_raw(params.prepare)
    n = source_size(params.prepare)
    if n is None:
        return
    from aegan.data.arrays import split_sizes

    n_train, n_heldout = split_sizes(n, params.prepare.heldout_fraction)
    for key in BATCH_KEYS:
        section, _, field = key.partition(".")
        size = getattr(getattr(params, section), field)
        if size > n_train:
            raise too_few_for_a_batch(f"{source}: prepare.source {params.prepare.source}", n_train, n_heldout, key, size)
    error = too_few_to_score(f"{source}: prepare.source {params.prepare.source}", n_train, n_heldout,
                             params.evaluate.prc_neighborhood)  # fmt: skip
    if error:
        raise error


def check_params_file(path: str | Path = PARAMS_FILE) -> StageParams:
    """`aegan check-params`: every section valid, every key stated, nothing that can only fail later."""
    params, raw = load_params_and_text(path, ALL)
    check_complete(raw, required_names(params), str(path))
    check_runnable(params, str(path))
    from aegan.fits import check_fits

    check_fits(params, str(path))
    return params
