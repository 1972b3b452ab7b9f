"""`aegan decide` (decide.py, report/decided.py) on synthetic runs where the answer is known: a strategy at half
the baseline's FID is decided better, one with the baseline's FID equivalent, seeds are added only where a claim
is open, every run is trained once, a run killed mid-way resumes to the same verdicts, and the decide stages of
dvc.yaml compute exactly what the pipeline's own do."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from params_file import complete

from aegan.errors import UserError

FINAL = {"dcgan": 30.0, "ae_init": 15.0, "ae_manifold": 30.0}  # geometric mean FID: better, and the same
STEPS = np.arange(0, 101, 10)


def write_params(repo: Path, **decide) -> Path:
    params = complete({"strategies": list(FINAL), "seeds": [0, 1, 2, 3], "train": {"budget": 100},
                       "pretrain_ae": {"steps": 50}, "decide": {"batch": 4, "max_seeds": 12, "replicate": 4, **decide}})
    path = repo / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


class FakePipeline:
    """Writes the evaluation and history of every run params.yaml declares that has none yet (as the pipeline's
    stages would), with log FID ~ N(log FINAL, 0.05^2) drawn from the run's own seed; counts each training."""

    def __init__(self, repo: Path, fail_on_round: int | None = None):
        self.repo, self.fail_on_round, self.rounds, self.trained = repo, fail_on_round, 0, {}

    def __call__(self) -> str | None:
        self.rounds += 1
        if self.rounds == self.fail_on_round:
            return "stage train@dcgan-5 failed"
        p = yaml.safe_load((self.repo / "params.yaml").read_text())
        runs = [(s, seed) for s in p["strategies"] for seed in p["seeds"]]
        runs += [(r["strategy"], r["seed"]) for r in p["decide"]["runs"].values()]
        for s, seed in runs:
            out = self.repo / f"reports/eval/{s}-{seed}.json"
            if out.exists():
                continue
            self.trained[(s, seed)] = self.trained.get((s, seed), 0) + 1
            rng = np.random.default_rng([seed, list(FINAL).index(s)])
            fid = FINAL[s] * math.exp(rng.normal(0, 0.05))
            curve = fid * (1 + 9 * np.exp(-STEPS / 20)) * np.exp(rng.normal(0, 0.02, len(STEPS)))
            run_dir = self.repo / f"models/runs/{s}-{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "history.csv").write_text("step,fid_small\n" + "".join(f"{a},{b}\n" for a, b in zip(STEPS, curve)))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"strategy": s, "seed": seed, "status": "finished", "ae_steps_charged": 0, "train_seconds": 1.0, "images_per_second": 1.0,
                                       "metrics": {"fid": fid, "kid_mean": fid / 1000, "precision": 0.8, "recall": 0.7}}))
        return None


def run_decide(repo: Path, pipeline, monkeypatch):
    from aegan.decide import decide

    monkeypatch.chdir(repo)
    return decide(repo / "params.yaml", pipeline, echo=lambda line: None)


def test_seeds_are_added_until_decided_and_each_run_is_trained_once(tmp_path, monkeypatch):
    write_params(tmp_path)
    pipeline = FakePipeline(tmp_path)
    result = run_decide(tmp_path, pipeline, monkeypatch)
    out = result.outcome
    assert out.done and result.rounds == pipeline.rounds > 1
    assert out.verdicts[("ae_init", "better")].word == "better"
    assert out.verdicts[("ae_manifold", "better")].word == "equivalent"
    assert out.verdicts[("ae_init", "better")].n < 12  # a halved FID needs fewer seeds than the cap
    assert out.replication[("ae_init", "better")].word == "replicated"
    assert set(pipeline.trained.values()) == {1}  # nothing trained twice
    # params.yaml holds exactly the runs beyond `seeds` that the looks and the replication read
    declared = yaml.safe_load((tmp_path / "params.yaml").read_text())["decide"]
    looked = {s: max(look.n.get(s, 0) for look in out.looks) for s in FINAL}
    fresh = range(looked["dcgan"], looked["dcgan"] + 4)  # the replication's: after every seed any look used
    replicated = {"dcgan"} | {s for s, _ in out.replication}
    expected = {(s, seed) for s, n in looked.items() for seed in range(4, n)}
    expected |= {(s, seed) for s in replicated for seed in fresh}
    assert {(r["strategy"], r["seed"]) for r in declared["runs"].values()} == expected
    assert declared["ae_seeds"] == sorted({r["seed"] for r in declared["runs"].values()})


def test_killed_mid_way_it_resumes_to_the_same_verdicts(tmp_path, monkeypatch):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for repo in (whole, broken):
        repo.mkdir()
        write_params(repo)
    reference = run_decide(whole, FakePipeline(whole), monkeypatch).outcome
    first = FakePipeline(broken, fail_on_round=3)
    with pytest.raises(UserError, match=r"stage train@dcgan-5 failed; `aegan decide` stopped there"):
        run_decide(broken, first, monkeypatch)
    second = FakePipeline(broken)
    resumed = run_decide(broken, second, monkeypatch).outcome
    assert resumed.to_dict() == reference.to_dict()
    assert not set(first.trained) & set(second.trained)  # what finished before the failure is not trained again


def test_the_report_shows_the_looks_and_the_replication(tmp_path, monkeypatch):
    from aegan.report.decided_text import decided_section, decided_table
    from aegan.report.render import Document, to_markdown

    write_params(tmp_path)
    out = run_decide(tmp_path, FakePipeline(tmp_path), monkeypatch).outcome
    doc = Document("t")
    doc.add(decided_table(out, "dcgan"))
    decided_section(doc, out)
    text = to_markdown(doc)
    v = out.verdicts[("ae_init", "better")]
    assert f"**better** at {v.n} vs {v.n_baseline} seeds" in text and "fresh seeds: **replicated**" in text
    assert "**equivalent**" in text and "O'Brien-Fleming" in text
    assert text.count("\n| 1 | 4 |") == 1  # the first look, at the pipeline's own 4 seeds


def test_a_param_file_decide_did_not_write_is_refused_in_one_line():
    from aegan.params import validate_params

    bad = complete({"decide": {"runs": {"dcgan-9": {"strategy": "dcgan", "seed": 8}}, "ae_seeds": [8]}})
    with pytest.raises(UserError, match=r"must be named <strategy>-<seed> \(dcgan-8\)"):
        validate_params(bad)
    own = complete({"decide": {"runs": {"dcgan-1": {"strategy": "dcgan", "seed": 1}}, "ae_seeds": [1]}})
    with pytest.raises(UserError, match="not a run beyond the pipeline's own"):
        validate_params(own)


def test_the_decide_stages_compute_exactly_what_the_pipelines_own_stages_do():
    """decide_ae/decide_train/decide_evaluate run the same commands with the same deps, params and outs as
    pretrain_ae/train/evaluate: a decided run is the run the pipeline would have made with that seed."""
    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]
    assert {k: v for k, v in stages["decide_ae"].items() if k != "matrix"} == \
        {k: v for k, v in stages["pretrain_ae"].items() if k != "matrix"}  # fmt: skip
    for decide_stage, own in (("decide_train", "train"), ("decide_evaluate", "evaluate")):
        assert stages[decide_stage]["foreach"] == "${decide.runs}"
        assert stages[decide_stage]["do"] == {k: v for k, v in stages[own].items() if k != "matrix"}


def test_the_headline_metrics_are_the_strategies_only_beside_the_decided_verdicts():
    from aegan.stages.report import headline_metrics

    entry = {"fid": {"mean": 30.0}, "kid_mean": {"mean": 0.1}, "recall": {"mean": 0.7}}
    summary = {"dcgan": entry, "decided": {"looks": [], "verdicts": {}}, "claims": {"primary": {}}, "reference": {}}
    assert headline_metrics(summary) == {"dcgan": {"fid": 30.0}}
