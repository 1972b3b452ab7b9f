"""Issue 13, items 5 and 7: rough shutdowns and unwritable folders.

SIGTERM ends the MLflow run KILLED (like Ctrl-C) and exits 143 with one line; a stage whose `dvc`
parent is killed dies too, and never writes its outputs afterwards; a read-only checkpoints/ or
models/ is one line before any training.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aegan.cli import app
from perms import file_modes_enforced

LONG = {"train_scorer": {"steps": 100_000, "batch_size": 32, "width": 4, "feature_dim": 8}}


def _env(repo: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}", MLFLOW_DISABLE_TELEMETRY="true",
               DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1")  # fmt: skip
    return env


def _prepared_repo(repo: Path, params: dict) -> Path:
    """A folder with params.yaml and the packed digits (prepared in this process: no subprocess start-up)."""
    from aegan.params import validate_params
    from aegan.stages.prepare import run_prepare

    repo.mkdir(parents=True, exist_ok=True)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        run_prepare(validate_params(params), track=False)
    finally:
        os.chdir(cwd)
    return repo


def _run_statuses(repo: Path) -> list[str]:
    try:
        with sqlite3.connect(repo / "mlflow.db") as db:
            return [row[0] for row in db.execute("select status from runs")]
    except sqlite3.Error:  # not created yet, or being migrated
        return []


def _wait(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _stage_pids(repo: Path) -> list[int]:
    """`aegan` processes running in `repo` (whoever their parent is)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if any(part.endswith(b"aegan") for part in cmdline) and Path(os.readlink(entry / "cwd")) == repo:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.parametrize("sig, code, said", [
    (signal.SIGTERM, 143, ["error: stopped by SIGTERM (outputs of this stage not written)"]),
    (signal.SIGINT, 130, []),  # Ctrl-C: click's own exit code, nothing to explain
])  # fmt: skip
def test_a_signal_ends_the_mlflow_run_killed(tmp_path, sig, code, said):
    repo = _prepared_repo(tmp_path / "repo", LONG)
    # a shell's background job (`pytest &`) inherits SIGINT ignored, and Python then leaves it ignored
    proc = subprocess.Popen(["aegan", "train-scorer"], cwd=repo, env=_env(repo), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        _wait(lambda: _run_statuses(repo) == ["RUNNING"], 120, "the scorer's MLflow run")
        time.sleep(1.0)  # into the training loop
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err[-2000:]
    assert [line for line in err.splitlines() if line.strip() and " INFO mlflow" not in line] == said
    assert _run_statuses(repo) == ["KILLED"]
    assert not (repo / "models" / "scorer.pt").exists() and out == ""


@pytest.mark.e2e
@pytest.mark.parametrize("shell", ["/bin/bash", "/bin/sh"])  # DVC runs `$SHELL -c cmd`; bash execs cmd, dash does not
def test_killing_the_dvc_parent_stops_the_stage(tmp_path, shell):
    if not Path(shell).exists():
        pytest.skip(f"{shell} is not on this machine")
    repo = _prepared_repo(tmp_path / "repo", LONG)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"scorer": {
        "cmd": "aegan train-scorer", "deps": ["data/prepared/dataset.npz"], "params": ["train_scorer"],
        "outs": ["models/scorer.pt", {"models/scorer.json": {"cache": False}}]}}}))  # fmt: skip
    env = _env(repo) | {"SHELL": shell}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=repo, env=env, check=True)
    dvc = subprocess.Popen(["dvc", "repro", "scorer"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        _wait(lambda: _run_statuses(repo) == ["RUNNING"], 120, "the stage's MLflow run")
        stage = _stage_pids(repo)
        assert stage, "the stage process was not found"
        time.sleep(1.0)
        os.kill(dvc.pid, signal.SIGKILL)  # the parent only: nothing is sent to the stage
        _wait(lambda: not _stage_pids(repo), 60, "the stage to stop after its parent")  # DVC not reaped: a zombie
        dvc.wait(timeout=30)
    finally:
        for pid in _stage_pids(repo):
            os.kill(pid, signal.SIGKILL)
    assert _run_statuses(repo) == ["KILLED"]
    time.sleep(2.0)
    assert not (repo / "models" / "scorer.pt").exists() and not (repo / "models" / "scorer.json").exists()


@pytest.mark.parametrize("folder, expected", [
    ("checkpoints", "checkpoints: cannot write .write-check there (Permission denied): make the folder writable "
                    "(chmod u+w checkpoints)"),
    ("models", "models/runs: Permission denied: give this user access to it (chmod u+rwX models/runs)"),
])  # fmt: skip
def test_a_read_only_output_folder_stops_train_before_training(tmp_path, monkeypatch, folder, expected):
    params = {"strategies": ["dcgan"], "seeds": [0], "model": {"z_dim": 8, "width": 8},
              "train": {"budget": 5, "match_budget": False, "batch_size": 16, "eval_every": 0,
                        "grid_samples": 4}}  # fmt: skip
    repo = _prepared_repo(tmp_path / "repo", params)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    (repo / folder).mkdir()
    (repo / folder).chmod(0o555)
    try:
        with file_modes_enforced():
            result = CliRunner().invoke(app, ["train", "--strategy", "dcgan", "--seed", "0"])
    finally:
        (repo / folder).chmod(0o755)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if " INFO mlflow" not in line]
    assert lines == [f"error: {expected}"] and result.stdout == ""
    assert not (repo / "models" / "runs" / "dcgan-0" / "generator.pt").exists()
    assert "RUNNING" not in _run_statuses(repo)
