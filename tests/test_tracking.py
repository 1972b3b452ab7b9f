"""MLflow: runs are tagged, metrics arrive in batches and are all there."""

from __future__ import annotations

import threading
import time

from aegan.tracking import Run, end_open_runs, tracking_uri


def test_tracking_uri_defaults_to_absolute_sqlite(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_run_logs_tags_params_and_every_metric(tmp_tracking):
    run = Run.start("dcgan-0", {"strategy": "dcgan", "seed": "0"}, {"train.steps": 10})
    for step in range(1, 1201):
        run.log_metrics({"loss_g": step * 0.5, "loss_d": 1.0}, step)
    run.end()
    got = run.client.get_run(run.run_id)
    assert got.data.tags["strategy"] == "dcgan" and "git_commit" in got.data.tags
    assert got.data.params["train.steps"] == "10"
    assert got.info.status == "FINISHED"
    history = run.client.get_metric_history(run.run_id, "loss_g")
    assert len(history) == 1200
    assert sorted(m.step for m in history) == list(range(1, 1201))


def test_the_training_loops_logs_are_their_own_chart_section(tmp_tracking):
    """MLflow's charts make one section per name prefix before "/": the losses and diagnostics of every strategy go
    under train/, apart from the FID curves (fid/) and final scores (final/) a researcher looks at first."""
    run = Run.start("began-0", {"stage": "train"})
    run.log_train({"loss_d": 0.5, "k_t": 0.01}, 3)
    run.end()
    got = run.client.get_run(run.run_id).data.metrics
    assert {k for k in got if not k.startswith("system/")} == {"train/loss_d", "train/k_t"}
    assert [m.step for m in run.client.get_metric_history(run.run_id, "train/k_t")] == [3]


def monitors() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor" and t.is_alive()]


def system_steps(run: Run) -> list[int]:
    return sorted(m.step for m in run.client.get_metric_history(run.run_id, "system/cpu_utilization_percentage"))


def test_system_metrics_are_logged_while_a_run_is_open_unless_turned_off(tmp_tracking, monkeypatch):
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    run = Run.start("dcgan-0", {"stage": "train"})
    time.sleep(1.0)
    run.end()
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        run.client.get_run(run.run_id).data.metrics)
    assert not monitors()
    first = system_steps(run)
    # a resumed run (a killed train stage started again) logs on from the next step; ended on the way out too
    Run.resume(run.run_id)
    time.sleep(1.0)
    end_open_runs("KILLED")
    assert not monitors()
    steps = system_steps(run)
    assert len(steps) > len(first) and steps == list(range(len(steps)))
    # adding final scores to an ended run measures nothing
    Run.finished(run.run_id)
    assert not monitors()
    # the user's opt-out, MLflow's own switch
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    run = Run.start("dcgan-1", {"stage": "train"})
    assert not monitors()
    time.sleep(0.6)
    run.end()
    assert not [k for k in run.client.get_run(run.run_id).data.metrics if k.startswith("system/")]


def test_system_metrics_never_fail_or_hold_up_a_stage(tmp_tracking, monkeypatch, capsys):
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "often")  # the monitor cannot start
    run = Run.start("dcgan-0", {"stage": "train"})
    run.end()
    err = capsys.readouterr().err.strip()
    assert run.client.get_run(run.run_id).info.status == "FINISHED"
    assert len(err.splitlines()) == 1 and "system metrics not logged" in err, err
    # a monitor whose last call hangs (a store that stopped answering) is not waited for beyond the timeout
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setattr(SystemMetricsMonitor, "finish", lambda self: time.sleep(30))
    run = Run.start("dcgan-1", {"stage": "train"})
    started = time.monotonic()
    run.stop_system_metrics(timeout=0.5)
    assert time.monotonic() - started < 5
    run.end()
