"""MLflow conventions (DESIGN 6): one tracking DB per repo, tagged runs, batched metrics.

Tracking URI: $MLFLOW_TRACKING_URI if set, else an absolute sqlite:///<repo>/mlflow.db;
artifacts under <repo>/mlruns. Metrics are buffered and sent with log_batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

EXPERIMENT = "aegan"


def repo_root() -> Path:
    return Path.cwd().resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def params_hash(section: Any) -> str:
    return hashlib.sha256(json.dumps(section, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _client():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri())
    return MlflowClient(tracking_uri())


def _experiment_id(client) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    artifacts = (repo_root() / "mlruns").as_uri()
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=artifacts)
    except Exception:  # another process created it first
        return client.get_experiment_by_name(EXPERIMENT).experiment_id


class Run:
    """One MLflow run, with buffered metrics. Use `Run.start(...)` or `Run.resume(run_id)`."""

    def __init__(self, client, run_id: str, flush_every: int = 500):
        self.client = client
        self.run_id = run_id
        self.flush_every = flush_every
        self._buffer: list = []

    @classmethod
    def start(cls, name: str, tags: dict[str, str], params: dict[str, Any] | None = None) -> "Run":
        client = _client()
        tags = {"git_commit": git_commit(), **tags}
        run = client.create_run(_experiment_id(client), run_name=name, tags=tags)
        self = cls(client, run.info.run_id)
        if params:
            self.log_params(params)
        return self

    @classmethod
    def resume(cls, run_id: str) -> "Run":
        client = _client()
        client.update_run(run_id, status="RUNNING")
        return cls(client, run_id)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            batch, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_image(self, image, key: str, step: int) -> None:
        """`image`: HxWxC uint8 numpy array; stored as an artifact per step."""
        self.client.log_image(self.run_id, image, key=key, step=step)

    def end(self, status: str = "FINISHED") -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status=status)
