"""MLflow conventions (docs/mlflow.md): one tracking DB per repo, tagged runs, batched metrics.

Tracking URI: $MLFLOW_TRACKING_URI if set, else an absolute sqlite:///<repo>/mlflow.db;
artifacts under <repo>/mlruns, stored in the DB as the relative path `mlruns/...` so a copied or moved workspace
finds them in the copy (MLflow resolves it against the working directory: stages and `make ui` run at the repo
root). Metrics are buffered and sent with log_batch. Their names group MLflow's charts (docs/mlflow.md, "Metrics"):
`fid/...`, `final/...`, `heldout/...`, `train/...` (the training loop's), and `system/...` (MLflow's system metrics
monitor, started with each run this process opens unless MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING is false).

Run identity (docs/mlflow.md, "Which run is which"): every run carries `execution_id` (one pipeline
execution: `aegan run` sets it and opens a parent run that every stage's run is a child of; under plain
`dvc repro` it names the `dvc` process), `dvc_exp` (the DVC experiment, where DVC set DVC_EXP_NAME) and, for a
stage's run, `params_hash` of exactly the params that stage declares; `group` joins them into one key that
seeds of one configuration in one execution share and nothing else does.
Several stages may log to one sqlite DB at once (`aegan run --jobs`, or parallel
seeds): writes that find it locked are retried with backoff, never dropped, and
a fresh DB is created (MLflow's schema migration) by one process at a time,
under a file lock next to it (`mlflow.db.lock`): MLflow's own creation races.
A store that cannot be used (read-only, locked for good, corrupt, unreachable)
is one line naming it and the fix (`StoreUnusable`), and `check_tracking` proves
a sqlite DB writable before a stage trains.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import tenacity

from aegan.errors import UserError, one_line

T = TypeVar("T")

EXPERIMENT = "aegan"
REGISTERED_MODEL = "aegan-generator"  # the report registers the winning strategy's best-seed generator here


def repo_root() -> Path:
    """The workspace: where the tracking DB and artifacts live. DVC runs a queued or `--temp` experiment in a copy
    under .dvc/tmp/exps/ that it deletes afterwards, and names the workspace in DVC_ROOT (its public contract for
    tools that log); elsewhere DVC_ROOT is the working directory, or unset outside DVC."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def share_workspace_artifacts(uri: str) -> None:
    """In DVC's copy of the workspace (a queued or `--temp` experiment), make `mlruns` a link to the workspace's:
    MLflow resolves the stored relative artifact paths against the working directory, so the artifacts of the
    experiment's runs land in the workspace and outlive the copy (deleting the copy removes only the link)."""
    root, here = repo_root(), Path.cwd().resolve()
    if root == here or sqlite_path(uri) is None:  # a tracking server keeps the artifacts itself
        return
    link = here / "mlruns"
    if not link.exists() and not link.is_symlink():
        (root / "mlruns").mkdir(parents=True, exist_ok=True)
        link.symlink_to(root / "mlruns", target_is_directory=True)


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def committed_text(path: str, rev: str = "HEAD") -> str | None:
    """The file at `path` (relative to the working directory) as committed at `rev`; None where there is none."""
    return _git("show", f"{rev}:./{path}")


def git_commit() -> str:
    """The checked-out commit (full sha), or "unknown" outside a git checkout."""
    return _git("rev-parse", "HEAD") or "unknown"


# what the pipeline itself writes into tracked files (dvc.lock, and outputs kept in git: cache: false)
PIPELINE_WRITES = ("dvc.lock", "data/prepared", "models", "reports")


def git_dirty() -> bool:
    """Whether tracked files other than the pipeline's own outputs differ from the commit: dvc.lock and the
    results change while `dvc repro` runs, but the code and params that made them are the commit's."""
    excluded = [f":(exclude){p}" for p in PIPELINE_WRITES]
    return bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded))


EXPERIMENT_TAGS = {
    # MLflow 3 opens an experiment without a kind on its GenAI overview (traces); these are training runs
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": "aegan: one run per pipeline stage. Compare strategies by grouping train runs by the "
                           "`group` tag (strategy, experiment or execution, params hash); see docs/mlflow.md.",
}
# The view `aegan ui` (make ui) opens: MLflow's runs table as its "Share" button stores it, an experiment tag
# `mlflow.sharedViewState.<key>` holding the view as JSON, opened by the URL's `?viewStateShareKey=<key>`
COMPARISON_VIEW_KEY = "aegan-strategies"
COMPARISON_VIEW = {
    "searchFilter": "tags.stage = 'train'",
    "orderByKey": "metrics.`final/fid`",
    "orderByAsc": True,
    "selectedColumns": ["tags.`strategy`", "tags.`seed`", "tags.`dvc_exp`", "metrics.`final/fid`",
                        "metrics.`final/kid_mean`", "metrics.`final/recall`", "metrics.`final/precision`"],
    "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "strategy"}]},
    "runsHiddenMode": "SHOW_ALL",
    "useGroupedValuesInCharts": True,
}
EXECUTION_ENV = "AEGAN_EXECUTION_ID"  # set by `aegan run` for every stage it runs
PARENT_ENV = "AEGAN_PARENT_RUN_ID"  # the execution's parent run, opened by `aegan run`


def stage_tags(stage: str, data_sha256: str, declared: dict[str, Any], name: str | None = None) -> dict[str, str]:
    """The tags a stage's run carries: the stage, the data it read, a hash of exactly the params it declares
    (`declared`: dotted key -> value) and the group key (`name`: the strategy of a train run; else the stage)."""
    ident = run_identity()
    digest = params_hash(declared)
    label = ident.get("dvc_exp") or f"exec-{ident['execution_id'][:8]}"
    return {"stage": stage, "data_sha256": data_sha256[:12], "params_hash": digest,
            "group": f"{name or stage} {label} {digest[:8]}"}  # fmt: skip


def run_identity() -> dict[str, str]:
    """Tags that tie a run to its pipeline execution, its DVC experiment and its parent run."""
    tags = {"execution_id": os.environ.get(EXECUTION_ENV) or dvc_execution_id()}
    if exp := os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp"] = exp
    if parent := os.environ.get(PARENT_ENV):
        tags["mlflow.parentRunId"] = parent
    return tags


def _is_dvc(proc) -> bool:
    """`dvc ...` or `python -m dvc ...`."""
    import psutil

    try:
        argv = proc.cmdline()
    except psutil.Error:
        return False
    return "dvc" in [Path(a).name for a in argv[:2]] or argv[1:3] == ["-m", "dvc"]


@functools.lru_cache(maxsize=1)
def dvc_execution_id() -> str:
    """Under plain `dvc repro` / `dvc exp run`: a name of the `dvc` process that runs this stage (its pid and
    start time), so the stages of one repro share it; outside DVC, this process's."""
    import psutil

    me = psutil.Process()
    chain = [me]
    try:
        chain += me.parents()
    except psutil.Error:
        pass
    owner = next((p for p in chain if _is_dvc(p)), me)
    try:
        born = owner.create_time()
    except psutil.Error:
        born = time.time()
    return hashlib.sha256(f"{os.uname().nodename} {owner.pid} {born}".encode()).hexdigest()[:12]


def params_hash(section: Any) -> str:
    """sha256 (12 hex digits) of params as sorted JSON: the same values give the same hash."""
    return hashlib.sha256(json.dumps(section, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _database_locked(err: BaseException) -> bool:
    return "database is locked" in str(err)


# 0.05 s doubling to at most 8 s, each wait scaled by a uniform factor in [0.5, 1.5): ~40 s over 12 attempts
_BACKOFF = tenacity.wait_exponential(multiplier=0.05, max=8.0)
# each attempt already waits up to MLflow's sqlite busy_timeout (20 s): a DB locked for good fails within ~a minute
RETRY_FOR_S = 60.0


def with_retry(fn: Callable[..., T], *args, attempts: int = 12, **kwargs) -> T:
    """Call `fn`, retrying with jittered exponential backoff while sqlite says "database is locked" (at most
    `attempts` calls, none started after RETRY_FOR_S seconds).

    Any other error, or the last locked one, is raised as it was.
    """
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_database_locked),
        stop=tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(RETRY_FOR_S),
        wait=lambda state: _BACKOFF(state) * (0.5 + random.random()),
        reraise=True,
    )
    return retrying(fn, *args, **kwargs)


class StoreUnusable(UserError):
    """The tracking store cannot be read or written: one line naming it, what is wrong and the fix."""


def store_problem(err: BaseException) -> StoreUnusable:
    uri = tracking_uri()
    db = sqlite_path(uri)
    low = str(err).lower()
    where = f"MLflow tracking URI {uri}" if db is None else f"MLflow tracking DB {db}"
    if db is None:
        fix = "start the tracking server or set MLFLOW_TRACKING_URI to a reachable, writable location"
    elif any(w in low for w in ("readonly", "read-only", "permission denied", "disk i/o error")):
        # sqlite says "disk I/O error" when a DB it opened writable can no longer be written (made immutable, disk full)
        fix = (f"make it writable (chmod u+w {db} {db.parent}; chattr -i {db} if it was made immutable; df -h "
               f"{db.parent} for space) or set MLFLOW_TRACKING_URI to a writable location")
    elif "database is locked" in low:
        fix = ("another process kept it locked while aegan retried for a minute: let that process finish or stop "
               "it, then run again")
    elif "not a database" in low or "malformed" in low or "corrupt" in low:
        fix = f"move it aside (mv {db} {db}.broken) and run again: a new DB is created, the old one is kept for you to inspect"
    else:
        fix = ("make it a writable MLflow sqlite DB (or move it aside) or set MLFLOW_TRACKING_URI to a reachable, "
               "writable location")
    return StoreUnusable(f"{where} cannot be used ({type(err).__name__}: {one_line(err, 200)}): {fix}")


def _store_error(err: BaseException) -> bool:
    """An error of the store itself (its DB, its server), not of aegan's call."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(err, (MlflowException, SQLAlchemyError, sqlite3.Error))


# MLflow's own HTTP defaults (7 retries, back-off factor 2, 120 s timeout) take minutes to give up on a tracking server
# that died mid-stage; with these a call fails in about 30 s (3 tries of at most 10 s), unless the user set them
FAIL_FAST_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # fmt: skip


@contextlib.contextmanager
def fail_fast_http(settings: dict[str, str] = FAIL_FAST_HTTP) -> Iterator[None]:
    """Within: MLflow's HTTP retry and timeout settings the user did not set are `settings` (undone after)."""
    added = {k: v for k, v in settings.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _call(fn: Callable[..., T], *args, **kwargs) -> T:
    """A client call: retried while the DB is locked; a store that cannot be used is one line (StoreUnusable)."""
    try:
        with fail_fast_http():
            return with_retry(fn, *args, **kwargs)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        where = Path(err.filename).parent if err.filename else Path("mlruns")
        raise UserError(f"MLflow could not write to {where} ({err.strerror}): free space there (df -h {where}) or "
                        "point MLflow elsewhere (MLFLOW_TRACKING_URI), then run again") from None  # fmt: skip
    except Exception as err:
        if isinstance(err, UserError) or not _store_error(err):
            raise
        raise store_problem(err) from None


def check_tracking() -> None:
    """Fail before training, in one line, when the tracking URI cannot be reached or written."""
    uri = tracking_uri()
    # the probe answers in seconds: one retry, unless the user chose otherwise
    try:
        with fail_fast_http({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}):
            client = _client()
            with_retry(client.search_experiments, max_results=1)
            if (db := sqlite_path(uri)) is not None:
                _experiment_id(client)  # creates the schema and experiment on a new DB
                with_retry(probe_write, db)  # an existing one is only read above: prove it can be written
    except UserError:
        raise
    except Exception as err:
        raise store_problem(err) from None


def probe_write(db: Path) -> None:
    """Write to the sqlite DB in a transaction that is rolled back: fails as a real write would, changes nothing."""
    con = sqlite3.connect(db, timeout=5)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("CREATE TABLE aegan_write_probe (x INTEGER)")  # the rollback journal is written here
    finally:
        con.rollback()
        con.close()


def _client():
    return _client_for(tracking_uri())


@functools.lru_cache(maxsize=4)
def _client_for(uri: str):
    """One client (one SQLAlchemy engine, slow to build) per URI and process; a fresh sqlite DB is created under a lock."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per model logged, in stage logs
    import logging

    import mlflow

    # it logs each DB error's traceback before raising it; the error itself becomes one line here (StoreUnusable)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # per model logged: "Validating input example", and a caution about pickled models (ours is our own code)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    # the system metrics monitor says that it starts and stops with every run, and when the store fails it stops with
    # a warning holding the store's error (often many lines): the stage's own call to the store says it in one line
    logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    share_workspace_artifacts(uri)
    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(uri)
    with store_lock(path):  # the client opens the store: creates or migrates the DB
        client = MlflowClient(uri)
        _call(client.search_experiments, max_results=1)
    return client


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI; None for other stores (and in-memory sqlite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?")[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def store_lock(db: Path, timeout: float = 600):
    """Held while a process opens the sqlite store, so one process at a time creates or migrates it."""
    from filelock import FileLock

    with FileLock(f"{db}.lock", timeout=timeout):
        yield


def comparison_url(base: str) -> str:
    """The URL of the comparison view (COMPARISON_VIEW) on the MLflow UI at `base`; the view is stored first."""
    client = _client()
    exp_id = _experiment_id(client)
    view = json.dumps(COMPARISON_VIEW, sort_keys=True)
    _call(client.set_experiment_tag, exp_id, f"mlflow.sharedViewState.{COMPARISON_VIEW_KEY}", view)
    # the runs tab, in the "Model training" UI (MLflow 3.17 opens an experiment on its GenAI overview otherwise)
    return (f"{base.rstrip('/')}/#/experiments/{exp_id}/runs?viewStateShareKey={COMPARISON_VIEW_KEY}"
            "&workflowType=machine_learning")  # fmt: skip


def _experiment_id(client) -> str:
    exp = _call(client.get_experiment_by_name, EXPERIMENT)
    if exp is not None:
        for key, value in EXPERIMENT_TAGS.items():  # a DB made by an earlier aegan
            if key not in exp.tags:
                _call(client.set_experiment_tag, exp.experiment_id, key, value)
        return exp.experiment_id
    artifacts = (repo_root() / "mlruns").as_uri()
    try:
        exp_id = with_retry(client.create_experiment, EXPERIMENT, artifact_location=artifacts, tags=EXPERIMENT_TAGS)
    except Exception as err:  # another process created it first, or the store cannot be written
        exp = _call(client.get_experiment_by_name, EXPERIMENT)
        if exp is None:
            raise store_problem(err) from None
        return exp.experiment_id
    if (db := sqlite_path(tracking_uri())) is not None:
        with_retry(relative_artifacts, db, exp_id, artifacts)
    return exp_id


def relative_artifacts(db: Path, experiment_id: str, absolute: str) -> None:
    """Store the new experiment's artifact location as `mlruns/<id>`, relative to the workspace.

    MLflow makes every local location absolute when it creates an experiment, and each run's artifact URI
    is derived from it: a copied or moved workspace would read and write artifacts in the old place. MLflow
    has no call to change the location, so this UPDATE does, right after creating it; a run another process
    created in between (its artifacts under `absolute`, the same folder) is made relative too. MLflow resolves
    a relative location against the working directory: the workspace root for stages and `make ui`.
    """
    con = sqlite3.connect(db, timeout=20)
    try:
        with con:
            con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                        (f"mlruns/{experiment_id}", int(experiment_id)))  # fmt: skip
            con.execute("UPDATE runs SET artifact_uri = 'mlruns' || substr(artifact_uri, ?) WHERE experiment_id = ? "
                        "AND substr(artifact_uri, 1, ?) = ?",
                        (len(absolute) + 1, int(experiment_id), len(absolute), absolute))  # fmt: skip
    finally:
        con.close()


CANDIDATE, BEST = "candidate", "best"  # aliases: every report's winner; a decided winner, moved only by `aegan promote`


def register_model(model_uri: str, name: str, sha256: str, tags: dict[str, str], description: str,
                   alias: str = CANDIDATE) -> tuple[str, bool]:  # fmt: skip
    """The version of registered model `name` that holds the generator whose file has `sha256`, registered from
    `model_uri` with `tags` and `description` when no version holds it yet (the same bytes are not registered
    twice); `alias` moved to it. (its version number, whether it was registered now). Created on first use."""
    import mlflow

    client = _client()
    same = [v for v in _call(client.search_model_versions, f"name = '{name}'")
            if v.tags.get("generator_sha256") == sha256]  # fmt: skip
    if same:
        version, new = str(min(int(v.version) for v in same)), False
    else:
        version, new = str(_call(mlflow.register_model, model_uri, name, tags={**tags, "generator_sha256": sha256}).version), True
        _call(client.update_model_version, name, version, description=description)
    _call(client.set_registered_model_alias, name, alias, version)
    return version, new


def model_versions(name: str) -> list:
    """Every version of registered model `name` in this store (none when it does not exist)."""
    return _call(_client().search_model_versions, f"name = '{name}'")


def move_alias(name: str, alias: str, version: str, tags: dict[str, str]) -> None:
    """Point `alias` of `name` at `version` and tag that version."""
    client = _client()
    for key, value in tags.items():
        _call(client.set_model_version_tag, name, version, key, value)
    _call(client.set_registered_model_alias, name, alias, version)


def tag_registered_model(name: str, key: str, value: str) -> None:
    _call(_client().set_registered_model_tag, name, key, value)


def runs_in_store(run_ids) -> set[str]:
    """Which of `run_ids` this tracking store holds (a clone that pulled its results from a DVC remote holds none of
    the runs that trained them)."""
    from mlflow.exceptions import MlflowException

    client, held = _client(), set()
    for run_id in run_ids:
        try:
            with fail_fast_http():
                with_retry(client.get_run, run_id)  # not _call: a run it lacks is an answer, not a broken store
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise store_problem(err) from None
        else:
            held.add(run_id)
    return held


_OPEN: dict[str, "Run"] = {}  # runs this process started or resumed and has not ended


def end_open_runs(status: str) -> None:
    """End every run still open (a stage stopped by a signal or an error): KILLED or FAILED, not RUNNING forever."""
    for run in list(_OPEN.values()):
        try:
            run.end(status)
        except Exception:  # the store is gone or locked for good: nothing more to do on the way out
            pass


def experiment_run(client, name: str) -> str:
    """The parent run of DVC experiment `name` (`dvc exp run`, queued or not), named after it; created by its first
    stage. The stages of one experiment run one after another, so no two create it at once."""
    exp_id = _experiment_id(client)
    found = _call(client.search_runs, [exp_id], f"tags.stage = 'experiment' and tags.dvc_exp = '{name}'", max_results=1)
    if found:
        return found[0].info.run_id
    tags = {"stage": "experiment", "dvc_exp": name, "git_commit": git_commit(), "workspace": str(repo_root())}
    if baseline := os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["baseline_rev"] = baseline
    return _call(client.create_run, exp_id, run_name=f"experiment {name}", tags=tags).info.run_id


SYSTEM_METRICS_ENV = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"  # MLflow's own switch: on here unless set to false


def system_metrics_monitor(run_id: str, uri: str, resume: bool):
    """MLflow's system metrics monitor (`system/...`: CPU, memory, disk, network; GPU where nvidia-ml-py is
    installed, the `gpu` extra) logging to the run every MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL seconds (10), from
    a daemon thread; None when the user turned it off, or, said in one line, when it cannot start."""
    if os.environ.get(SYSTEM_METRICS_ENV, "").strip().lower() in ("false", "0", "no", "off"):
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, tracking_uri=uri, resume_logging=resume)
        monitor.start()
        return monitor
    except Exception as err:  # never a reason to fail a stage
        print(f"MLflow: system metrics not logged for run {run_id} ({type(err).__name__}: {one_line(err, 200)})",
              file=sys.stderr)  # fmt: skip
        return None


class Run:
    """One MLflow run, with buffered metrics. Use `Run.start(...)` or `Run.resume(run_id)`: both log system
    metrics while the run is open, until `end()`."""

    def __init__(self, client, run_id: str, flush_every: int = 500):
        self.client = client
        self.run_id = run_id
        self.flush_every = flush_every
        self._buffer: list = []
        self._monitor = None
        _OPEN[run_id] = self

    @classmethod
    def start(cls, name: str, tags: dict[str, str], params: dict[str, Any] | None = None) -> "Run":
        client = _client()
        tags = {"git_commit": git_commit(), **run_identity(), **tags}
        experiment = None
        if "dvc_exp" in tags and "mlflow.parentRunId" not in tags:  # `dvc exp run`: the experiment is the parent
            experiment = experiment_run(client, tags["dvc_exp"])
            tags["mlflow.parentRunId"] = experiment
        run = _call(client.create_run, _experiment_id(client), run_name=name, tags=tags)
        self = cls(client, run.info.run_id)
        self.experiment = experiment
        self._monitor = system_metrics_monitor(self.run_id, client.tracking_uri, resume=False)
        if params:
            self.log_params(params)
        return self

    @classmethod
    def finished(cls, run_id: str) -> "Run":
        """A run that has ended, to add what was measured later (final scores): its status and end time, hence
        its duration, stay those of the stage that ran it. Call `flush()` when done; never `end()`."""
        client = _client()
        _call(client.get_run, run_id)  # gone (e.g. mlflow.db replaced): the error is the caller's to report
        self = cls(client, run_id)
        _OPEN.pop(run_id, None)  # nothing to end on the way out
        return self

    @classmethod
    def resume(cls, run_id: str) -> "Run":
        client = _client()
        _call(client.update_run, run_id, status="RUNNING")
        self = cls(client, run_id)
        self._monitor = system_metrics_monitor(run_id, client.tracking_uri, resume=True)  # its steps continue
        return self

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            _call(self.client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def log_train(self, metrics: dict[str, float], step: int) -> None:
        """The training loop's `on_log`: its losses and diagnostics, as `train/<name>` (their own chart section)."""
        self.log_metrics({f"train/{k}": v for k, v in metrics.items()}, step)

    def flush(self) -> None:
        while self._buffer:
            # drop a batch from the buffer only once it is stored
            _call(self.client.log_batch, self.run_id, metrics=self._buffer[:1000])
            self._buffer = self._buffer[1000:]

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            _call(self.client.set_tag, self.run_id, k, str(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        _call(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_dataset(self, path: str | Path, sha256: str, context: str, tags: dict[str, str] | None = None) -> None:
        """The file a stage read, as an MLflow dataset input: its path relative to the workspace, its sha256."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import DatasetInput, InputTag

        dataset = MetaDataset(LocalArtifactDatasetSource(str(path)), name=Path(path).name, digest=sha256[:12])
        input_tags = [InputTag("mlflow.data.context", context), InputTag("sha256", sha256)]
        input_tags += [InputTag(k, str(v)) for k, v in (tags or {}).items()]
        inputs = [DatasetInput(dataset._to_mlflow_entity(), input_tags)]
        for attempt in range(5):
            try:
                return _call(self.client.log_inputs, self.run_id, inputs)
            except StoreUnusable as err:
                # stages running at once insert the same dataset row: the loser fails on the store's unique key,
                # and once the row exists the call only links it
                if "UNIQUE constraint failed: datasets" not in str(err) or attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1) + random.random() * 0.2)

    def log_table(self, table, artifact_file: str) -> None:
        """A pandas table as a JSON artifact MLflow shows as a table (not as per-run metric charts)."""
        _call(self.client.log_table, self.run_id, table, artifact_file)

    def log_image(self, image, key: str, step: int) -> None:
        """`image`: HxWxC uint8 numpy array; stored as an artifact per step."""
        _call(self.client.log_image, self.run_id, image, key=key, step=step)

    def stop_system_metrics(self, timeout: float = 10.0) -> None:
        """Stop the monitor; its last call, to a store that stopped answering, is not waited for beyond `timeout`."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            stopper = threading.Thread(target=monitor.finish, daemon=True, name="SystemMetricsStop")
            stopper.start()
            stopper.join(timeout)

    def end(self, status: str = "FINISHED") -> None:
        _OPEN.pop(self.run_id, None)
        self.stop_system_metrics()
        self.flush()
        _call(self.client.set_terminated, self.run_id, status=status)
        if getattr(self, "experiment", None):  # the experiment's run spans its stages: it ends with the last one
            _call(self.client.set_terminated, self.experiment, status="FINISHED" if status == "FINISHED" else "FAILED")
