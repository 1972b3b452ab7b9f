"""The report refuses evaluations that do not score what params.yaml and the run files say now (aegan.provenance).

Each case starts from fabricated outputs of one good pipeline run (tests/fabricate.py) and a good report,
makes one evaluation stale, and checks that the report stage refuses in one line naming it and why, and
that the previous report is left as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import fabricate as F

REPORT_FILES = ("reports/report.md", "reports/report.html", "reports/summary.json")


@pytest.fixture
def good_run(tmp_path, monkeypatch):
    """Fabricated stage outputs, their params.yaml and a report made from them; returns the report files' bytes."""
    F.reported(tmp_path, monkeypatch)
    return {name: Path(name).read_bytes() for name in REPORT_FILES}


def set_params(**sections) -> None:
    doc = yaml.safe_load(Path("params.yaml").read_text())
    for name, values in sections.items():
        doc[name] = {**doc.get(name, {}), **values}
    Path("params.yaml").write_text(yaml.safe_dump(doc))


def retrain(strategy: str, seed: int) -> None:
    """What train and evaluate of (strategy, seed) write after params.yaml changed: run.json, generator, evaluation."""
    from aegan.params import load_params
    from aegan.provenance import scored_files
    from params_file import stage_values

    params = load_params("params.yaml")
    run_dir = Path(f"models/runs/{strategy}-{seed}")
    info = json.loads((run_dir / "run.json").read_text()) | {"params": stage_values(params, "train", strategy)}
    (run_dir / "run.json").write_text(json.dumps(info))
    (run_dir / "generator.pt").write_bytes(f"{strategy}-{seed} retrained".encode())
    ev = Path(f"reports/eval/{strategy}-{seed}.json")
    record = json.loads(ev.read_text()) | {"params": stage_values(params, "evaluate"), "scored": scored_files(run_dir)}
    ev.write_text(json.dumps(record))


def refused(good_run, match: str) -> None:
    from aegan.errors import UserError
    from aegan.stages.report import main

    with pytest.raises(UserError, match=match) as err:
        main("params.yaml")
    assert "\n" not in str(err.value)
    assert {name: Path(name).read_bytes() for name in REPORT_FILES} == good_run, "the previous report changed"


def test_a_strategy_whose_training_failed_after_a_budget_change_is_refused_not_mixed_in(good_run):
    # issue case 1: train.budget changes, ae_init's train stage fails (DVC removed its outputs first), every
    # other strategy trains and is evaluated again; ae_init's evaluations are those of the old budget
    import shutil

    set_params(train={"budget": F.BUDGET + 1})
    for s in F.STRATEGIES:
        for seed in F.SEEDS:
            if s != "ae_init":
                retrain(s, seed)
    for seed in F.SEEDS:
        shutil.rmtree(f"models/runs/ae_init-{seed}")
    refused(good_run, r"^reports/eval/ae_init-0\.json is stale: models/runs/ae_init-0/run\.json is missing \(its train "
                      r"stage failed or has not run\) \(and 2 more: ae_init-1, ae_init-2\); .*re-run the pipeline")


def test_an_evaluation_of_a_generator_trained_with_other_params_is_refused(good_run):
    set_params(train={"budget": F.BUDGET + 1})
    for s in F.STRATEGIES:
        for seed in F.SEEDS:
            if (s, seed) != ("ae_disc", 2):
                retrain(s, seed)
    refused(good_run, rf"^reports/eval/ae_disc-2\.json is stale: its generator was trained with train\.budget = "
                      rf"{F.BUDGET} \(params\.yaml: {F.BUDGET + 1}\); ")


def test_a_strategy_knob_left_to_its_default_counts_as_the_default(good_run):
    # ae_init trained at the default latent_prior ("fitted"), which params.yaml does not write: still current
    set_params(ae_init={"latent_prior": "fitted"})
    from aegan.stages.report import main

    main("params.yaml")
    now = {name: Path(name).read_bytes() for name in REPORT_FILES}
    set_params(ae_init={"latent_prior": "standard"})
    refused(now, r"^reports/eval/ae_init-0\.json is stale: its generator was trained with "
                      r"ae_init\.latent_prior = 'fitted' \(params\.yaml: 'standard'\) \(and 2 more: ae_init-1, ae_init-2\)")


def test_an_evaluation_made_with_other_evaluate_params_is_refused(good_run):
    set_params(evaluate={"num_samples": 1000})
    refused(good_run, r"^reports/eval/dcgan-0\.json is stale: it was scored with evaluate\.num_samples = 2000 "
                      r"\(params\.yaml: 1000\) \(and 8 more: ")


def test_a_generator_trained_again_after_its_evaluation_is_refused(good_run):
    Path("models/runs/dcgan-1/generator.pt").write_bytes(b"another generator")
    refused(good_run, r"^reports/eval/dcgan-1\.json is stale: models/runs/dcgan-1 was trained again after it was "
                      r"scored; ")


def test_an_evaluation_without_provenance_is_refused(good_run):
    ev = Path("reports/eval/ae_init-2.json")
    ev.write_text(json.dumps({k: v for k, v in json.loads(ev.read_text()).items() if k not in ("params", "scored")}))
    refused(good_run, r"^reports/eval/ae_init-2\.json is stale: it records no provenance \(written by an older aegan\)")


def test_the_stage_commands_record_the_params_they_declare():
    """train's and evaluate's records name exactly the params they declare: what the report compares."""
    from params_file import stage_values, validated

    params = validated({"train": {"budget": 700}, "ae_init": {"latent_prior": "standard"}})
    recorded = stage_values(params, "train", "ae_init")
    assert recorded["train.budget"] == 700 and recorded["ae_init.latent_prior"] == "standard"
    assert recorded["train.optimizer.lr"] == params.train.optimizer.lr and "prepare.path" not in recorded
    assert not any(k.startswith("dcgan.") for k in recorded)
    scored = stage_values(params, "evaluate")
    assert {k.split(".")[0] for k in scored} == {"compute", "model", "evaluate"}


def test_the_commit_is_clean_when_only_the_pipeline_wrote_to_tracked_files(tmp_path, monkeypatch):
    """dvc.lock and the outputs kept in git change while the pipeline runs: the report still names a clean commit;
    an edit to code or params does not."""
    import subprocess

    from aegan.tracking import git_dirty

    monkeypatch.chdir(tmp_path)
    for path in ("src/code.py", "params.yaml", "dvc.lock", "reports/report.md", "models/ae/ae-0.json"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("v1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    for path in ("dvc.lock", "reports/report.md", "models/ae/ae-0.json"):
        (tmp_path / path).write_text("v2\n")
    assert not git_dirty()
    (tmp_path / "params.yaml").write_text("v2\n")
    assert git_dirty()


def test_a_corrupt_run_record_or_generator_is_named_as_such_not_as_retrained(good_run):
    """A run.json that is no longer JSON, or a generator.pt whose bytes are not those run.json records, was called
    'trained again after it was scored', whose fix (re-run) is not the one that helps (restore it)."""
    run_dir = Path("models/runs/ae_init-1")
    record = (run_dir / "run.json").read_bytes()
    (run_dir / "run.json").write_bytes(record[: len(record) // 2])
    refused(good_run, r"^reports/eval/ae_init-1\.json is stale: models/runs/ae_init-1/run\.json is not a run "
                      r"record any more \(corrupt or edited\): restore it \(`dvc checkout`\)")
    from aegan.data.packed import file_sha256

    info = json.loads(record) | {"generator_sha256": file_sha256(run_dir / "generator.pt")}
    (run_dir / "run.json").write_text(json.dumps(info))
    ev = Path("reports/eval/ae_init-1.json")
    from aegan.provenance import scored_files

    ev.write_text(json.dumps(json.loads(ev.read_text()) | {"scored": scored_files(run_dir)}))
    (run_dir / "generator.pt").write_bytes(b"flipped bytes")
    refused(good_run, r"^reports/eval/ae_init-1\.json is stale: models/runs/ae_init-1/generator\.pt is not the "
                      r"file its training wrote \(corrupt or replaced\)")
