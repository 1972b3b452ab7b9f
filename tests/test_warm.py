"""Warm stage processes (warm.py): a forked command does what a fresh one does, exits as it does, and stops
when its command is signalled or dies; without a server, or with changed code, the command runs itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from aegan import warm
from pipeline import TINY, copy_repo, edit_params

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server():
    path = warm.ensure_server("aegan.cli:app")
    deadline = time.monotonic() + 300
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "the warm server did not come up"
        time.sleep(0.2)
    yield path
    warm.stop_server()


def env(**extra) -> dict:
    out = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1", **extra)
    out["PATH"] = str(Path(sys.executable).parent) + os.pathsep + out["PATH"]
    out["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory, server) -> Path:
    """Tiny prepared data and scorer, made by warm commands."""
    repo = copy_repo(tmp_path_factory.mktemp("warm") / "repo")
    edit_params(repo, **TINY)
    e = env(AEGAN_WARM_SOCKET=server, MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}")
    for cmd in (["aegan", "prepare"], ["aegan", "train-scorer"]):
        r = subprocess.run(cmd, cwd=repo, env=e, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    return repo


def aegan(repo: Path, *args: str, socket: str | None) -> subprocess.CompletedProcess:
    extra = {"AEGAN_WARM_SOCKET": socket} if socket else {}
    e = env(MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}", **extra)
    return subprocess.run(["aegan", *args], cwd=repo, env=e, capture_output=True, text=True, timeout=300)


def untimed(stdout: str) -> dict:
    return {k: v for k, v in json.loads(stdout).items() if not any(t in k for t in ("second", "mlflow_run_id", "mlflow_model_uri"))}


def test_a_warm_command_gives_what_a_fresh_one_gives(repo, server):
    results = {}
    for label, socket in (("warm", server), ("cold", None)):
        r = aegan(repo, "train", "--strategy", "dcgan", "--seed", "0", socket=socket)
        assert r.returncode == 0, r.stderr[-2000:]
        run_dir = repo / "models/runs/dcgan-0"
        results[label] = (untimed(r.stdout), (run_dir / "generator.pt").read_bytes(), (run_dir / "history.csv").read_text())
    assert results["warm"] == results["cold"]


def test_exit_status_and_error_lines_pass_through(repo, server):
    r = aegan(repo, "train", "--strategy", "nope", "--seed", "0", socket=server)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "unknown strategy" in r.stderr
    r = aegan(repo, "check-params", socket=server)
    assert r.returncode == 0 and "ok" in r.stdout


def test_without_a_server_or_with_changed_code_the_command_runs_itself(repo, server):
    r = aegan(repo, "check-params", socket=str(repo / "no-such-socket"))
    assert r.returncode == 0 and "ok" in r.stdout
    changed = Path(warm.__file__).with_name("errors.py")
    before = changed.stat()
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # as if edited after the server loaded it
    try:
        assert warm.forward(server, ["aegan", "check-params"]) is None  # the server refuses; nothing ran
        r = aegan(repo, "check-params", socket=server)
        assert r.returncode == 0 and "ok" in r.stdout
    finally:
        os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))


def _long_train(repo: Path, server: str) -> tuple[subprocess.Popen, psutil.Process]:
    params = repo / "long.yaml"
    doc = yaml.safe_load((repo / "params.yaml").read_text())
    doc["train"]["budget"] = 10**7
    params.write_text(yaml.safe_dump(doc))
    e = env(AEGAN_WARM_SOCKET=server, MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}")
    cmd = ["aegan", "train", "--strategy", "dcgan", "--seed", "7", "--params", str(params)]
    client = subprocess.Popen(cmd, cwd=repo, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server_proc = next(p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and server in " ".join(p.info["cmdline"]))
    deadline = time.monotonic() + 120
    while not (children := server_proc.children()):
        assert time.monotonic() < deadline and client.poll() is None, "the command never reached the warm server"
        time.sleep(0.1)
    time.sleep(3)  # well into the run
    assert children[0].is_running() and client.poll() is None, client.stderr.read() if client.poll() is not None else ""
    return client, children[0]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_signalled_or_dead_command_stops_its_child(repo, server, how):
    client, child = _long_train(repo, server)
    client.send_signal(getattr(signal, how))  # SIGTERM is passed on; after SIGKILL the child sees its command gone
    client.wait(timeout=60)
    assert client.returncode != 0
    child.wait(timeout=60)  # raises psutil.TimeoutExpired if the child kept running
    assert not child.is_running()
