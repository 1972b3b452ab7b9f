"""Issue 13, items 5 and 7: rough shutdowns and unwritable folders.

SIGTERM ends the MLflow run KILLED (like Ctrl-C) and exits 143 with one line; a stage whose `dvc`
parent is killed dies too, and never writes its outputs afterwards; a read-only checkpoints/ or
models/ is one line before any training.
"""

from __future__ import annotations

import contextlib
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
from params_file import validated, write_params

LONG = {"train_scorer": {"steps": 100_000, "batch_size": 32, "width": 4, "feature_dim": 8}}


def _env(repo: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}", MLFLOW_DISABLE_TELEMETRY="true",
               DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1")  # fmt: skip
    return env


def _prepared_repo(repo: Path, params: dict) -> Path:
    """A folder with params.yaml and the packed digits (prepared in this process: no subprocess start-up)."""
    from aegan.stages.prepare import run_prepare

    repo.mkdir(parents=True, exist_ok=True)
    write_params(repo, params)
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        run_prepare(validated(params), track=False)
    finally:
        os.chdir(cwd)
    return repo


def _run_statuses(repo: Path, stage: str | None = None) -> list[str]:
    """The status of every run in the repo's DB, or of the runs tagged stage `stage` (`aegan run`: "pipeline")."""
    query, args = "select status from runs", ()
    if stage is not None:
        query += " where run_uuid in (select run_uuid from tags where key = 'stage' and value = ?)"
        args = (stage,)
    try:
        with contextlib.closing(sqlite3.connect(repo / "mlflow.db")) as db:  # closed: not left open in this process
            return [row[0] for row in db.execute(query, args)]
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
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train_scorer": {
        "cmd": "aegan train-scorer", "deps": ["data/prepared/dataset.npz"], "params": ["compute", "train_scorer"],
        "outs": ["models/scorer.pt", {"models/scorer.json": {"cache": False}}]}}}))  # fmt: skip
    env = _env(repo) | {"SHELL": shell}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=repo, env=env, check=True)
    dvc = subprocess.Popen(["dvc", "repro", "train_scorer"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
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


def test_a_user_error_during_training_ends_the_mlflow_run_failed_not_killed(tmp_path):
    """Issue 22: a run stopped by the user's mistake is FAILED (KILLED is for signals), in one line naming the key."""
    repo = _prepared_repo(tmp_path / "repo", {})
    doc = yaml.safe_load((repo / "params.yaml").read_text())
    doc["train_scorer"]["batch_size"] = 5000  # more than the training split: found once the loop starts
    (repo / "params.yaml").write_text(yaml.safe_dump(doc))
    done = subprocess.run(["aegan", "train-scorer"], cwd=repo, env=_env(repo), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip() and " INFO mlflow" not in line]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("error: train_scorer.batch_size = 5000 is larger than the training split (1348 images)")
    assert _run_statuses(repo) == ["FAILED"]


def _scorer_repo(tmp_path: Path) -> Path:
    repo = _prepared_repo(tmp_path / "repo", LONG)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train_scorer": {
        "cmd": "aegan train-scorer", "deps": ["data/prepared/dataset.npz"], "params": ["compute", "train_scorer"],
        "outs": ["models/scorer.pt", {"models/scorer.json": {"cache": False}}]}}}))  # fmt: skip
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=repo, env=_env(repo), check=True)
    return repo


@pytest.mark.e2e
def test_killing_aegan_run_stops_its_stages(tmp_path):
    """Issue 22: `kill -9` of the runner (nothing it can catch) stops the stage it started instead of leaving it."""
    repo = _scorer_repo(tmp_path)
    runner = subprocess.Popen(["aegan", "run", "--jobs", "1"], cwd=repo, env=_env(repo), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    import psutil

    def stages() -> list[int]:  # the stage's training process (its `aegan` command): the one process but the
        found = []  # runner holding the repo's MLflow DB open
        for p in psutil.process_iter(["pid"]):
            try:
                if p.pid not in (os.getpid(), runner.pid) and any(f.path == str(repo / "mlflow.db") for f in p.open_files()):
                    found.append(p.pid)
            except psutil.Error:
                continue
        return found

    try:
        _wait(lambda: _run_statuses(repo, "train_scorer") == ["RUNNING"], 180, "the stage's MLflow run")
        assert stages(), "the stage process was not found"
        time.sleep(1.0)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=30)
        _wait(lambda: not stages(), 60, "the stage to stop after its runner")
        _wait(lambda: _run_statuses(repo, "train_scorer") == ["KILLED"], 30, "the stage's MLflow run to end KILLED")
    finally:
        for pid in stages():
            os.kill(pid, signal.SIGKILL)
    assert not (repo / "models" / "scorer.pt").exists()
    assert _run_statuses(repo, "pipeline") == ["RUNNING"]  # the runner died by kill -9: nothing could end its run


def test_a_second_aegan_run_in_one_workspace_is_refused_in_one_line_and_its_logs_are_kept(tmp_path, monkeypatch):
    from aegan.parallel import workspace_lock

    repo = tmp_path / "repo"
    (repo / "logs").mkdir(parents=True)
    (repo / "logs" / "train_scorer.log").write_text("the first run's log\n")
    with workspace_lock(repo.resolve()):  # the first run, still going
        done = subprocess.run(["aegan", "run", "--jobs", "1"], cwd=repo, env=_env(repo), capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr == (f"error: another aegan run (pid {os.getpid()}) is running in {repo.resolve()}: let it "
                           f"finish or stop it (kill {os.getpid()}), then run again; its logs are in logs/\n")
    assert (repo / "logs" / "train_scorer.log").read_text() == "the first run's log\n"
    assert sorted(p.name for p in (repo / "logs").iterdir()) == [".aegan-run.lock", "train_scorer.log"]


def test_a_process_is_known_by_its_start_in_ticks_not_by_the_wall_clock(monkeypatch):
    """A clock step (NTP, a resumed VM) once made every live runner look gone and SIGTERMed all stages of a run:
    psutil's create_time is boot time (from the wall clock) + start ticks. The identity uses the ticks alone."""
    import psutil

    from aegan.shutdown import _gone, identity

    me = identity(os.getpid())
    monkeypatch.setattr(time, "time", lambda: 0.0)
    monkeypatch.setattr(psutil, "boot_time", lambda: 10**9)
    assert identity(os.getpid()) == me and not _gone(me)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = identity(child.pid)
    child.wait()
    assert ident is not None and identity(child.pid) is None and _gone(ident)


@pytest.mark.e2e
def test_sigterm_to_aegan_run_ends_with_one_line_naming_what_stopped_and_how_to_continue(tmp_path):
    repo = _scorer_repo(tmp_path)
    runner = subprocess.Popen(["aegan", "run", "--jobs", "1"], cwd=repo, env=_env(repo), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        _wait(lambda: _run_statuses(repo, "train_scorer") == ["RUNNING"], 180, "the stage's MLflow run")
        time.sleep(1.0)
        runner.send_signal(signal.SIGTERM)
        _, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
    assert runner.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last == ("error: stopped by SIGTERM: 1 running stage(s) stopped (train_scorer), their outputs not written; "
                    "finished stages are kept: run `aegan run` again to continue"), err[-2000:]
    assert "Traceback" not in err
    assert not (repo / "models" / "scorer.pt").exists()
