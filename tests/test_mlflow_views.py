"""What a researcher reads in MLflow: runs that say which execution and experiment they belong to, durations of
training, artifacts that survive copying the workspace, generators as loadable models, the winner registered."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import fabricate as F
from aegan.errors import UserError
from aegan.generator import FORMAT, LoadedGenerator, load_generator
from aegan.images import to_uint8
from aegan.nets import NetShape
from aegan.tracking import REGISTERED_MODEL, Run, stage_tags

SHAPE = NetShape(image_size=8, channels=1, z_dim=4, width=8)


def client_for(path: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{path / 'mlflow.db'}")


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """A workspace as the stages see it: the cwd, its own sqlite DB, no execution or experiment set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("AEGAN_EXECUTION_ID", "AEGAN_PARENT_RUN_ID", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def generator_file(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    gen = LoadedGenerator(SHAPE)
    with torch.no_grad():  # a prior that is not the identity: the model must push eps through it
        gen.prior.mean.uniform_(-1, 1)
    torch.save({"format": FORMAT, "strategy": "dcgan", "shape": SHAPE.as_dict(), "decoder": gen.decoder.state_dict(),
                "prior": gen.prior.state_dict()}, path)  # fmt: skip
    return path


# ------------------------------------------------------------------ run identity
def test_seeds_of_one_configuration_share_a_group_and_experiments_never_do(workspace, monkeypatch):
    declared = {"train.budget": 100, "ae_manifold.lambda_m": 10.0}
    monkeypatch.setenv("AEGAN_EXECUTION_ID", "exec1")
    seeds = [stage_tags("train", "ab" * 32, declared, "ae_manifold")["group"] for _ in range(3)]
    assert len(set(seeds)) == 1 and seeds[0].startswith("ae_manifold ")
    other_params = stage_tags("train", "ab" * 32, declared | {"ae_manifold.lambda_m": 1.0}, "ae_manifold")["group"]
    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    exp_a = stage_tags("train", "ab" * 32, declared, "ae_manifold")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-b")
    exp_b = stage_tags("train", "ab" * 32, declared, "ae_manifold")["group"]
    monkeypatch.delenv("DVC_EXP_NAME")
    monkeypatch.setenv("AEGAN_EXECUTION_ID", "exec2")
    other_execution = stage_tags("train", "ab" * 32, declared, "ae_manifold")["group"]
    groups = [seeds[0], other_params, exp_a["group"], exp_b, other_execution]
    assert len(set(groups)) == len(groups), groups
    assert "exp-a" in exp_a["group"] and exp_a["params_hash"] == stage_tags("x", "ab" * 32, declared)["params_hash"]


def test_a_run_carries_its_execution_experiment_and_parent(workspace, monkeypatch):
    parent = Run.start("pipeline", {"stage": "pipeline"})
    monkeypatch.setenv("AEGAN_EXECUTION_ID", "e123")
    monkeypatch.setenv("AEGAN_PARENT_RUN_ID", parent.run_id)
    monkeypatch.setenv("DVC_EXP_NAME", "lm1")
    child = Run.start("dcgan-0", {"stage": "train"})
    child.end()
    parent.end()
    tags = client_for(workspace).get_run(child.run_id).data.tags
    assert (tags["execution_id"], tags["dvc_exp"], tags["mlflow.parentRunId"]) == ("e123", "lm1", parent.run_id)


FAKE_DVC = """\
import os, subprocess, sys
# a stand-in for `dvc repro`: runs two stages, each through a shell, as DVC does
for _ in range(2):
    subprocess.run(["/bin/sh", "-c", f"{sys.executable} -c 'from aegan.tracking import dvc_execution_id; "
                    "print(dvc_execution_id())'"], check=True)
"""


def test_the_stages_of_one_dvc_process_share_an_execution_id_and_two_processes_differ(tmp_path):
    dvc = tmp_path / "bin" / "dvc"
    dvc.parent.mkdir()
    dvc.write_text(f"#!{sys.executable}\n{FAKE_DVC}")
    dvc.chmod(0o755)
    runs = [subprocess.run([str(dvc), "repro"], capture_output=True, text=True, check=True).stdout.split()
            for _ in range(2)]  # fmt: skip
    assert len(runs[0]) == 2 and runs[0][0] == runs[0][1]
    assert runs[1][0] == runs[1][1] and runs[0][0] != runs[1][0]


# ------------------------------------------------------------------ artifacts and models
def test_artifacts_resolve_inside_a_copied_workspace(workspace, tmp_path_factory, monkeypatch):
    (workspace / "note.txt").write_text("from the original")
    run = Run.start("data", {"stage": "prepare"})
    run.log_artifact(workspace / "note.txt")
    run.end()
    copy = tmp_path_factory.mktemp("copy") / "workspace"
    shutil.copytree(workspace, copy)
    shutil.rmtree(workspace / "mlruns")  # the original's artifacts are gone: only the copy's can answer
    monkeypatch.chdir(copy)
    client = client_for(copy)
    got = client.get_run(run.run_id)
    assert not Path(got.info.artifact_uri).is_absolute()
    local = client.download_artifacts(run.run_id, "note.txt", str(copy / "downloaded"))
    assert Path(local).read_text() == "from the original"
    assert Path(client.get_experiment(got.info.experiment_id).artifact_location).as_posix().startswith("mlruns")


def test_a_logged_generator_loads_back_and_generates_its_images(workspace):
    import mlflow

    from aegan.generator_model import log_generator

    path = generator_file(workspace / "generator.pt")
    run = Run.start("dcgan-0", {"stage": "train"})
    uri = log_generator(run.run_id, path, SHAPE.z_dim)
    run.end()
    model = mlflow.pyfunc.load_model(uri)
    eps = torch.randn(5, SHAPE.z_dim, generator=torch.Generator().manual_seed(1))
    images = model.predict(eps.numpy())
    gen, _ = load_generator(path)
    assert images.dtype == np.uint8 and images.shape == (5, 1, 8, 8)
    assert np.array_equal(images, to_uint8(gen.generate(eps)).numpy())
    signature = model.metadata.signature
    assert tuple(signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, SHAPE.z_dim)
    assert client_for(workspace).get_run(run.run_id).info.status == "FINISHED"
    assert mlflow.get_logged_model(uri.removeprefix("models:/")).name == "generator-dcgan-0"  # named after its run

    # it needs no aegan to load: a process where importing aegan fails still generates the same images
    script = textwrap.dedent(f"""
        import sys
        sys.modules["aegan"] = None
        import mlflow, numpy as np
        mlflow.set_tracking_uri("sqlite:///{workspace / 'mlflow.db'}")
        out = mlflow.pyfunc.load_model("{uri}").predict(np.load("eps.npy"))
        np.save("out.npy", out)
    """)
    np.save(workspace / "eps.npy", eps.numpy())
    r = subprocess.run([sys.executable, "-c", script], cwd=workspace, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.array_equal(np.load(workspace / "out.npy"), images)


# ------------------------------------------------------------------ the report
@pytest.fixture()
def reported_with_runs(workspace, monkeypatch):
    """Fabricated outputs whose (strategy, seed) runs are real MLflow runs, ae_init's with a logged generator;
    then the report stage, as dvc.yaml runs it."""
    from aegan.generator_model import log_generator
    from aegan.stages.report import main
    from params_file import write_params

    F.fabricate(workspace)
    write_params(workspace, F.PARAMS)
    runs = {}
    for s in F.STRATEGIES:
        for seed in F.SEEDS:
            run = Run.start(f"{s}-{seed}", {"stage": "train", "strategy": s, "seed": str(seed)})
            uri = None
            if s == "ae_init":
                uri = log_generator(run.run_id, generator_file(workspace / f"g-{seed}.pt", seed), SHAPE.z_dim)
            run.end()
            path = workspace / f"reports/eval/{s}-{seed}.json"
            path.write_text(json.dumps(json.loads(path.read_text()) | {"mlflow_run_id": run.run_id, "mlflow_model_uri": uri}))
            runs[(s, seed)] = run.run_id
    client = client_for(workspace)
    before = {key: client.get_run(run_id).info for key, run_id in runs.items()}
    main("params.yaml")
    return client, runs, before


def test_the_report_adds_final_scores_without_reopening_a_training_run(reported_with_runs):
    client, runs, before = reported_with_runs
    for (s, seed), run_id in runs.items():
        got = client.get_run(run_id)
        assert (got.info.status, got.info.start_time, got.info.end_time) == (
            before[(s, seed)].status, before[(s, seed)].start_time, before[(s, seed)].end_time)
        if F.FID[s][seed] is not None:
            assert got.data.metrics["final/fid"] == F.FID[s][seed]


def test_the_report_registers_the_winners_best_seed_generator_as_candidate_only(reported_with_runs):
    client, runs, _ = reported_with_runs
    version = client.get_model_version_by_alias(REGISTERED_MODEL, "candidate")
    best_seed = int(np.argmin(F.FID["ae_init"]))
    assert (version.tags["strategy"], version.tags["seed"]) == ("ae_init", str(best_seed))
    assert float(version.tags["fid"]) == min(F.FID["ae_init"])
    assert float(version.tags["fid_geometric_mean_over_seeds"]) == pytest.approx(np.exp(np.mean(np.log(F.FID["ae_init"]))))
    assert version.tags["source_run_id"] == runs[("ae_init", best_seed)]
    # ae_disc finished one seed: no test against it, so the comparison did not decide; the description says so
    assert version.tags["decided"] == "no" and "undecided" in version.description and "`ae_disc`" in version.description
    (report,) = client.search_runs([client.get_experiment_by_name("aegan").experiment_id], "tags.stage = 'report'")
    assert report.data.tags["winner"] == "ae_init" and report.data.tags["registered_now"] == "yes"
    assert report.data.tags["registered_model"] == f"models:/{REGISTERED_MODEL}/{version.version}"
    with pytest.raises(Exception, match="best"):  # a report never moves `best`: `aegan promote` does
        client.get_model_version_by_alias(REGISTERED_MODEL, "best")


def test_a_generator_whose_bytes_did_not_change_is_not_registered_again(reported_with_runs):
    from aegan.stages.report import main

    client, _, _ = reported_with_runs
    first = client.get_model_version_by_alias(REGISTERED_MODEL, "candidate").version
    main("params.yaml")  # the same outputs reported again (a `dvc exp run` that changed nothing the winner ran)
    versions = client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
    assert [v.version for v in versions] == [first]
    reports = client.search_runs([client.get_experiment_by_name("aegan").experiment_id], "tags.stage = 'report'")
    assert sorted(r.data.tags["registered_now"] for r in reports) == ["no", "yes"]


def test_promote_moves_best_only_to_a_decided_winner(reported_with_runs, workspace):
    from aegan.promote import promote

    client, _, _ = reported_with_runs
    candidate = client.get_model_version_by_alias(REGISTERED_MODEL, "candidate")
    line = promote()
    assert line.startswith("@best not moved (not set): undecided: `ae_init`") and "`ae_disc`" in line
    assert client.get_registered_model(REGISTERED_MODEL).tags["best_status"].startswith("not moved on ")
    with pytest.raises(Exception, match="best"):
        client.get_model_version_by_alias(REGISTERED_MODEL, "best")
    summary_file = workspace / "reports" / "summary.json"  # the same comparison, had it been decided
    summary = json.loads(summary_file.read_text())
    summary["winner"] |= {"decided": True, "words": "`ae_init` is better than each of the others"}
    summary_file.write_text(json.dumps(summary))
    assert promote() == f"@best -> version {candidate.version}: `ae_init` is better than each of the others"
    best = client.get_model_version_by_alias(REGISTERED_MODEL, "best")
    assert best.version == candidate.version and best.tags["promoted_because"].startswith("`ae_init` is better")
    summary["winner"]["generator_sha256"] = "0" * 64  # a winner this store never registered: one line, nothing moved
    summary_file.write_text(json.dumps(summary))
    with pytest.raises(UserError, match="is not registered in this MLflow store: run the report here first"):
        promote()
    summary_file.unlink()
    with pytest.raises(UserError, match="does not exist: run the pipeline first"):
        promote()


def test_the_next_aegan_run_ends_a_pipeline_run_its_killed_runner_left_running(workspace):
    from aegan.parallel import end_orphaned_execution_runs

    mine = Run.start("pipeline", {"stage": "pipeline", "workspace": str(workspace)})  # its runner got kill -9
    other = Run.start("pipeline", {"stage": "pipeline", "workspace": "/another/workspace"})  # may still be running
    stage = Run.start("dcgan-0", {"stage": "train", "workspace": str(workspace)})
    assert end_orphaned_execution_runs(workspace) == [mine.run_id]
    client = client_for(workspace)
    assert [client.get_run(r.run_id).info.status for r in (mine, other, stage)] == ["KILLED", "RUNNING", "RUNNING"]
    assert end_orphaned_execution_runs(workspace) == []


def test_a_run_made_while_the_experiment_was_being_created_is_made_relative_too(workspace):
    import sqlite3

    from aegan.tracking import _client, _experiment_id, relative_artifacts

    exp_id = _experiment_id(_client())
    absolute = (workspace / "mlruns").as_uri()
    run = Run.start("early", {"stage": "prepare"})
    db = sqlite3.connect(workspace / "mlflow.db")
    with db:  # as if this run had been created before the experiment's location was made relative
        db.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (f"{absolute}/{run.run_id}/artifacts", run.run_id))
    db.close()
    relative_artifacts(workspace / "mlflow.db", exp_id, absolute)
    assert client_for(workspace).get_run(run.run_id).info.artifact_uri == f"mlruns/{run.run_id}/artifacts"
    run.end()


def test_a_dataset_another_stage_inserted_at_the_same_time_is_linked_not_an_error(workspace, monkeypatch):
    """Two stages logging the same dataset at once: MLflow's insert of the second fails on its unique key; the
    retry finds the row and links it."""
    from mlflow.exceptions import MlflowException

    run = Run.start("dcgan-0", {"stage": "train"})
    real, calls = run.client.log_inputs, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            real(*args, **kwargs)  # the other stage's insert wins ...
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
                                  "datasets.name, datasets.digest")  # ... and this one's fails
        return real(*args, **kwargs)

    monkeypatch.setattr(run.client, "log_inputs", racing)
    run.log_dataset(workspace / "dataset.npz", "ab" * 32, "training")
    run.end()
    (dataset,) = client_for(workspace).get_run(run.run_id).inputs.dataset_inputs
    assert len(calls) == 2 and dataset.dataset.digest == ("ab" * 32)[:12]


def test_the_ui_opens_on_train_runs_grouped_by_strategy_ordered_by_final_fid(workspace):
    """`aegan ui` (make ui) prints a URL whose share key names a view stored on the experiment, in the form the UI's
    own "Share" button writes: MLflow's runs table reads it from there."""
    from aegan.tracking import COMPARISON_VIEW_KEY, comparison_url

    url = comparison_url("http://127.0.0.1:5001/")
    client = client_for(workspace)
    exp = client.get_experiment_by_name("aegan")
    assert url == (f"http://127.0.0.1:5001/#/experiments/{exp.experiment_id}/runs?viewStateShareKey="
                   f"{COMPARISON_VIEW_KEY}&workflowType=machine_learning")  # fmt: skip
    view = json.loads(exp.tags[f"mlflow.sharedViewState.{COMPARISON_VIEW_KEY}"])
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "strategy"}]
    assert view["orderByKey"] == "metrics.`final/fid`" and "metrics.`final/fid`" in view["selectedColumns"]
    # its filter is one the tracking API runs: the train runs, ordered as the table shows them
    for s, fid in (("dcgan", 40.0), ("ae_init", 20.0)):
        run = Run.start(f"{s}-0", {"stage": "train", "strategy": s})
        run.log_metrics({"final/fid": fid})
        run.end()
    Run.start("report", {"stage": "report"}).end()
    shown = client.search_runs([exp.experiment_id], view["searchFilter"], order_by=["metrics.`final/fid` ASC"])
    assert [r.data.tags["strategy"] for r in shown] == ["ae_init", "dcgan"]
    assert comparison_url("http://127.0.0.1:5001") == url  # stored once, the same again


def test_in_dvcs_copy_of_the_workspace_runs_and_artifacts_go_to_the_workspace(tmp_path, monkeypatch):
    """A queued or `--temp` experiment runs in a copy under .dvc/tmp/exps/ that DVC deletes afterwards, and names
    the workspace in DVC_ROOT: the runs go to the workspace's DB, their artifacts to its mlruns/, and the copy's
    `mlruns` is only a link (deleting the copy loses nothing)."""
    import shutil

    workspace, copy = tmp_path / "workspace", tmp_path / "workspace" / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(workspace))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (copy / "report.md").write_text("# the report\n")
    run = Run.start("report", {"stage": "report"})
    run.log_artifact(copy / "report.md")
    run.end()
    assert (copy / "mlruns").is_symlink()
    shutil.rmtree(copy)  # what DVC does once the experiment is done
    (found,) = list((workspace / "mlruns").rglob("report.md"))
    assert found.read_text() == "# the report\n"
    assert client_for(workspace).get_run(run.run_id).info.status == "FINISHED"
