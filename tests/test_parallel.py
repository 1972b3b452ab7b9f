"""`aegan run --jobs N`: DVC's out-of-date stages as Dask tasks, in DAG order, a failed stage stopping only its downstream.

The scheduler on its own (a fake task that records start and end, on the
LocalCluster `connect` makes) and on a real DVC workspace of stand-in stages
(tests/fake_pipeline/pipeline.yaml: a -> {b, c} -> d, e).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aegan.parallel import Outcome, Plan, StageFailed, connect, failure_message, plan_from_dvc, schedule

FAKE = Path(__file__).resolve().parent / "fake_pipeline"
DAG = {"prep": set(), "ae": {"prep"}, "scorer": {"prep"}, "t1": {"ae", "scorer"}, "t2": {"ae", "scorer"},
       "e1": {"t1", "scorer"}, "e2": {"t2", "scorer"}, "ref": {"scorer"}, "report": {"e1", "e2", "ref"}}  # fmt: skip


@pytest.fixture(scope="module")
def cluster_of():
    """`cluster_of(jobs)`: a client on the LocalCluster `aegan run --jobs jobs` uses, one per jobs for the module."""
    made: dict[int, tuple] = {}

    def get(jobs: int):
        if jobs not in made:
            made[jobs] = connect(jobs, None)
        return made[jobs][0]

    yield get
    for client, cluster in made.values():
        client.close()
        cluster.close()


class Recorder:
    """A fake stage runner: sleeps, records (start, end) per stage and the order of starts, fails the stages in `fail`.

    Dask pickles what it runs: tasks call the module-level `record`, which finds the recorder of the current test.
    """

    current: "Recorder | None" = None

    def __init__(self, fail=()):
        self.times: dict[str, tuple[float, float]] = {}
        self.starts: list[str] = []
        self.fail = set(fail)
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        Recorder.current = self

    def task(self, stage: str) -> tuple:
        return record, stage


def record(stage: str) -> dict:
    rec = Recorder.current
    with rec.lock:
        rec.running += 1
        rec.most = max(rec.most, rec.running)
        rec.starts.append(stage)
    start = time.monotonic()
    time.sleep(0.15)
    with rec.lock:
        rec.running -= 1
        rec.times[stage] = (start, time.monotonic())
    failed = stage in rec.fail  # as run_stage reports it: DVC's 255, the stage command's own status from the log
    return {"stage": stage, "rc": 255 if failed else 0, "command_rc": 1 if failed else None, "log": f"logs/{stage}.log",
            "start": start, "end": time.monotonic()}  # fmt: skip


def broken(stage: str) -> dict:
    raise OSError("worker lost")


def plan_of(dag: dict[str, set[str]]) -> Plan:
    order, left = [], dict(dag)
    while left:
        level = sorted(s for s, up in left.items() if not up - set(order))
        order += level
        for s in level:
            del left[s]
    return Plan(order, {s: set(up) for s, up in dag.items()})


def quiet(_line: str) -> None:
    pass


def test_downstream_is_every_stage_below():
    plan = plan_of(DAG)
    assert plan.downstream("scorer") == {"t1", "t2", "e1", "e2", "ref", "report"}
    assert plan.downstream("ae") == {"t1", "t2", "e1", "e2", "report"}
    assert plan.downstream("report") == set() and plan.downstream("prep") == set(DAG) - {"prep"}


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_no_stage_starts_before_its_upstream_ends_and_at_most_jobs_run_at_once(cluster_of, jobs):
    rec = Recorder()
    out = schedule(plan_of(DAG), cluster_of(jobs), rec.task, echo=quiet)
    assert sorted(out.done) == sorted(DAG) and not out.failed and not out.blocked
    for stage, ups in DAG.items():
        for up in ups:
            assert rec.times[up][1] <= rec.times[stage][0], (up, stage)
    assert rec.most <= jobs
    if jobs > 1:
        assert rec.most > 1, "independent stages ran one at a time"


def test_a_failed_stage_stops_its_downstream_and_lets_the_others_finish(cluster_of):
    rec = Recorder(fail={"ae"})
    out = schedule(plan_of(DAG), cluster_of(2), rec.task, echo=quiet)
    assert set(out.failed) == {"ae"}
    assert set(out.blocked) == {"t1", "t2", "e1", "e2", "report"} and set(out.blocked.values()) == {"ae"}
    assert sorted(out.done) == ["prep", "ref", "scorer"]
    assert not set(rec.times) & set(out.blocked), "a stage downstream of the failure ran"
    msg = failure_message(out)
    assert "stage ae failed (exit 1)" in msg and "logs/ae.log" in msg and "\n" not in msg
    assert "not run because of it: e1, e2, report, t1, t2" in msg


def test_two_failures_are_each_named_with_what_they_stopped(cluster_of):
    rec = Recorder(fail={"t1", "ref"})
    out = schedule(plan_of(DAG), cluster_of(3), rec.task, echo=quiet)
    assert set(out.failed) == {"t1", "ref"}
    assert out.blocked["e1"] == "t1" and out.blocked["report"] in {"t1", "ref"} and set(out.blocked) == {"e1", "report"}
    assert sorted(out.done) == ["ae", "e2", "prep", "scorer", "t2"]  # e2 does not depend on either
    assert set(rec.times) == set(DAG) - {"e1", "report"}
    msg = failure_message(out)
    assert "stage t1 failed (exit 1)" in msg and "stage ref failed (exit 1)" in msg and "logs/ref.log" in msg


def test_a_task_that_cannot_run_counts_as_failed(cluster_of):
    out = schedule(plan_of({"x": set(), "y": {"x"}}), cluster_of(2), lambda s: (broken, s), echo=quiet)
    assert set(out.failed) == {"x"} and out.blocked == {"y": "x"}
    assert "OSError: worker lost" in failure_message(out)
    assert failure_message(Outcome(done=["x"])) is None


def test_start_is_said_when_a_stage_starts_and_done_or_failed_when_it_ends(cluster_of):
    lines: list[str] = []
    rec = Recorder(fail={"b"})
    plan = plan_of({"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b"}})
    schedule(plan, cluster_of(1), rec.task, echo=lines.append)
    words = [line.split()[:2] for line in lines]
    # start lines come from the workers when a task begins (not at submission: d, after the failed b, never starts);
    # they reach the client on their own stream, so only each stage's own start and end are ordered
    assert sorted(w[1] for w in words if w[0] == "start") == ["a", "b", "c"] and len(words) == 6, lines
    for stage in "abc":
        begin = words.index(["start", stage])
        assert any(w[0] in ("done", "FAILED") and w[1].rstrip(":") == stage for w in words[begin + 1:]), lines
    assert "FAILED b: logs/b.log" in lines and not any("d" in w[1] for w in words), lines
    assert any(line.startswith("done   c in ") and line.endswith(" s") for line in lines), lines


def test_with_one_thread_the_stage_with_more_downstream_work_starts_first(cluster_of):
    # the plan's own (topological) order puts the stages with less below them first
    dag = {"early": set(), "root": set(), "small": {"root"}, "big": {"root"}, "big2": {"big"}, "big3": {"big2"}}
    plan = Plan(["early", "root", "small", "big", "big2", "big3"], dag)
    rec = Recorder()
    out = schedule(plan, cluster_of(1), rec.task, echo=quiet)
    assert sorted(out.done) == sorted(dag)
    assert rec.starts[0] == "root", rec.starts
    assert rec.starts.index("big") < rec.starts.index("small"), rec.starts  # made runnable together, by root


# ---- on a DVC workspace of stand-in stages -------------------------------------------------------------------


def fake_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    # pipeline.yaml, not dvc.yaml, in the source tree: DVC would take it for a pipeline of this repository
    shutil.copy2(FAKE / "pipeline.yaml", repo / "dvc.yaml")
    shutil.copy2(FAKE / "step.py", repo / "step.py")
    (repo / "a.in").write_text("1\n")
    (repo / "c.in").write_text("1\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    return repo


def aegan_run(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, DVC_NO_ANALYTICS="1", **env)
    full["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full["PATH"]
    full["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    full["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo / 'mlflow.db'}"
    return subprocess.run([sys.executable, "-m", "aegan.cli", "run", *args], cwd=repo, env=full, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def times(repo: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (repo / "times").glob("*.json")}


def locked_stages(repo: Path) -> set[str]:
    import yaml

    return set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"])


@pytest.mark.e2e
def test_dvc_stages_run_in_dag_order_in_parallel_then_only_what_changed(tmp_path):
    repo = fake_repo(tmp_path)
    r = aegan_run(repo, "--jobs", "2", STEP_WAIT="b:c,c:b")  # b and c each wait until the other has started
    assert r.returncode == 0, r.stdout + r.stderr
    t = times(repo)
    assert set(t) == {"a", "b", "c", "d", "e"} and locked_stages(repo) == set(t)
    for up, down in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]:
        assert t[up]["end"] <= t[down]["start"], (up, down)
    assert {rec["threads"] for rec in t.values()} == {str(max(1, (os.cpu_count() or 1) // 2))}
    assert plan_from_dvc(repo).order == []  # everything up to date
    # one parent MLflow run for the execution: every stage was given its id and execution id
    (parent,) = pipeline_runs(repo)
    assert {(rec["parent_run_id"], rec["execution_id"]) for rec in t.values()} == {(parent.info.run_id,
                                                                                      parent.data.tags["execution_id"])}
    assert parent.info.status == "FINISHED" and parent.data.tags["stages_done"] == "5"

    (repo / "c.in").write_text("2\n")  # c, and d downstream of it, are out of date; a, b, e are not
    plan = plan_from_dvc(repo)
    assert plan.order == ["c", "d"] and plan.upstream == {"c": set(), "d": {"c"}}
    assert set(plan.up_to_date) == {"a", "b", "e"}
    before = times(repo)
    r = aegan_run(repo, "--jobs", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    after = times(repo)
    assert sorted(s for s in after if after[s] != before[s]) == ["c", "d"]
    r = aegan_run(repo, "--jobs", "2")
    assert r.returncode == 0 and "all up to date" in r.stdout
    first, second = sorted(pipeline_runs(repo), key=lambda run: run.info.start_time)  # none opened for no work
    assert first.data.tags["execution_id"] != second.data.tags["execution_id"]
    assert {rec["execution_id"] for s, rec in after.items() if s in "cd"} == {second.data.tags["execution_id"]}


def pipeline_runs(repo: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("aegan").experiment_id], "tags.stage = 'pipeline'")


@pytest.mark.e2e
def test_a_failing_dvc_stage_names_itself_and_its_log_and_stops_only_its_downstream(tmp_path):
    repo = fake_repo(tmp_path)
    (repo / "fail-b").write_text("")
    r = aegan_run(repo, "--jobs", "2")
    assert r.returncode == 1
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith("error: stage b failed (exit 1)"), r.stderr  # the step's, not DVC's 255
    assert "Compute Failed" not in r.stderr and "Traceback" not in r.stderr, r.stderr  # Dask's record of it: noise
    log = repo / "logs" / "b.log"
    assert str(log) in err[0] and "not run because of it: d" in err[0]
    assert "failing on purpose" in log.read_text()
    assert set(times(repo)) == {"a", "c", "e"} and locked_stages(repo) == {"a", "c", "e"}
    (parent,) = pipeline_runs(repo)
    assert parent.info.status == "FAILED" and parent.data.tags["stages_failed"] == "b"


def test_bad_input_is_one_line(tmp_path):
    repo = fake_repo(tmp_path)
    for args, expected in [(["--jobs", "0"], "--jobs 0"), (["--jobs", "two"], "--jobs two"),
                           (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler")]:  # fmt: skip
        r = aegan_run(repo, *args)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and expected in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_failure_names_the_stage_commands_exit_status_not_dvcs(tmp_path):
    from aegan.parallel import command_exit

    log = tmp_path / "train.log"
    log.write_text("x" * 10_000 + "\nerror: params.yaml: train.budget ...\nERROR: failed to reproduce 'train@dcgan-0': "
                   "failed to run: aegan train --strategy dcgan --seed 0, exited with 2\n")  # fmt: skip
    assert command_exit(str(log)) == 2
    log.write_text("ERROR: unexpected error - lock is held\n")  # DVC failed before any command ran
    assert command_exit(str(log)) is None
    assert command_exit(str(tmp_path / "missing.log")) is None
    out = Outcome(failed={"t": {"rc": 255, "command_rc": None, "log": "logs/t.log"}})
    assert "stage t failed (dvc exit 255)" in failure_message(out)


def test_an_unwritable_dvc_cache_is_refused_before_any_stage_runs(tmp_path):
    """DVC found a cache it cannot write only after a stage had computed its outputs ("dvc exit 255" at the end of a
    training); `aegan run` asks first, by writing there."""
    from aegan.errors import UserError
    from aegan.parallel import check_cache_writable
    from perms import file_modes_enforced

    cache = tmp_path / ".dvc" / "cache"
    cache.mkdir(parents=True)
    check_cache_writable(cache)
    check_cache_writable(tmp_path / "not-yet" / "cache")  # made on first use: its nearest existing parent counts
    assert list(cache.iterdir()) == []  # the probe leaves nothing behind
    cache.chmod(0o555)
    try:
        with file_modes_enforced(), pytest.raises(UserError) as err:
            check_cache_writable(cache)
    finally:
        cache.chmod(0o755)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and f"the DVC cache {cache} cannot be written" in msg and "dvc cache dir" in msg


def ok(stage: str) -> dict:
    return {"stage": stage, "rc": 0, "start": 0.0, "end": 1.0}


def lost_and_failed_again(stage: str, cause: str, _upstream: dict) -> dict:
    """What Dask raises in a stage after the result of its upstream `cause` was lost with a worker, computed again,
    and that second run failed."""
    raise StageFailed(cause, {"stage": cause, "rc": 255, "command_rc": None, "log": f"logs/{cause}.log"})


def test_a_done_stage_that_fails_when_its_lost_result_is_computed_again_is_a_failure(cluster_of):
    """The stage had been reported done; its dependents then failed because of it: the run is failed (it once ended
    with exit 0 and stages not run), and the message names it."""
    from aegan.parallel import _collect

    client = cluster_of(1)
    first = client.submit(ok, "a", key="lost-a", pure=False)
    futures = {"a": first, "b": client.submit(lost_and_failed_again, "b", "a", first, key="lost-b", pure=False)}
    lines: list[str] = []
    out = _collect(futures, lines.append)
    assert set(out.failed) == {"a"} and out.blocked == {"b": "a"} and out.done == [], (out, lines)
    assert "stage a failed (dvc exit 255), log: logs/a.log; not run because of it: b" in failure_message(out)
    assert any(line.startswith("FAILED a (run again for a result lost with its worker)") for line in lines), lines


@pytest.mark.e2e
def test_a_stage_waits_for_the_paths_another_dvc_still_holds(tmp_path):
    """DVC's --wait-for-lock waits for the repository's lock only: a stage whose outputs another `dvc repro` still
    reads (a lost worker's, being stopped) is tried again instead of failing at once ("is busy")."""
    from aegan.parallel import run_stage

    repo = fake_repo(tmp_path)
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    assert subprocess.run(["dvc", "repro", "--single-item", "a"], cwd=repo, env=env, capture_output=True).returncode == 0
    reader = subprocess.Popen(["dvc", "repro", "--single-item", "b"], cwd=repo, env={**env, "STEP_SLEEP": "4"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (repo / "times" / "b.start").exists():  # b runs: its dvc holds a read lock on a.txt
            assert reader.poll() is None and time.monotonic() < deadline, "stage b did not start"
            time.sleep(0.05)
        result = run_stage(str(repo), "a", str(repo / "logs" / "a.log"), {})
        assert reader.poll() == 0, "stage a's check ran while b still held a.txt"
    finally:
        reader.wait(timeout=60)
    assert result["rc"] == 0, (repo / "logs" / "a.log").read_text()
    assert "is busy" in (repo / "logs" / "a.log").read_text()  # it was refused first, then waited


def test_the_dvc_internals_the_runner_plans_with_are_still_there(tmp_path):
    """DVC has no public call for its stage graph or for opening a repo that waits for the lock; plan_from_dvc uses
    these, pyproject pins DVC's major version, and this test names what moved when an upgrade breaks them."""
    import inspect

    import networkx as nx
    from dvc.repo import Repo

    repo = fake_repo(tmp_path)
    assert "_wait_for_lock" in inspect.signature(Repo.__init__).parameters, "dvc.repo.Repo(_wait_for_lock=) is gone"
    with Repo(str(repo), _wait_for_lock=True) as dvc_repo:
        graph = dvc_repo.index.graph
        assert isinstance(graph, nx.DiGraph), "Repo.index.graph is no longer a networkx DiGraph"
        stage = next(iter(graph.nodes))
        assert isinstance(stage.addressing, str) and isinstance(stage.frozen, bool), "a stage's addressing/frozen moved"
        assert isinstance(dvc_repo.status(), dict), "Repo.status() no longer returns {stage: changes}"
        assert Path(dvc_repo.cache.local.path).is_absolute(), "Repo.cache.local.path moved"
