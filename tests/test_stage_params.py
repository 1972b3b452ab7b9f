"""dvc.yaml's params are true: every stage is handed exactly the params it declares there, and reads them all.

A stage command is handed a copy of the validated params that holds only the
sections and keys its dvc.yaml stage declares (aegan.stage_params.handed), so
reading anything else fails by construction. Here each stage runs in-process
on a tiny workspace, once, with what it reads recorded: it must run (no
undeclared read), and a declared param that no code reads would re-run the
stage for nothing, so it fails here.
"""

from __future__ import annotations

import contextlib
import shutil

import pytest
import yaml
from pydantic import BaseModel

from imports import REPO, STAGES
from params_file import complete
from pipeline import TINY

from aegan import stage_params
from aegan.stage_params import EVERYTHING, allowed_keys, declared, handed, values
from aegan.params import Params

STRATEGIES = sorted(p.stem for p in (REPO / "src/aegan/strategies").glob("*.py") if p.stem not in ("__init__", "base"))
# `aegan decide`'s stages run the pipeline's own commands: they must declare what those commands are handed
SAME_COMMAND = {"decide_ae": "pretrain_ae", "decide_train": "train", "decide_evaluate": "evaluate"}

# declared keys that the tiny pipeline here cannot read: the code path that reads them needs other settings
READ_ELSEWHERE = {"evaluate.feature_extractor_weights_path": "read only with evaluate.feature_extractor: inception"}


class Recorded:
    """A stage's params with every field it reads added to `seen` (`section.key`; a dump reads every field)."""

    def __init__(self, model: BaseModel, seen: set[str], where: str = ""):
        self._model, self._seen, self._where = model, seen, where

    def __getattr__(self, name: str):
        value = getattr(self._model, name)
        if name not in type(self._model).model_fields:
            if name == "model_dump":
                self._seen.update(f"{self._where}{k}" for k in values(self._model))
            return value
        self._seen.add(f"{self._where}{name}")
        return Recorded(value, self._seen, f"{self._where}{name}.") if isinstance(value, BaseModel) else value


@pytest.mark.parametrize("stage, command", SAME_COMMAND.items())
def test_a_decide_stage_declares_what_its_command_reads(monkeypatch, stage, command):
    monkeypatch.chdir(REPO)
    assert declared(stage, "ae_disc") == declared(command, "ae_disc")


def test_a_stage_is_handed_its_declared_params_and_nothing_else():
    from params_file import validated

    params = validated()
    given = handed(params, ["compute", "train.budget", "train.match_budget", "ae_disc"])
    assert given.train.budget == params.train.budget and given.ae_disc == params.ae_disc
    assert set(values(given)) == {f"compute.{k}" for k in params.compute.model_fields} | {
        "train.budget", "train.match_budget"} | {f"ae_disc.{k}" for k in params.ae_disc.model_fields}  # fmt: skip
    with pytest.raises(AttributeError):
        given.evaluate
    with pytest.raises(AttributeError):
        given.train.batch_size
    with pytest.raises(Exception):  # frozen, as the validated params are
        given.train.budget = 3
    assert handed(params, [EVERYTHING]) is params


def test_a_stage_missing_from_dvc_yaml_is_one_line(tmp_path, monkeypatch):
    from aegan.errors import UserError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="dvc.yaml: not found"):
        declared("train")
    (tmp_path / "dvc.yaml").write_text("stages:\n  prepare:\n    cmd: aegan prepare\n")
    with pytest.raises(UserError, match="no stage 'train'"):
        declared("train")


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    """Every stage of a tiny pipeline (every strategy, one seed) run in-process: the params each one read."""
    mp = pytest.MonkeyPatch()
    repo = tmp_path_factory.mktemp("stage_params")
    (repo / "data" / "raw").mkdir(parents=True)
    doc = complete()
    for key, value in TINY.items():
        doc[key] = {**doc[key], **value}
    mp.setenv("AEGAN_CHECKPOINT_EVERY", "20")  # the checkpoint path runs too
    doc["strategies"], doc["seeds"] = STRATEGIES, [0]
    (repo / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    mp.chdir(repo)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    from aegan.stages import (evaluate, prepare, pretrain_ae, reference, report, study_best, study_best_evaluate,
                              study_evaluate, study_own, study_train, train, train_scorer)

    for module in (stage_params, study_train):  # study_train hands the train stage's params on to train.run_train
        mp.setattr(module, "handed", lambda params, names: Recorded(handed(params, names), seen))

    out: dict[str, set[str]] = {}
    seen: set[str] = set()

    @contextlib.contextmanager
    def recording():
        seen.clear()
        yield seen
        seen.clear()

    def record(name: str, fn, *args, **kwargs):
        with recording():
            fn("params.yaml", *args, **kwargs)
            out[name] = set(seen)

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
            with recording():
                study_train.main("study.yaml", s, 1, 0, progress=False)
                out[f"study_train@{s}"] = set(seen)
            with recording():
                study_evaluate.main("study.yaml", s, 1, 0)
                out[f"study_evaluate@{s}"] = set(seen)
            with recording():
                study_best.main("study.yaml", s, 1, progress=False)
                out[f"study_best@{s}"] = set(seen)
            with recording():
                study_best_evaluate.main("study.yaml", s, 1)
                out[f"study_best_evaluate@{s}"] = set(seen)
    finally:
        mp.undo()
    return out


def _stage_runs(stage: str) -> list[tuple[str, str | None]]:
    per_strategy = ("train", "evaluate", "study_own", "study_train", "study_evaluate", "study_best", "study_best_evaluate")
    return [(f"{stage}@{s}", s) for s in STRATEGIES] if stage in per_strategy else [(stage, None)]


@pytest.mark.parametrize("stage", STAGES)
def test_every_declared_param_is_read(reads, stage, monkeypatch):
    """Whole sections: some key of it is read; single keys: that key is read."""
    monkeypatch.chdir(REPO)
    if EVERYTHING in declared(stage):
        assert reads[stage], "the report reads no params at all?"
        return
    for name, strategy in _stage_runs(stage):
        seen = reads[name]
        sections = {r.split(".")[0] for r in seen}
        for section, keys in allowed_keys(declared(stage, strategy)).items():
            if keys is None:
                if strategy == section and not Params.model_fields[section].annotation.model_fields:
                    continue  # a strategy without knobs (dcgan): an empty section, nothing to read
                assert section in sections, f"{name} declares params section {section!r} but reads none of it"
            else:
                unread = sorted(k for k in keys if f"{section}.{k}" not in seen | set(READ_ELSEWHERE))
                assert not unread, f"{name} declares {section}.{unread} but does not read them"
