"""`aegan run --jobs N`: DVC's out-of-date stages as Dask tasks, in DAG order, a failed stage stopping only its downstream.

The scheduler on its own (a fake task that records start and end) and on a
real DVC workspace of stand-in stages (tests/fake_pipeline/pipeline.yaml: a -> {b, c} -> d, e).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aegan.parallel import Outcome, Plan, failure_message, plan_from_dvc, schedule

FAKE = Path(__file__).resolve().parent / "fake_pipeline"
DAG = {"prep": set(), "ae": {"prep"}, "scorer": {"prep"}, "t1": {"ae", "scorer"}, "t2": {"ae", "scorer"},
       "e1": {"t1", "scorer"}, "e2": {"t2", "scorer"}, "ref": {"scorer"}, "report": {"e1", "e2", "ref"}}  # fmt: skip


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            yield c


class Recorder:
    """A fake stage runner: sleeps, records (start, end) per stage, fails the stages named in `fail`.

    Dask pickles what it runs: tasks call the module-level `record`, which finds the recorder of the current test.
    """

    current: "Recorder | None" = None

    def __init__(self, fail=()):
        self.times: dict[str, tuple[float, float]] = {}
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
    start = time.monotonic()
    time.sleep(0.15)
    with rec.lock:
        rec.running -= 1
        rec.times[stage] = (start, time.monotonic())
    return {"stage": stage, "rc": 1 if stage in rec.fail else 0, "log": f"logs/{stage}.log"}


def broken(stage: str) -> dict:
    raise OSError("worker lost")


def plan_of(dag: dict[str, set[str]]) -> Plan:
    order, left = [], dict(dag)
    while left:
        ready = sorted(s for s, up in left.items() if not up - set(order))
        order += ready
        for s in ready:
            del left[s]
    return Plan(order, {s: set(up) for s, up in dag.items()})


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_no_stage_starts_before_its_upstream_ends_and_at_most_jobs_run_at_once(client, jobs):
    rec = Recorder()
    out = schedule(plan_of(DAG), client, rec.task, jobs, echo=lambda _: None)
    assert sorted(out.done) == sorted(DAG) and not out.failed
    for stage, ups in DAG.items():
        for up in ups:
            assert rec.times[up][1] <= rec.times[stage][0], (up, stage)
    assert rec.most <= jobs
    if jobs > 1:
        assert rec.most > 1, "independent stages ran one at a time"


def test_a_failed_stage_stops_its_downstream_and_lets_the_others_finish(client):
    rec = Recorder(fail={"ae"})
    out = schedule(plan_of(DAG), client, rec.task, 2, echo=lambda _: None)
    assert set(out.failed) == {"ae"}
    assert set(out.blocked) == {"t1", "t2", "e1", "e2", "report"} and set(out.blocked.values()) == {"ae"}
    assert sorted(out.done) == ["prep", "ref", "scorer"]
    assert not set(rec.times) & set(out.blocked), "a stage downstream of the failure ran"
    msg = failure_message(out)
    assert "stage ae failed (exit 1)" in msg and "logs/ae.log" in msg and "report" in msg and "\n" not in msg


def test_a_task_that_cannot_run_counts_as_failed(client):
    out = schedule(plan_of({"x": set(), "y": {"x"}}), client, lambda s: (broken, s), 2, echo=lambda _: None)
    assert set(out.failed) == {"x"} and out.blocked == {"y": "x"}
    assert "OSError: worker lost" in failure_message(out)
    assert failure_message(Outcome(done=["x"])) is None


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


@pytest.mark.e2e
def test_a_failing_dvc_stage_names_itself_and_its_log_and_stops_only_its_downstream(tmp_path):
    repo = fake_repo(tmp_path)
    (repo / "fail-b").write_text("")
    r = aegan_run(repo, "--jobs", "2")
    assert r.returncode == 1
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith("error: stage b failed (exit "), r.stderr
    log = repo / "logs" / "b.log"
    assert str(log) in err[0] and "not run because of it: d" in err[0]
    assert "failing on purpose" in log.read_text()
    assert set(times(repo)) == {"a", "c", "e"} and locked_stages(repo) == {"a", "c", "e"}


def test_bad_input_is_one_line(tmp_path):
    repo = fake_repo(tmp_path)
    for args, expected in [(["--jobs", "0"], "--jobs 0"), (["--jobs", "two"], "--jobs two"),
                           (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler")]:  # fmt: skip
        r = aegan_run(repo, *args)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and expected in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
