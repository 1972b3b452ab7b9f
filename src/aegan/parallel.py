"""`aegan run --jobs N`: the out-of-date stages of DVC's DAG as Dask tasks, each taking its upstream stages' futures.

Each task runs `dvc --wait-for-lock repro --single-item <stage>` in the
workspace: DVC itself decides whether the stage must run, locks the paths it
reads and writes, and records it in dvc.lock, so the results are those of a
plain `dvc repro`. Nothing here knows a stage name: the plan comes from DVC's
own graph (`Repo.index.graph`) and status.

Every stage is submitted at once; Dask does the scheduling. A task runs when
the futures it takes as arguments are done, as many at once as the cluster has
threads, stages with more downstream work first (`priority=`); a failed stage's
task raises `StageFailed`, and Dask fails its dependents with that same
exception without running them. Priority orders the stages a worker holds
runnable at the same moment: a stage made runnable by one that just finished
reaches the worker a scheduler round trip later, so a stage the worker holds
by then may take that thread first.

Stages run on a Dask `LocalCluster` in this process (tasks only wait on
child processes) or, given `--scheduler tcp://host:port`, on an existing
cluster whose workers see the workspace at the same path (shared filesystem).
Torch threads per stage: the cores of the worker's machine / the stages it
runs at once (OMP_NUM_THREADS; `compute.cpu_threads: 0` uses it). A failed
stage stops its downstream stages; independent stages finish.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

LOG_DIR = Path("logs")
BUSY_WAIT_S, BUSY_RETRY_S = 120, 2  # how long a stage waits for paths another `dvc` holds (outputs_busy)
_RUNNING: dict[str, subprocess.Popen] = {}  # stage -> its `dvc repro`, for local clean-up on interrupt
_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set on interrupt: a task that starts afterwards does not launch its stage


@dataclass
class Plan:
    """Stages to run in a topological order, each with its upstream stages among them; the rest is up to date."""

    order: list[str]
    upstream: dict[str, set[str]]
    up_to_date: list[str] = field(default_factory=list)

    @cached_property
    def graph(self):
        """The planned stages as a networkx DiGraph, edges from a stage to the stages that depend on it."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(self.order)
        graph.add_edges_from((up, s) for s in self.order for up in self.upstream[s])
        return graph

    def downstream(self, stage: str) -> set[str]:
        """Every planned stage that depends on `stage`, directly or not."""
        import networkx as nx

        return nx.descendants(self.graph, stage)


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    failed: dict[str, dict] = field(default_factory=dict)  # stage -> its task result (rc, log, ...)
    blocked: dict[str, str] = field(default_factory=dict)  # stage -> the failed upstream stage that stopped it
    results: dict[str, dict] = field(default_factory=dict)
    up_to_date: list[str] = field(default_factory=list)  # stages the plan found up to date: not run


class StageFailed(Exception):
    """A stage's task failed. Dask raises this same exception from its dependents' futures, so `stage` names the cause."""

    def __init__(self, stage: str, result: dict):
        super().__init__(stage, result)  # the arguments again: the exception is pickled from a remote worker
        self.stage, self.result = stage, result

    def __str__(self) -> str:
        return f"stage {self.stage} failed: {self.result.get('log') or self.result.get('error')}"


def plan_from_dvc(root: Path) -> Plan:
    """What `dvc repro` would consider: stages DVC reports changed, and every stage downstream of them."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    from aegan.errors import UserError

    cwd = os.getcwd()
    os.chdir(root)  # stage.addressing (the `dvc repro` target) is relative to the working directory
    try:
        with Repo(".", _wait_for_lock=True) as repo:
            check_cache_writable(Path(repo.cache.local.path))
            graph = repo.index.graph  # edges point from a stage to the stages it depends on
            changed = set(repo.status())
            name = {s: s.addressing for s in graph.nodes}
            todo = {s for s in graph.nodes if name[s] in changed}
            for s in list(todo):
                todo |= nx.ancestors(graph, s)
            todo = {s for s in todo if not s.frozen}
            topo = list(reversed(list(nx.topological_sort(graph))))
            order = [name[s] for s in topo if s in todo]
            upstream = {name[s]: {name[u] for u in graph.successors(s) if u in todo} for s in todo}
            return Plan(order, upstream, [name[s] for s in topo if s not in todo])
    except DvcException as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"dvc cannot plan the pipeline in {root}: {first}") from None
    finally:
        os.chdir(cwd)


def check_cache_writable(cache: Path) -> None:
    """Refuse, before any stage runs, a DVC cache no stage could save its outputs in (DVC itself finds out only
    after a stage has computed them: "dvc exit 255" at the end of a training). A file is written there and removed:
    permission bits alone do not say it (root, read-only mounts, immutable folders)."""
    import tempfile

    from aegan.errors import UserError

    where = cache if cache.exists() else next(p for p in cache.parents if p.exists())
    try:
        fd, probe = tempfile.mkstemp(prefix=".aegan-probe-", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"the DVC cache {cache} cannot be written ({err.strerror}): no stage could save its outputs: "
                        f"give this user access to it (chmod -R u+rwX {cache}) or point DVC at another folder "
                        "(`dvc cache dir PATH`)") from None  # fmt: skip


def log_path(root: Path, stage: str) -> Path:
    return root / LOG_DIR / (stage.replace("/", "_").replace(":", "_") + ".log")


def run_stage(root: str, stage: str, log: str, env: dict[str, str]) -> dict:
    """`dvc repro` of one stage on the worker, its output in `log`; returns its exit status (`rc`) and times."""
    import socket

    from aegan.shutdown import runner_env

    slots = 1
    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        pass
    threads = str(max(1, (os.cpu_count() or 1) // slots))
    full_env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, **env}
    # the stage stops when the process that started it dies, even by SIGKILL (shutdown.py): the runner with
    # a local cluster, this worker on a remote one (a lost worker leaves no stage running unattended)
    full_env |= runner_env()
    full_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full_env.get("PATH", "")  # `aegan`, `dvc`
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", stage]
    start = time.time()
    waited_until = time.monotonic() + BUSY_WAIT_S
    for attempt in itertools.count():
        with open(log, "a" if attempt else "w") as out:
            with _LOCK:  # one check and start: no stage begins once _stop_local_stages has looked
                if _STOPPING.is_set():
                    return {"stage": stage, "rc": None, "log": log, "error": "interrupted before it started"}
                # its own process group: stopping the stage reaches DVC, the shell and the stage's command alike
                proc = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
                _RUNNING[stage] = proc
            try:
                rc = proc.wait()
            finally:
                with _LOCK:
                    _RUNNING.pop(stage, None)
        if rc == 0 or not outputs_busy(log) or time.monotonic() > waited_until:
            break
        time.sleep(BUSY_RETRY_S)
    return {"stage": stage, "rc": rc, "log": log, "start": start, "end": time.time(), "host": socket.gethostname(),
            "threads": int(threads), "command_rc": command_exit(log) if rc else None}  # fmt: skip


def outputs_busy(log: str) -> bool:
    """Whether DVC refused the stage because another `dvc` still holds a lock on a path it reads or writes.
    `--wait-for-lock` waits only for the repository's lock, not for these (.dvc/tmp/rwlock): on a cluster they are
    held a moment longer by the `dvc repro` of a lost worker whose stage is being stopped, and a result Dask lost
    with that worker is computed again (DVC finds the stage up to date) while a stage downstream still reads it."""
    return "is busy, it is being blocked by" in _tail(log)


def command_exit(log: str) -> int | None:
    """The exit status of the stage's own command, which DVC names in its last lines ("exited with 2"); DVC's
    own status is 255 for any failing command. None when the log does not say (DVC failed before the command)."""
    found = re.findall(r"exited with (-?\d+)", _tail(log))
    return int(found[-1]) if found else None


def _tail(log: str) -> str:
    """The last lines of a stage's log ("" when there is none)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - 4096))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stage_task(topic: str, stage: str, fn: Callable[..., dict], args: tuple, *upstream: dict) -> dict:
    """The Dask task of one stage: it runs once its `upstream` results exist, says so on `topic`, and raises
    `StageFailed` for anything but `rc` 0, so that Dask fails the stages downstream of it without running them."""
    from distributed import get_worker

    get_worker().log_event(topic, stage)
    try:
        result = fn(*args)
    except Exception as err:  # the task could not run its stage at all
        result = {"stage": stage, "rc": None, "log": None, "error": f"{type(err).__name__}: {err}"}
    if result.get("rc") != 0:
        raise StageFailed(stage, result)
    return result


def schedule(plan: Plan, client, task: Callable[[str], tuple], echo: Callable[[str], None] = print) -> Outcome:
    """Submit every planned stage to `client` at once, each taking its upstream stages' futures, and collect them.

    `task(stage)` gives the function and arguments that run the stage; the function returns a dict with `rc`.
    """
    weight = {s: len(plan.downstream(s)) for s in plan.order}  # stages with more downstream work go first
    # a stage has more descendants than any stage below it: by weight is also a topological order
    order = sorted(plan.order, key=lambda s: -weight[s])
    run_id = uuid.uuid4().hex
    topic = f"aegan-start-{run_id}"  # this run's own: other runs may share a remote scheduler
    client.subscribe_topic(topic, lambda event: echo(f"start  {event[1]}"))
    futures: dict[str, object] = {}
    try:
        for stage in order:
            fn, *args = task(stage)
            futures[stage] = client.submit(stage_task, topic, stage, fn, tuple(args),
                                           *(futures[up] for up in plan.upstream[stage]),
                                           priority=weight[stage], key=f"aegan-{stage}-{run_id}", pure=False)  # fmt: skip
        return _collect(futures, echo)
    except BaseException:  # an interrupt: no stage still queued starts
        client.cancel(list(futures.values()))
        raise
    finally:
        client.unsubscribe_topic(topic)


def _collect(futures: dict, echo: Callable[[str], None]) -> Outcome:
    """Each stage's result as its future finishes: done, failed, or not run because of the failed stage named."""
    from distributed import as_completed

    out = Outcome()
    stage_of = {fut.key: stage for stage, fut in futures.items()}
    for fut in as_completed(futures.values()):
        stage = stage_of[fut.key]
        cause, result = _outcome(fut, stage, stage_of)
        if cause is None:
            out.results[stage] = result
            out.done.append(stage)
            echo(f"done   {stage} in {result['end'] - result['start']:.1f} s" if "end" in result else f"done   {stage}")
        elif cause == stage:
            out.results[stage] = result
            out.failed[stage] = result
            echo(f"FAILED {stage}: {result.get('log') or result.get('error')}")
        else:
            out.blocked[stage] = cause
            if cause in out.done:  # it was done, then failed when Dask computed its result again (a lost worker)
                out.failed[cause] = out.results[cause] = result
                out.done.remove(cause)
                echo(f"FAILED {cause} (run again for a result lost with its worker): {result.get('log') or result.get('error')}")
    return out


def _outcome(fut, stage: str, stage_of: dict) -> tuple[str | None, dict]:
    """(None, result) for a done stage, else (the failed stage that caused this one's error, its result)."""
    try:
        return None, fut.result()
    except StageFailed as err:
        return err.stage, err.result
    except Exception as err:  # from the scheduler: e.g. every worker that ran the task died (KilledWorker)
        cause = stage_of.get(getattr(err, "task", None), stage)  # Dask gives dependents the cause's own error
        return cause, {"stage": cause, "rc": None, "log": None, "error": f"{type(err).__name__}: {err}"}


def connect(jobs: int, scheduler: str | None):
    """A Dask client: on the cluster at `scheduler`, or on a LocalCluster in this process with `jobs` slots."""
    from aegan.errors import UserError

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError, ValueError) as err:
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise UserError(f"cannot reach the Dask scheduler at {scheduler} ({type(err).__name__}: {first}): "
                            "start it (`dask scheduler`) or check the address") from None  # fmt: skip
    quiet_failed_stages()
    cluster = LocalCluster(n_workers=1, threads_per_worker=jobs, processes=False, dashboard_address=None)
    return Client(cluster), cluster


class _NotAStageFailure(logging.Filter):
    """Drops the worker's "Compute Failed ... Traceback" record of a stage that failed: aegan says which stage
    failed, why and where its log is in one line at the end; Dask's record of that is noise before it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (str(record.msg).startswith("Compute Failed") and "StageFailed" in record.getMessage())


def quiet_failed_stages() -> None:
    worker = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _NotAStageFailure) for f in worker.filters):
        worker.addFilter(_NotAStageFailure())


def parse_jobs(text: str | None) -> int | None:
    from aegan.errors import UserError

    if text is None:
        return None
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise UserError(f"--jobs {text}: give a whole number >= 1 (stages to run at once)")
    return jobs


def run(jobs: int | None, scheduler: str | None = None, echo: Callable[[str], None] = print) -> Outcome:
    """In the workspace at the working directory: connect, plan with DVC, check a tracking server, run the plan."""
    root = Path.cwd().resolve()
    with workspace_lock(root):
        return _run(root, jobs, scheduler, echo)


@contextlib.contextmanager
def workspace_lock(root: Path):
    """One `aegan run` per workspace: a second one is refused in one line before it plans or opens a log.
    The lock is the kernel's (flock): a runner killed even by SIGKILL releases it."""
    from filelock import FileLock, Timeout

    from aegan.errors import UserError

    folder = root / LOG_DIR
    folder.mkdir(parents=True, exist_ok=True)
    holder = folder / ".aegan-run.pid"
    lock = FileLock(str(folder / ".aegan-run.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        other = holder.read_text().strip() if holder.is_file() else "?"
        raise UserError(f"another aegan run (pid {other}) is running in {root}: let it finish or stop it "
                        f"(kill {other}), then run again; its logs are in {LOG_DIR}/") from None  # fmt: skip
    try:
        holder.write_text(f"{os.getpid()}\n")
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _run(root: Path, jobs: int | None, scheduler: str | None, echo: Callable[[str], None]) -> Outcome:
    from aegan import tracking
    from aegan.atomic import recover

    recover(root / "reports")  # a report whose files a killed run left half moved in is completed first
    _STOPPING.clear()
    t0 = time.monotonic()
    say = echo
    echo = lambda line: say(f"[{time.monotonic() - t0:7.1f} s] {line}")  # noqa: E731
    client, cluster = connect(jobs or os.cpu_count() or 1, scheduler)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        plan = plan_from_dvc(root)
        if not plan.order:
            echo(f"{len(plan.up_to_date)} stages, all up to date")
            return Outcome(up_to_date=list(plan.up_to_date))
        slots = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        echo(f"{len(plan.order)} stages to run, {len(plan.up_to_date)} up to date, "
             f"at most {slots} at once (the cluster's threads)")  # fmt: skip
        parent = open_execution_run(plan, root)  # every stage's run is its child; the store is proven usable first
        env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY", "DVC_NO_ANALYTICS")
               if k in os.environ}  # fmt: skip
        env |= {tracking.EXECUTION_ENV: parent.execution_id, tracking.PARENT_ENV: parent.run_id}

        def task(stage: str) -> tuple:
            return run_stage, str(root), stage, str(log_path(root, stage)), env

        outcome = None
        try:
            outcome = schedule(plan, client, task, echo)
            outcome.up_to_date = list(plan.up_to_date)
            return outcome
        finally:
            close_execution_run(parent, outcome)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (_raise_interrupt): say what stopped, and how to go on
        with _LOCK:
            running = sorted(_RUNNING)
        raise Stopped(str(err), running) from None
    finally:
        _stop_local_stages()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        client.close()
        if cluster is not None:
            cluster.close()


def open_execution_run(plan: Plan, root: Path):
    """The parent MLflow run of this pipeline execution, tagged with its id, workspace and what it runs."""
    from aegan import tracking

    tracking.check_tracking()  # a store that cannot be used: one line before any stage starts
    end_orphaned_execution_runs(root)
    execution_id = uuid.uuid4().hex[:12]
    tags = {"stage": "pipeline", "execution_id": execution_id, "workspace": str(root),
            "stages_planned": str(len(plan.order)), "stages_up_to_date": str(len(plan.up_to_date))}  # fmt: skip
    run = tracking.Run.start(f"pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}", tags)
    run.execution_id = execution_id
    return run


def end_orphaned_execution_runs(root: Path) -> list[str]:
    """End KILLED the pipeline runs of this workspace still RUNNING: their runner died without ending them (kill -9,
    a lost machine). Called under the workspace lock, so no live runner of this workspace owns one. Their ids."""
    from aegan import tracking

    client = tracking._client()
    exp_id = tracking._experiment_id(client)
    running = tracking._call(client.search_runs, [exp_id], "tags.stage = 'pipeline' and attributes.status = 'RUNNING'")
    orphans = [r.info.run_id for r in running if r.data.tags.get("workspace") == str(root)]
    for run_id in orphans:
        tracking._call(client.set_tag, run_id, "ended_by", "the next aegan run in this workspace: its runner was gone")
        tracking._call(client.set_terminated, run_id, "KILLED")
    return orphans


def close_execution_run(run, outcome: "Outcome | None") -> None:
    """FINISHED when every stage ran, FAILED when one failed, KILLED when the run was interrupted."""
    try:
        if outcome is None:
            run.end("KILLED")
            return
        run.set_tags({"stages_done": str(len(outcome.done)), "stages_failed": ",".join(sorted(outcome.failed)) or "-"})
        run.end("FAILED" if outcome.failed else "FINISHED")
    except Exception as err:  # the stages' own results stand; the parent run is only their index
        print(f"MLflow: the pipeline run {run.run_id} could not be ended ({type(err).__name__})", file=sys.stderr)


class Stopped(Exception):
    """`aegan run` stopped by a signal: one line naming the stages it stopped and how to continue."""

    def __init__(self, why: str, running: list[str]):
        self.exit_code = 143 if why == f"signal {signal.SIGTERM}" else 130
        by = "SIGTERM" if self.exit_code == 143 else "Ctrl-C"
        stopped = f"{len(running)} running stage(s) stopped ({', '.join(running)}), their outputs not written" \
            if running else "no stage was running"  # fmt: skip
        super().__init__(f"stopped by {by}: {stopped}; finished stages are kept: run `aegan run` again to continue")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_local_stages() -> None:
    """Stop the `dvc repro` children of this process still running (after an interrupt), and start no more."""
    with _LOCK:
        _STOPPING.set()
        procs = list(_RUNNING.values())
    for p in procs:
        _signal_group(p, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group run_stage started for this stage (start_new_session)
    except ProcessLookupError:
        pass


def failure_message(outcome: Outcome) -> str | None:
    """One line naming each failed stage, its log, and the stages it stopped; None when nothing failed."""
    if not outcome.failed:
        return None
    parts = []
    for stage, r in outcome.failed.items():
        if r.get("command_rc") is not None:
            why = f"exit {r['command_rc']}"
        elif r.get("rc") is not None:
            why = f"dvc exit {r['rc']}"
        else:
            why = r.get("error", "no result")
        stopped = sorted(s for s, by in outcome.blocked.items() if by == stage)
        parts.append(f"stage {stage} failed ({why}), log: {r.get('log') or '-'}"
                     + (f"; not run because of it: {', '.join(stopped)}" if stopped else ""))  # fmt: skip
    return " | ".join(parts)
