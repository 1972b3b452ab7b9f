"""MLflow: runs are tagged, metrics arrive in batches and are all there."""

from __future__ import annotations

from aegan.tracking import Run, tracking_uri


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
