"""N `aegan train` stages at once lose no MLflow run and no metric: on a fresh sqlite DB they all open first, and
on an `mlflow server` on 127.0.0.1 that the test starts and stops. Counted against each run's history.csv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline import TINY, copy_repo, edit_params, mlflow_service

pytestmark = pytest.mark.e2e
N = 3  # concurrent train stages (dcgan under seeds 0..N-1: no AE needed)


def _env(uri: str) -> dict:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    return env


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """Tiny prepared data and scorer (logged to a DB of their own): what a train stage reads."""
    repo = copy_repo(tmp_path_factory.mktemp("concurrency") / "repo")
    edit_params(repo, **TINY)
    edit_params(repo, train={"budget": 30, "match_budget": False, "log_every": 3, "eval_every": 10})
    env = _env(f"sqlite:///{repo / 'setup.db'}")
    for cmd in (["aegan", "prepare"], ["aegan", "train-scorer"]):
        r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    return repo


def train_at_once(repo: Path, uri: str) -> None:
    procs = [subprocess.Popen(["aegan", "train", "--strategy", "dcgan", "--seed", str(seed)], cwd=repo, env=_env(uri),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in range(N)]  # fmt: skip
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]


def check_nothing_lost(repo: Path, uri: str) -> None:
    import json

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("aegan")
    runs = client.search_runs([exp.experiment_id], "tags.stage = 'train'")
    assert len(runs) == N and {r.info.status for r in runs} == {"FINISHED"}
    for seed in range(N):
        run_dir = repo / "models/runs" / f"dcgan-{seed}"
        run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
        history = pd.read_csv(run_dir / "history.csv")
        for key in history.columns.drop("step"):  # MLflow's name: the FID curve under fid/, the loop's logs under train/
            logged = client.get_metric_history(run_id, "fid/small" if key == "fid_small" else f"train/{key}")
            expected = history.loc[history[key].notna(), "step"].tolist()
            assert sorted(m.step for m in logged) == expected, (seed, key)


def test_concurrent_stages_on_a_fresh_sqlite_db_lose_no_run_or_metric(repo):
    db = repo / "fresh.db"
    assert not db.exists()
    uri = f"sqlite:///{db}"
    train_at_once(repo, uri)  # all N open the new DB at the same moment: one creates it, under mlflow.db's lock
    check_nothing_lost(repo, uri)


@pytest.fixture()
def mlflow_server(tmp_path):
    with mlflow_service("server", ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                                   "--default-artifact-root", (tmp_path / "artifacts").as_uri()], _env("")) as url:
        yield url


def test_concurrent_stages_on_an_mlflow_server_lose_no_run_or_metric(repo, mlflow_server):
    for seed in range(N):  # outputs of the sqlite test: start clean
        for name in ("run.json", "history.csv"):
            (repo / "models/runs" / f"dcgan-{seed}" / name).unlink(missing_ok=True)
    train_at_once(repo, mlflow_server)
    check_nothing_lost(repo, mlflow_server)
