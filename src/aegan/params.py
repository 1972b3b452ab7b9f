"""params.yaml, validated by pydantic every time a command starts.

The committed params.yaml is the default comparison and the one place a value, and what it means, is written:
these models hold no defaults, only what each key may be. So a file must state every key (a missing one is
named), and a wrong type, an unknown key or an impossible value is a one-line `UserError` (exit code 2).
Sections are named after the stages that read them (`prepare`, `train`, ...: params_sections.py); each
strategy's knobs are in a section named after the strategy (params_strategies.py). What validates but can only
fail once the pipeline runs is checked by runnable.py (`aegan check-params`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from aegan.errors import UserError
from aegan.params_base import Seed, StrategyParams, StrictModel
from aegan.params_sections import (ComputeParams, DecideParams, EvaluateParams, ModelParams, PrepareParams,
                                   PretrainAEParams, ReportParams, StudyParams, TrainParams, TrainScorerParams)
from aegan.params_strategies import (AEDiscParams, AEHybridParams, AEInitParams, AEManifoldParams, DCGANParams,
                                     VAEGANParams)  # fmt: skip
from aegan.paths import PARAMS_FILE


class Params(StrictModel):
    """The whole file: the stage sections, the comparison's strategies and seeds, and one section per strategy."""

    prepare: PrepareParams
    model: ModelParams
    compute: ComputeParams
    pretrain_ae: PretrainAEParams
    train_scorer: TrainScorerParams
    train: TrainParams
    evaluate: EvaluateParams
    report: ReportParams
    study: StudyParams
    decide: DecideParams
    strategies: list[str] = Field(min_length=1)
    seeds: list[Seed] = Field(min_length=1)
    dcgan: DCGANParams
    ae_init: AEInitParams
    ae_disc: AEDiscParams
    ae_hybrid: AEHybridParams
    ae_manifold: AEManifoldParams
    vaegan: VAEGANParams

    @model_validator(mode="after")
    def _consistent(self) -> "Params":
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
        for strategy, section in self:  # each study range names a float knob of its strategy's section
            if not isinstance(section, StrategyParams):
                continue
            floats = sorted(k for k, f in type(section).model_fields.items() if f.annotation is float)
            for knob in getattr(self.study, strategy):
                if knob not in floats:
                    raise ValueError(f"study.{strategy}.{knob}: {strategy} has no float knob {knob!r} to search (its "
                                     f"float knobs: {', '.join(floats) or 'none'}): remove it or fix its spelling")
        return self


def format_validation_error(err: ValidationError, source: str) -> str:
    """First error as one line: where, what was given, what is allowed."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    kind = e["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key '{loc}': remove it or fix its spelling"
    if kind == "missing":
        return (f"{source}: key '{loc}' is missing: state it (the committed params.yaml states every key: "
                "`git show HEAD:params.yaml`)")
    if kind == "value_error":
        msg = e["msg"].removeprefix("Value error, ")
        return f"{source}: {loc + ': ' if loc else ''}{msg}"
    given = e.get("input")
    quoted = " (a number in quotes is a string: remove the quotes)" if isinstance(given, str) and kind in (
        "int_type", "float_type") else ""  # fmt: skip
    return f"{source}: {loc} = {given!r} is not allowed: {e['msg']}{quoted}"


def validate_params(raw: Any, source: str = str(PARAMS_FILE)) -> Params:
    """Validate a params mapping (a file's data): every section, every key."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections at the top level, got "
                        f"{'nothing' if raw is None else type(raw).__name__}: the committed params.yaml states every "
                        "key (`git show HEAD:params.yaml`)")  # fmt: skip
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise UserError(format_validation_error(err, source)) from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """The params file at `path`, validated."""
    from aegan.yaml_file import read_yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found: run the command inside the workspace (a folder holding dvc.yaml or params.yaml), or pass --params PATH")
    return validate_params(read_yaml(path), str(path))


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`, for MLflow params."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}.{k}" if prefix else k
        out |= flatten(v, key) if isinstance(v, dict) else {key: v}
    return out
