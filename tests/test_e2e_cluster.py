"""End to end on a real Dask cluster: a scheduler and two worker processes on 127.0.0.1, sharing the workspace as
machines sharing a filesystem would. `aegan run --scheduler` runs the small pipeline there while one worker is
killed (SIGKILL, as a lost machine) in the middle of a training; the stage is run again on the other worker, from
its checkpoint, and every result equals a local `aegan run`'s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline import TINY, copy_repo, edit_params, free_port, run, tool_env

pytestmark = pytest.mark.e2e
STRATEGIES, SEEDS = ["dcgan"], [0]
KILLED = "train@dcgan-0"
# a training long enough to be killed in, with checkpoints to resume from (the workers checkpoint every 20 steps)
PARAMS = dict(TINY, train={**TINY["train"], "budget": 200})
# results that must be equal byte for byte (run.json names its own MLflow run: compared by the generator's hash)
SAME_BYTES = ["data/prepared/dataset.npz", "models/scorer.pt", "models/runs/dcgan-0/generator.pt",
              "models/runs/dcgan-0/history.csv", "models/runs/dcgan-0/samples.png"]  # fmt: skip


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("local") / "repo")
    edit_params(repo, strategies=STRATEGIES, seeds=SEEDS, **PARAMS)
    r = run(["aegan", "run", "--jobs", "2"], repo, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return repo


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes (one thread each, no nanny to restart them) on 127.0.0.1."""
    from distributed import Client

    where = tmp_path_factory.mktemp("dask")
    bin_dir = Path(sys.executable).parent
    address = f"tcp://127.0.0.1:{free_port()}"
    env = tool_env(AEGAN_CHECKPOINT_EVERY="20")
    logs = [open(where / f"{name}.log", "w") for name in ("scheduler", "worker-1", "worker-2")]
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                               address.rsplit(":", 1)[1], "--no-dashboard"], env=env, stdout=logs[0],
                              stderr=subprocess.STDOUT, start_new_session=True)]  # fmt: skip
    try:
        for log in logs[1:]:
            procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--no-nanny",
                                           "--no-dashboard", "--local-directory", str(where)], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address, procs[1:], where
    finally:
        for p in reversed(procs):  # the workers first: a worker whose scheduler is gone waits to reconnect
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def _worker_running(workers: list[subprocess.Popen], stage: str) -> subprocess.Popen | None:
    """The worker whose process tree runs `stage`'s `dvc repro`."""
    import psutil

    for worker in workers:
        try:
            tree = psutil.Process(worker.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for proc in tree:
            try:
                if stage in proc.cmdline():
                    return worker
            except psutil.Error:
                pass
    return None


def _kill_the_worker_in_mid_training(repo: Path, workers: list, killed: dict, stop: threading.Event) -> None:
    """SIGKILL the worker running KILLED once its training has written a checkpoint, and training is not over."""
    checkpoints = repo / "checkpoints"
    while not stop.wait(0.05):
        if any(checkpoints.glob("dcgan-0*")):
            worker = _worker_running(workers, KILLED)
            if worker is not None:
                worker.send_signal(signal.SIGKILL)
                killed["worker"] = worker
                return


@pytest.fixture(scope="module")
def on_cluster(tmp_path_factory, cluster):
    address, workers, where = cluster
    repo = copy_repo(tmp_path_factory.mktemp("cluster") / "repo")
    edit_params(repo, strategies=STRATEGIES, seeds=SEEDS, **PARAMS)
    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_the_worker_in_mid_training, args=(repo, workers, killed, stop))
    killer.start()
    try:
        r = subprocess.run(["aegan", "run", "--scheduler", address], cwd=repo, env=tool_env(repo), capture_output=True,
                           text=True, timeout=900)  # fmt: skip
    finally:
        stop.set()
        killer.join()
    return repo, r, killed, where


def test_a_worker_killed_in_mid_stage_is_replaced_by_the_other_and_the_run_completes(on_cluster):
    repo, r, killed, where = on_cluster
    assert "worker" in killed, "the training ended before its worker could be killed: " + r.stdout[-2000:]
    worker = killed["worker"]
    assert worker.wait(timeout=30) == -signal.SIGKILL
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stdout.count(f"start  {KILLED}") == 2, r.stdout  # started on the killed worker, then on the other
    log = (repo / "logs" / f"{KILLED}.log").read_text()
    assert "resuming at step" in log, log[-2000:]  # from the checkpoint the killed run left
    status = run(["dvc", "status", "--json"], repo)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr
    assert not any((repo / "checkpoints").glob("*")), "a finished run leaves no checkpoint"
    # nothing half-written: atomic writes go through hidden temporary files next to their target
    hidden = [p.relative_to(repo) for p in repo.rglob(".*") if p.is_file()]
    leftovers = [p for p in hidden if p.parts[0] not in (".git", ".dvc", "logs") and p.name not in (".dvcignore", ".gitignore")]
    assert leftovers == [], leftovers


def test_every_result_equals_a_local_runs(on_cluster, local):
    repo = on_cluster[0]
    for rel in SAME_BYTES:
        assert (repo / rel).read_bytes() == (local / rel).read_bytes(), rel
    cluster_run, local_run = (json.loads((r / "models/runs/dcgan-0/run.json").read_text()) for r in (repo, local))
    assert cluster_run["generator_sha256"] == local_run["generator_sha256"]
    cluster_ref, local_ref = (json.loads((r / "reports/eval/reference.json").read_text()) for r in (repo, local))
    assert {**cluster_ref, "wall_seconds": 0} == {**local_ref, "wall_seconds": 0}
    cluster_eval, local_eval = (json.loads((r / "reports/eval/dcgan-0.json").read_text()) for r in (repo, local))
    for key in ("status", "metrics", "class_counts"):
        assert cluster_eval[key] == local_eval[key], key
    cluster_summary, local_summary = (json.loads((r / "reports/summary.json").read_text()) for r in (repo, local))
    assert cluster_summary["dcgan"]["fid"] == local_summary["dcgan"]["fid"]


def test_the_lost_stage_left_its_mlflow_run_ended_not_running(on_cluster):
    from mlflow.tracking import MlflowClient

    repo = on_cluster[0]
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("aegan")
    runs = client.search_runs([exp.experiment_id], "tags.stage = 'train'")
    assert runs and all(run.info.status != "RUNNING" for run in runs), [(r.info.run_id, r.info.status) for r in runs]
    assert any(run.info.status == "FINISHED" and run.data.tags.get("seed") == "0" for run in runs)
