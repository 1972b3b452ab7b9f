"""dvc.yaml's params are true: every stage reads exactly the params it declares, read from the running code.

Each stage runs here in-process on a tiny workspace with its params reads
recorded (aegan.stage_params.recording). A read of an undeclared param fails
inside the stage (the view a stage is handed refuses it); a declared param
that no code reads would re-run the stage for nothing, and fails here.
"""

from __future__ import annotations

import importlib

import pytest
import yaml

from imports import REPO, STAGES
from pipeline import TINY

from aegan.strategies import get_strategy
from aegan.stage_params import EVERYTHING, STRATEGY, UndeclaredParams, allowed_keys, recording, stage_view

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
STRATEGIES = sorted(p.stem for p in (REPO / "src/aegan/strategies").glob("*.py") if p.stem not in ("__init__", "base"))


# declared keys that the tiny pipeline here cannot read: the code path that reads them needs other settings
READ_ELSEWHERE = {"evaluate.feature_extractor_weights_path": "read only with evaluate.feature_extractor: inception"}


def dvc_params(stage: str) -> list[str]:
    """The stage's params as dvc.yaml names them (`params.yaml:` with no keys: every param)."""
    return [p if isinstance(p, str) else EVERYTHING for p in DVC[stage].get("params", [])]


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_module_declares_what_dvc_yaml_declares(stage):
    module = importlib.import_module(f"aegan.stages.{stage}")
    assert list(module.PARAMS) == dvc_params(stage)


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    """Every stage of a tiny pipeline (every strategy, one seed) run in-process: the params each one read."""
    mp = pytest.MonkeyPatch()
    repo = tmp_path_factory.mktemp("stage_params")
    (repo / "data" / "raw").mkdir(parents=True)
    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in TINY.items():
        doc[key] = {**doc[key], **value}
    doc["train"]["checkpoint_every"] = 20  # the checkpoint path runs too (an untracked read)
    doc["strategies"], doc["seeds"] = STRATEGIES, [0]
    (repo / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    mp.chdir(repo)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    from aegan.stages import (evaluate, prepare, pretrain_ae, reference, report, study_best, study_best_evaluate,
                              study_evaluate, study_own, study_train, train, train_scorer)

    out: dict[str, set[str]] = {}

    def record(name: str, fn, *args, **kwargs):
        with recording() as seen:
            fn("params.yaml", *args, **kwargs)
        out[name] = seen

    try:
        record("prepare", prepare.main)
        record("train_scorer", train_scorer.main, progress=False)
        record("pretrain_ae", pretrain_ae.main, 0, progress=False)
        for s in STRATEGIES:
            record(f"train@{s}", train.main, s, 0, progress=False)
        record("reference", reference.main)
        for s in STRATEGIES:
            record(f"evaluate@{s}", evaluate.main, s, 0)
        record("report", report.main)
        # the study, from a params file that turns it on (seeds 1 and 2 need their AEs): setting 1 is drawn
        doc["seeds"], doc["study"] = [0, 1, 2], {**doc["study"], "settings": [1], "seeds": [0], "fresh_seeds": [1, 2]}
        (repo / "study.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        for seed in (1, 2):
            pretrain_ae.main("params.yaml", seed, progress=False)
        # the path that trains (a best setting 0 is copied from the pipeline's own run: tests/test_study.py)
        mp.setattr(study_best, "best_setting", lambda scores: 1)
        for s in STRATEGIES:
            record(f"study_own@{s}", study_own.main, s, 0)
            with recording() as seen:
                study_train.main("study.yaml", s, 1, 0, progress=False)
            out[f"study_train@{s}"] = seen
            with recording() as seen:
                study_evaluate.main("study.yaml", s, 1, 0)
            out[f"study_evaluate@{s}"] = seen
            with recording() as seen:
                study_best.main("study.yaml", s, 1, progress=False)
            out[f"study_best@{s}"] = seen
            with recording() as seen:
                study_best_evaluate.main("study.yaml", s, 1)
            out[f"study_best_evaluate@{s}"] = seen
    finally:
        mp.undo()
    return out


def _stage_runs(stage: str) -> list[tuple[str, str | None]]:
    per_strategy = ("train", "evaluate", "study_own", "study_train", "study_evaluate", "study_best", "study_best_evaluate")
    return [(f"{stage}@{s}", s) for s in STRATEGIES] if stage in per_strategy else [(stage, None)]


@pytest.mark.parametrize("stage", STAGES)
def test_every_declared_param_is_read(reads, stage):
    """Whole sections: some key of it is read; single keys: that key is read; the untracked keys: read too."""
    module = importlib.import_module(f"aegan.stages.{stage}")
    if EVERYTHING in module.PARAMS:
        assert reads[stage], "the report reads no params at all?"
        return
    for name, strategy in _stage_runs(stage):
        seen = reads[name]
        sections = {r.split(".")[0] for r in seen}
        for section, keys in allowed_keys([*module.PARAMS, *getattr(module, "UNTRACKED", ())], strategy).items():
            if keys is None:
                if strategy == section and not get_strategy(strategy).Params.model_fields:
                    continue  # a strategy without knobs (dcgan): an empty section, nothing to read
                assert section in sections, f"{name} declares params section {section!r} but reads none of it"
            else:
                unread = sorted(k for k in keys if f"{section}.{k}" not in seen | set(READ_ELSEWHERE))
                assert not unread, f"{name} declares {section}.{unread} but does not read them"


@pytest.mark.parametrize("stage", STAGES)
def test_every_read_param_is_declared(reads, stage):
    """What the views let through is what dvc.yaml declares (plus the stage's UNTRACKED keys, none of them in dvc.yaml)."""
    module = importlib.import_module(f"aegan.stages.{stage}")
    untracked = set(getattr(module, "UNTRACKED", ()))
    assert not untracked & set(dvc_params(stage))
    for name, strategy in _stage_runs(stage):
        declared = allowed_keys([*module.PARAMS, *untracked], strategy)
        if EVERYTHING in module.PARAMS:
            continue
        for read in reads[name]:
            section, _, key = read.partition(".")
            assert section in declared and (declared[section] is None or key in declared[section]), (name, read)


def test_a_view_refuses_what_is_not_declared_and_methods_read_through_it():
    """The view itself: an undeclared section or key raises; a method's reads are checked and recorded."""
    from aegan.params import validate_params

    params = validate_params({}, strategies=["ae_disc"])
    view = stage_view(params, ["compute", "train.budget", "train.match_budget", STRATEGY], strategy="ae_disc")
    with pytest.raises(UndeclaredParams, match="section 'evaluate'"):
        view.evaluate
    with pytest.raises(UndeclaredParams, match="train.batch_size"):
        view.train.batch_size
    with recording() as seen:
        assert view.train.budget == params.train.budget
        assert view.strategy_params("ae_disc").model_dump() == params.ae_disc.model_dump()
    assert "train.budget" in seen and any(r.startswith("ae_disc.") for r in seen)
    assert set(view.train.model_dump()) == {"budget", "match_budget"}
    narrow = stage_view(params, ["train.budget"])
    with pytest.raises(UndeclaredParams, match="train.match_budget"):
        narrow.train.match_budget
    with pytest.raises(TypeError):
        view.train.budget = 3
