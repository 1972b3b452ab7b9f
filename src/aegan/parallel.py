"""`aegan run --jobs N`: the out-of-date stages of DVC's DAG as Dask tasks, each once its upstream stages are done.

Each task runs `dvc --wait-for-lock repro --single-item <stage>` in the
workspace: DVC itself decides whether the stage must run, locks the paths it
reads and writes, and records it in dvc.lock, so the results are those of a
plain `dvc repro`. Nothing here knows a stage name: the plan comes from DVC's
own graph (`Repo.index.graph`) and status.

Stages run on a Dask `LocalCluster` in this process (tasks only wait on
child processes) or, given `--scheduler tcp://host:port`, on an existing
cluster whose workers see the workspace at the same path (shared filesystem).
Torch threads per stage: the cores of the worker's machine / the stages it
runs at once (OMP_NUM_THREADS; `compute.cpu_threads: 0` uses it). A failed
stage stops its downstream stages; independent stages finish.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

LOG_DIR = Path("logs")
_RUNNING: dict[str, subprocess.Popen] = {}  # stage -> its `dvc repro`, for local clean-up on interrupt
_LOCK = threading.Lock()


@dataclass
class Plan:
    """Stages to run in a topological order, each with its upstream stages among them; the rest is up to date."""

    order: list[str]
    upstream: dict[str, set[str]]
    up_to_date: list[str] = field(default_factory=list)

    def downstream(self, stage: str) -> set[str]:
        """Every planned stage that depends on `stage`, directly or not."""
        out, todo = set(), [stage]
        while todo:
            s = todo.pop()
            for d in self.order:
                if s in self.upstream[d] and d not in out:
                    out.add(d)
                    todo.append(d)
        return out


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    failed: dict[str, dict] = field(default_factory=dict)  # stage -> its task result (rc, log, ...)
    blocked: dict[str, str] = field(default_factory=dict)  # stage -> the failed upstream stage that stopped it
    results: dict[str, dict] = field(default_factory=dict)


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


def log_path(root: Path, stage: str) -> Path:
    return root / LOG_DIR / (stage.replace("/", "_").replace(":", "_") + ".log")


def run_stage(root: str, stage: str, log: str, env: dict[str, str], warm: bool = True) -> dict:
    """The Dask task: `dvc repro` of one stage on the worker, its output in `log`; never raises for a failed stage.

    `warm`: the stage's `aegan` command runs in this worker's warm process (warm.py), started on first use.
    """
    import socket

    from aegan import warm as warm_process

    slots = 1
    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        pass
    threads = str(max(1, (os.cpu_count() or 1) // slots))
    full_env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, **env}
    if warm:
        full_env[warm_process.ENV] = warm_process.ensure_server()
    full_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full_env.get("PATH", "")  # `aegan`, `dvc`
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", stage]
    start = time.time()
    with open(log, "w") as out:
        # its own process group: stopping the stage reaches DVC, the shell and the stage's command alike
        proc = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with _LOCK:
            _RUNNING[stage] = proc
        try:
            rc = proc.wait()
        finally:
            with _LOCK:
                _RUNNING.pop(stage, None)
    return {"stage": stage, "rc": rc, "log": log, "start": start, "end": time.time(), "host": socket.gethostname(),
            "threads": int(threads)}  # fmt: skip


def schedule(plan: Plan, client, task: Callable[[str], tuple], jobs: int, echo: Callable[[str], None] = print) -> Outcome:
    """Submit each planned stage once its upstream stages have succeeded, at most `jobs` at a time.

    `task(stage)` gives the function and arguments of the stage's Dask task; the task returns a dict with `rc`.
    """
    from distributed import as_completed

    out = Outcome()
    waiting = {s: set(plan.upstream[s]) for s in plan.order}
    weight = {s: len(plan.downstream(s)) for s in plan.order}  # stages with more downstream work go first
    ready = [s for s in plan.order if not waiting[s]]
    futures = as_completed()
    in_flight: dict = {}
    while ready or in_flight:
        ready.sort(key=lambda s: -weight[s])
        while ready and len(in_flight) < jobs:
            stage = ready.pop(0)
            fn, *args = task(stage)
            fut = client.submit(fn, *args, key=f"aegan-{stage}-{time.time_ns()}", pure=False)
            in_flight[fut] = stage
            futures.add(fut)
            echo(f"start  {stage}")
        fut = next(futures)
        stage = in_flight.pop(fut)
        try:
            result = fut.result()
        except Exception as err:  # the worker died, or the task could not run at all
            result = {"stage": stage, "rc": None, "log": None, "error": f"{type(err).__name__}: {err}"}
        out.results[stage] = result
        if result.get("rc") == 0:
            out.done.append(stage)
            took = f" in {result['end'] - result['start']:.1f} s" if "end" in result else ""
            echo(f"done   {stage}{took}")
            for s in plan.order:
                if stage in waiting.get(s, ()):
                    waiting[s].discard(stage)
                    if not waiting[s] and s not in out.blocked:
                        ready.append(s)
        else:
            out.failed[stage] = result
            echo(f"FAILED {stage}: {result.get('log') or result.get('error')}")
            for s in plan.downstream(stage):
                out.blocked.setdefault(s, stage)
                if s in ready:
                    ready.remove(s)
    return out


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
    cluster = LocalCluster(n_workers=1, threads_per_worker=jobs, processes=False, dashboard_address=None)
    return Client(cluster), cluster


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


def run(jobs: int | None, scheduler: str | None = None, echo: Callable[[str], None] = print,
        warm: bool = True) -> Outcome:
    """In the workspace at the working directory: connect, plan with DVC, check a tracking server, run the plan.

    `warm`: stages start as children of a warm process (warm.py) instead of importing everything again.
    """
    root = Path.cwd().resolve()
    t0 = time.monotonic()
    say = echo
    echo = lambda line: say(f"[{time.monotonic() - t0:7.1f} s] {line}")  # noqa: E731
    client, cluster = connect(jobs or os.cpu_count() or 1, scheduler)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        if warm and cluster is not None:
            from aegan.warm import ensure_server

            ensure_server()  # its imports overlap with planning; remote workers start theirs with their first stage
        plan = plan_from_dvc(root)
        if not plan.order:
            echo(f"{len(plan.up_to_date)} stages, all up to date")
            return Outcome()
        echo(f"{len(plan.order)} stages to run, {len(plan.up_to_date)} up to date")
        if os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http:", "https:")):
            from aegan.tracking import check_tracking

            check_tracking()  # a tracking server: reachable before any stage starts
        # a sqlite DB: the first stage that opens it creates it, under the lock next to it (tracking.store_lock)
        env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY", "DVC_NO_ANALYTICS")
               if k in os.environ}  # fmt: skip
        slots = jobs or sum(w["nthreads"] for w in client.scheduler_info()["workers"].values()) or 1

        def task(stage: str) -> tuple:
            return run_stage, str(root), stage, str(log_path(root, stage)), env, warm

        return schedule(plan, client, task, slots, echo)
    finally:
        _stop_local_stages()
        from aegan.warm import stop_server

        stop_server()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        client.close()
        if cluster is not None:
            cluster.close()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_local_stages() -> None:
    """Stop the `dvc repro` children of this process still running (after an interrupt)."""
    with _LOCK:
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
        why = f"exit {r['rc']}" if r.get("rc") is not None else r.get("error", "no result")
        stopped = sorted(s for s, by in outcome.blocked.items() if by == stage)
        parts.append(f"stage {stage} failed ({why}), log: {r.get('log') or '-'}"
                     + (f"; not run because of it: {', '.join(stopped)}" if stopped else ""))  # fmt: skip
    return " | ".join(parts)
