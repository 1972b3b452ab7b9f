"""Helpers for end-to-end tests: a throwaway copy of the repo where `dvc repro` can run."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COPIED = ["src", "dvc.yaml", "params.yaml", "pyproject.toml", ".dvc/config", ".dvc/plots", ".dvcignore"]


def copy_repo(dest: Path) -> Path:
    """src, dvc.yaml, params.yaml and DVC config in a fresh git repo at `dest` (no data, models or results)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)  # the prepare stage depends on it
    # as in the repository, where git keeps the folder by this file (DVC's copies for queued experiments hold what
    # git tracks)
    shutil.copy2(REPO / "data" / "raw" / "README.md", dest / "data" / "raw" / "README.md")
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def edit_params(repo: Path, **sections) -> dict:
    """Merge `sections` into repo/params.yaml (one level deep for dict sections)."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def tool_env(repo: Path | None = None, **extra: str) -> dict[str, str]:
    """This environment with this interpreter's bin first on PATH (`aegan`, `dvc`, `dask`, `mlflow`), telemetry off,
    and `repo`'s own MLflow DB named in MLFLOW_TRACKING_URI; without `repo` none is named (the workspace's default,
    as a user's shell has it)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1", **extra}
    if repo is not None:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo / 'mlflow.db'}"
    return env


def run(cmd: list[str], repo: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command in `repo` with this interpreter's bin first on PATH and a private MLflow DB."""
    return subprocess.run(cmd, cwd=repo, env=tool_env(repo), capture_output=True, text=True, timeout=timeout)


def wait_healthy(url: str, server: subprocess.Popen, seconds: float) -> bool:
    """Poll `url`/health until it answers (True), or until `server` exits or `seconds` pass (False)."""
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return True
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.5)


TINY = dict(
    train_scorer={"steps": 30, "batch_size": 32, "width": 8, "feature_dim": 16},
    pretrain_ae={"steps": 30, "batch_size": 32},
    model={"z_dim": 8, "width": 8},
    train={"budget": 50, "batch_size": 32, "log_every": 5, "eval_every": 10, "eval_samples": 64, "grid_samples": 16},
    evaluate={"num_samples": 100, "kid_subset_size": 50, "batch_size": 100},
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_service(command: str, args: list[str], env: dict, cwd: Path | None = None):
    """`mlflow <command>` (server or ui) on a free port of 127.0.0.1: its URL once /health answers; stopped after."""
    import pytest

    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), command, "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", *args]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(url, server, 180):
            pytest.fail(f"mlflow {command} did not start: {server.stderr.read()[-2000:]}")
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
