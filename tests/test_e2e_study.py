"""End to end: the study on a tiny pipeline (`aegan preset study`'s shape, smaller): its stages run, the best
setting is re-trained on the fresh seeds, the report has the study, and a change re-runs exactly what it affects."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline import TINY, copy_repo, edit_params, run

pytestmark = pytest.mark.e2e

STRATEGIES = ["dcgan", "ae_disc"]
STUDY = {"settings": [1, 2], "seeds": [0], "fresh_seeds": [1, 2]}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("e2e_study") / "repo")
    edit_params(repo, strategies=STRATEGIES, seeds=[0, 1, 2], **TINY)
    params = edit_params(repo, study=STUDY)
    r = run(["aegan", "run", "--jobs", "2"], repo, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return repo, params


def test_every_setting_is_trained_and_scored_and_the_best_is_retrained_on_fresh_seeds(study):
    repo, params = study
    for s in STRATEGIES:
        scores = {}
        for k in [0, *STUDY["settings"]]:
            e = json.loads((repo / f"reports/eval/study/{s}/s{k}-0.json").read_text())
            assert e["study_setting"] == k and "setting.lr" in e
            scores[k] = e["metrics"].get("fid")
        # setting 0 is the pipeline's own run: its evaluation, copied
        own = json.loads((repo / f"reports/eval/{s}-0.json").read_text())
        assert scores[0] == own["metrics"]["fid"]
        assert e["setting.lr"] != params["train"]["optimizer"]["lr"]  # a drawn setting trained with its own lr
        finished = {k: v for k, v in scores.items() if v is not None}
        best = min(finished, key=lambda k: (finished[k], k))
        for seed in STUDY["fresh_seeds"]:
            info = json.loads((repo / f"models/runs/study-best/{s}-{seed}/run.json").read_text())
            assert info["study_setting"] == best and info["seed"] == seed
            assert (repo / f"reports/eval/study-best/{s}-{seed}.json").is_file()
    summary = json.loads((repo / "reports/summary.json").read_text())
    assert set(summary["study"]) == set(STRATEGIES)
    assert summary["study"]["ae_disc"]["settings"] == 1 + len(STUDY["settings"])
    report = (repo / "reports/report.md").read_text()
    assert "## The study: every strategy under the same hyperparameter budget" in report
    assert (repo / "reports/figures/study_fid.png").is_file() and "](figures/study_fid.png)" in report
    assert "Study (3 settings per strategy" in report


def test_a_strategys_range_re_runs_only_its_drawn_settings_and_the_report(study):
    repo, _ = study
    doc = yaml.safe_load((repo / "params.yaml").read_text())
    doc["study"]["ae_disc"]["gamma"] = {"low": 0.4, "high": 0.6, "log": False}
    (repo / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    r = run(["dvc", "status", "--json"], repo)
    assert r.returncode == 0, r.stderr
    changed = set(json.loads(r.stdout))
    expected = {f"study_train@ae_disc-{k}-0" for k in STUDY["settings"]}
    expected |= {f"study_best@ae_disc-{s}" for s in STUDY["fresh_seeds"]} | {"report"}
    assert changed == expected, changed
    # run by hand now, the report refuses the study runs drawn from the old range, in one line, and writes nothing
    before = (repo / "reports/report.md").read_text()
    r = run(["aegan", "report"], repo)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "reports/eval/study/ae_disc/s1-0.json is stale" in r.stderr and "study.ae_disc.gamma.high" in r.stderr
    assert (repo / "reports/report.md").read_text() == before
