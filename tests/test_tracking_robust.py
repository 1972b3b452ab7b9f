"""Issue 6: MLflow under contention (sqlite locked) and an unreachable tracking URI."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

from aegan.errors import UserError
from aegan.tracking import Run, check_tracking, with_retry

N_METRICS = 2000


def _log_many(uri: str, name: str, queue) -> None:
    import os

    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        run = Run.start(name, {"strategy": name})
        run.flush_every = 100  # many small log_batch calls: many chances to meet the other writer's lock
        for step in range(N_METRICS):
            run.log_metrics({"loss": float(step)}, step)
        run.end()
        queue.put((name, run.run_id, None))
    except Exception as err:  # reported to the parent, which fails the test with it
        queue.put((name, None, repr(err)))


def test_two_processes_logging_to_one_sqlite_db_lose_nothing(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    check_tracking()  # creates the schema once, as the first stage of a pipeline would
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_log_many, args=(uri, f"writer{i}", queue)) for i in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(err is None for _, _, err in results), results
    client = Run.resume(results[0][1]).client
    for _, run_id, _ in results:
        history = client.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in history) == list(range(N_METRICS))


def test_retry_waits_out_a_locked_database_and_passes_other_errors():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert with_retry(flaky) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):
        with_retry(lambda: (_ for _ in ()).throw(ValueError("other")))


def test_retry_backs_off_exponentially_and_raises_the_last_locked_error(monkeypatch):
    import time

    waits, calls = [], []
    monkeypatch.setattr(time, "sleep", waits.append)

    def locked():
        calls.append(1)
        raise RuntimeError(f"database is locked (call {len(calls)})")

    with pytest.raises(RuntimeError, match=r"database is locked \(call 4\)"):
        with_retry(locked, attempts=4)
    assert len(calls) == 4 and len(waits) == 3
    for i, w in enumerate(waits):  # 0.05 s doubling, jittered by a factor in [0.5, 1.5)
        assert 0.5 * 0.05 * 2**i <= w < 1.5 * 0.05 * 2**i, (i, w)


@pytest.mark.parametrize("env_set", [True, False], ids=["user-env", "default-env"])
def test_unreachable_tracking_server_is_a_quick_user_error(monkeypatch, env_set):
    """Without the user's MLFLOW_HTTP_* settings the probe still fails fast (check_tracking sets its own)."""
    import os

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # loopback discard port: nothing listens
    for k, v in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}.items():
        monkeypatch.setenv(k, v) if env_set else monkeypatch.delenv(k, raising=False)
    t0 = time.monotonic()
    with pytest.raises(UserError) as err:
        check_tracking()
    assert time.monotonic() - t0 < 30
    assert env_set or "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ, "the probe's settings are undone"
    msg = str(err.value)
    assert "http://127.0.0.1:9" in msg and "MLFLOW_TRACKING_URI" in msg and len(msg.splitlines()) == 1


def test_unwritable_sqlite_path_is_a_user_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker / 'sub' / 'mlflow.db'}")  # a file as a folder
    with pytest.raises(UserError, match="cannot be used"):
        check_tracking()


def test_a_tracking_server_that_died_mid_stage_fails_a_call_in_seconds_not_minutes(tmp_path):
    """Any call of a stage (here: a tag set on the run), not only the start-up probe, gives up on a server that
    no longer answers within about 30 s, in one line; MLflow's own retries would take about 4 minutes (a subprocess,
    so that the old behaviour fails this test by its timeout instead of holding the suite)."""
    import subprocess
    import sys

    script = ("import time\nfrom aegan import tracking\nclient = tracking._client()\nt0 = time.monotonic()\n"
              "try:\n    tracking._call(client.set_tag, '0' * 32, 'stage', 'train')\n"
              "except tracking.StoreUnusable as err:\n    print(f'{time.monotonic() - t0:.1f}', err)\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_")}
    env["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"  # the server is gone: nothing listens there any more
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=90)
    seconds, _, message = out.stdout.strip().partition(" ")
    assert out.returncode == 0 and message, out.stderr[-2000:]
    assert float(seconds) < 40, seconds
    assert len(message.splitlines()) == 1 and "http://127.0.0.1:9" in message and "MLFLOW_TRACKING_URI" in message
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the fail-fast settings are undone after each call


def test_a_full_artifact_store_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    """ENOSPC from MLflow's artifact writes (a sample grid logged into a full mlruns/) came out as a traceback."""
    import errno

    import numpy as np

    from aegan import tracking

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = tracking.Run.start("train", {"stage": "train"})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "mlruns" / "1" / "x" / "grid.png"))

    monkeypatch.setattr(run.client, "log_image", full)
    with pytest.raises(UserError) as err:
        run.log_image(np.zeros((4, 4, 3), np.uint8), key="samples", step=0)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and "No space left on device" in msg and f"df -h {tmp_path / 'mlruns'}" in msg
    monkeypatch.setattr(run.client, "log_image", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(OSError):  # any other OS error is a bug or a broken disk: raised as it is
        run.log_image(np.zeros((4, 4, 3), np.uint8), key="samples", step=0)
    run.end()
