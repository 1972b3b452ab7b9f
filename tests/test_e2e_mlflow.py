"""End to end, read back as `make ui` serves it (MLflow's REST API): after `aegan run` and a `dvc exp run` that
changes one strategy's knob, grouping the runs by their `group` tag never mixes the two experiments, and each
group's mean final FID is the figure of that experiment's report; durations are those of training; every
finished generator is a logged model; the winner is registered; artifacts are served from the workspace."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from pipeline import TINY, copy_repo, edit_params, mlflow_service, run, tool_env

pytestmark = pytest.mark.e2e
STRATEGIES, SEEDS = ["dcgan", "ae_manifold"], [0, 1]
REPO_DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    """The pipeline (`aegan run`), committed, then `dvc exp run -S ae_manifold.lambda_m=1.0 -n lm1` (plain DVC)."""
    repo = copy_repo(tmp_path_factory.mktemp("e2e-mlflow") / "repo")
    edit_params(repo, strategies=STRATEGIES, seeds=SEEDS, **TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")  # stages of seconds: system metrics sampled within
        r = run(["aegan", "run", "--jobs", "2"], repo, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    base = json.loads((repo / "reports/metrics.json").read_text())
    (repo / ".gitignore").write_text("/mlflow.db*\n/mlruns/\n/logs/\n")  # as the repo's own: results stay out of git
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True, capture_output=True)
    subprocess.run(git + ["commit", "-qm", "baseline"], cwd=repo, check=True, capture_output=True)
    r = run(["dvc", "exp", "run", "-S", "ae_manifold.lambda_m=1.0", "-n", "lm1"], repo, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ran = {line.split("'")[1] for line in r.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {f"{s}@ae_manifold-{seed}" for s in ("train", "evaluate") for seed in SEEDS} | {"report"}, r.stdout
    lm1 = json.loads((repo / "reports/metrics.json").read_text())
    return repo, base, lm1


@pytest.fixture(scope="module")
def ui(experiments):
    """`mlflow ui` as `make ui` starts it (in the workspace, on its DB); yields a JSON caller of its REST API."""
    repo = experiments[0]
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    with mlflow_service("ui", ["--backend-store-uri", f"sqlite:///{repo / 'mlflow.db'}"], env, cwd=repo) as url:

        def call(path: str, body: dict | None = None, raw: bool = False):
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                content = resp.read()
            return content if raw else json.loads(content)

        yield call


def search(call, filter_string: str) -> list[dict]:
    (exp,) = [e for e in call("/api/2.0/mlflow/experiments/search", {"max_results": 10})["experiments"]
              if e["name"] == "aegan"]  # fmt: skip
    body = {"experiment_ids": [exp["experiment_id"]], "filter": filter_string, "max_results": 1000}
    return call("/api/2.0/mlflow/runs/search", body).get("runs", [])


def tags(r: dict) -> dict:
    return {t["key"]: t["value"] for t in r["data"].get("tags", [])}


def metrics(r: dict) -> dict:
    return {m["key"]: m["value"] for m in r["data"].get("metrics", [])}


def test_grouping_by_the_group_tag_never_mixes_experiments_and_gives_each_reports_fid(experiments, ui):
    _, base, lm1 = experiments
    groups = defaultdict(list)
    for r in search(ui, "tags.stage = 'train'"):
        groups[tags(r)["group"]].append(r)
    by_exp = defaultdict(set)
    for key, runs in groups.items():
        assert len({tags(r)["dvc_exp"] if "dvc_exp" in tags(r) else "-" for r in runs}) == 1, key
        assert len({tags(r)["params_hash"] for r in runs}) == 1 and len({tags(r)["strategy"] for r in runs}) == 1
        assert sorted(int(tags(r)["seed"]) for r in runs) == SEEDS, key  # the seeds of one configuration
        by_exp[tags(runs[0]).get("dvc_exp", "-")].add(key)
    assert len(groups) == 3  # dcgan and ae_manifold at lambda_m 10, ae_manifold at lambda_m 1 (lm1)
    assert len(by_exp["lm1"]) == 1 and len(by_exp["-"]) == 2
    for exp, report in (("-", base), ("lm1", lm1)):
        (key,) = [k for k in by_exp[exp] if k.startswith("ae_manifold ")]
        grouped = sum(metrics(r)["final/fid"] for r in groups[key]) / len(groups[key])  # the UI's grouped mean
        assert grouped == pytest.approx(report["ae_manifold"]["fid"], rel=1e-9), (exp, key)


def test_runs_last_as_long_as_their_stage_and_each_execution_is_one_id(ui):
    train = search(ui, "tags.stage = 'train'")
    reports = search(ui, "tags.stage = 'report'")
    assert len(reports) == 2
    report_start = {tags(r)["execution_id"]: int(r["info"]["start_time"]) for r in reports}
    for r in train:  # ended before its execution's report started: the report did not reopen it
        assert r["info"]["status"] == "FINISHED" and int(r["info"]["end_time"]) < report_start[tags(r)["execution_id"]]
    assert {tags(r)["execution_id"] for r in train} == set(report_start)
    # `aegan run`: one parent run, every stage's run its child; `dvc exp run`: no parent, an execution id of its own
    (parent,) = search(ui, "tags.stage = 'pipeline'")
    assert parent["info"]["status"] == "FINISHED"
    children = search(ui, f"tags.execution_id = '{tags(parent)['execution_id']}' and tags.stage != 'pipeline'")
    assert len(children) == 1 + 1 + len(SEEDS) * (1 + len(STRATEGIES)) + 1  # data, scorer, an AE and trains per seed, report
    assert {tags(r).get("mlflow.parentRunId") for r in children} == {parent["info"]["run_id"]}
    # `dvc exp run`: the experiment's stages hang under one run named after it, which ends with them
    (exp_run,) = search(ui, "tags.dvc_exp = 'lm1' and tags.stage = 'experiment'")
    assert exp_run["info"]["run_name"] == "experiment lm1" and exp_run["info"]["status"] == "FINISHED"
    lm1 = search(ui, "tags.dvc_exp = 'lm1' and tags.stage != 'experiment'")
    assert lm1 and {tags(r).get("mlflow.parentRunId") for r in lm1} == {exp_run["info"]["run_id"]}


def test_every_finished_generator_is_a_logged_model_and_the_winner_is_registered(experiments, ui):
    repo, _, lm1 = experiments
    for s in STRATEGIES:
        for seed in SEEDS:
            info = json.loads((repo / f"models/runs/{s}-{seed}/run.json").read_text())
            model_id = info["mlflow_model_uri"].removeprefix("models:/")
            model = ui(f"/api/2.0/mlflow/logged-models/{model_id}")["model"]
            assert model["info"]["source_run_id"] == info["mlflow_run_id"] and model["info"]["status"] == "LOGGED_MODEL_READY"
    candidate = ui("/api/2.0/mlflow/registered-models/alias?name=aegan-generator&alias=candidate")["model_version"]
    version_tags = {t["key"]: t["value"] for t in candidate["tags"]}
    winner = json.loads((repo / "reports/summary.json").read_text())["winner"]  # the latest report: the lm1 experiment's
    assert version_tags["strategy"] == winner["strategy"] and winner["strategy"] in lm1
    assert float(version_tags["fid_geometric_mean_over_seeds"]) == pytest.approx(winner["mean"], rel=1e-5)
    assert version_tags["decided"] == ("yes" if winner["decided"] else "no")
    # two reports (the pipeline's, the experiment's): each generator registered once, `best` moved by neither
    versions = ui("/api/2.0/mlflow/model-versions/search?filter=name%3D%27aegan-generator%27")["model_versions"]
    shas = [next(t["value"] for t in v["tags"] if t["key"] == "generator_sha256") for v in versions]
    assert len(shas) == len(set(shas)) >= 1
    assert all("best" not in v.get("aliases", []) for v in versions)


def test_the_ui_serves_artifacts_from_the_workspace(experiments, ui):
    repo = experiments[0]
    info = json.loads((repo / "models/runs/dcgan-0/run.json").read_text())
    png = ui(f"/get-artifact?path=samples.png&run_uuid={info['mlflow_run_id']}", raw=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlflow_has_the_reports_budget_axis_every_param_a_run_reads_and_its_dataset(experiments, ui):
    import pandas as pd

    repo = experiments[0]
    curves = pd.read_csv(repo / "reports/fid_curves.csv")
    for s in STRATEGIES:
        runs = [r for r in search(ui, f"tags.strategy = '{s}'") if tags(r).get("dvc_exp") == "lm1" or s == "dcgan"]
        history = defaultdict(list)
        for r in runs:
            got = ui(f"/api/2.0/mlflow/metrics/get-history?run_id={r['info']['run_id']}&metric_key=fid/small_vs_budget")
            for m in got["metrics"]:
                history[int(m["step"])].append(m["value"])
        curve = curves[curves["strategy"] == s]
        assert sorted(history) == curve["budget"].tolist(), s  # the report's x axis: AE pretraining charged
        assert [sum(v) / len(v) for _, v in sorted(history.items())] == pytest.approx(curve["fid_small"].tolist())
        params = {p["key"] for p in runs[0]["data"]["params"]}
        assert {"compute.device", "evaluate.feature_extractor", "model.z_dim", "train.budget"} <= params
        (dataset,) = runs[0]["inputs"]["dataset_inputs"]
        data_sha = json.loads((repo / "data/prepared/card.json").read_text())["sha256"]
        assert dataset["dataset"]["digest"] == data_sha[:12] and {"key": "sha256", "value": data_sha} in dataset["tags"]


def test_the_documented_dvc_exp_show_puts_the_changed_param_beside_fid_in_200_columns(experiments):
    """The command docs/pipeline.md gives, as a researcher runs it in a 200-column terminal: the experiment's changed
    param and every strategy's FID are shown, nothing is hidden behind "…"."""
    import re
    import shlex

    repo = experiments[0]
    doc = (REPO_DOCS / "pipeline.md").read_text()
    (command,) = {line.split("#")[0].strip() for line in doc.splitlines() if line.startswith("dvc exp show")}
    shown = subprocess.run(shlex.split(command) + ["--no-pager"], cwd=repo, env=tool_env(COLUMNS="200"), capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 200 and "…" not in shown.stdout, shown.stdout
    header = " ".join(lines[:4])
    # --only-changed: the FID that changed (ae_manifold's), beside the param that changed it
    assert "ae_manifold.lambda_m" in header and "ae_manifold.fid" in header, shown.stdout
    assert "dcgan.fid" not in header, shown.stdout
    (row,) = [line for line in lines if re.search(r"\[lm1\]", line)]
    assert re.search(r"\d+\.\d+\s+1\s*$", row), row  # lm1's FID, then lambda_m 1


def test_aegan_ui_prints_a_url_that_opens_on_the_strategies_grouped_and_sorted_by_final_fid(experiments, tmp_path):
    """`make ui` runs `aegan ui`: the URL it prints, opened in headless Chromium, shows MLflow's runs table with the
    view applied (a shared view stored on the experiment): train runs grouped by strategy, sorted by final FID."""
    import re
    import signal

    from browser import chromium, headless
    from pipeline import free_port, wait_healthy

    browser = chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium); CI installs it")
    repo = experiments[0]
    port = free_port()
    # as `make ui` runs it: no MLFLOW_TRACKING_URI, so the workspace's own DB
    server = subprocess.Popen(["aegan", "ui", "--port", str(port)], cwd=repo, env=tool_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        first = server.stdout.readline().strip()
        assert first.startswith(f"open http://127.0.0.1:{port}/#/experiments/"), first
        url = first.removeprefix("open ")
        assert wait_healthy(f"http://127.0.0.1:{port}", server, 120), "mlflow ui did not start"
        dom = headless(browser, tmp_path / "profile", "--window-size=1400,900", "--virtual-time-budget=25000",
                       "--dump-dom", url)  # fmt: skip
        charts = headless(browser, tmp_path / "profile-charts", "--window-size=1400,900",
                          "--virtual-time-budget=25000", "--dump-dom", url + "&compareRunsMode=CHART")  # fmt: skip
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert "Group by: strategy" in dom and "Sort: final/fid" in dom, dom[-2000:]
    assert sorted(set(re.findall(r"Group: ([a-z_]+)", dom))) == sorted(STRATEGIES), dom[-2000:]
    # the chart view: one section per metric prefix, FID curves first, then final scores, then the training loop's
    # losses, then MLflow's system metrics (CPU, memory)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", charts))
    sections = re.findall(r"(fid|final|train|Model metrics|System metrics) \((\d+)\) Add chart", text)
    assert [name for name, _ in sections if name != "Model metrics"] == ["fid", "final", "train", "System metrics"], sections
    assert dict(sections)["fid"] == "2" and int(dict(sections)["System metrics"]) >= 2, sections


# ---- queued experiments (last: they add reports, and move `candidate`) ---------------------------------------
# one retrains a strategy, one changes only how the report judges (a report-only experiment: cheap)
QUEUED = {"q2": ("ae_manifold.lambda_m=2.0", ["report"] + ["train"] * len(SEEDS)),
          "q3": ("report.confidence=0.9", ["report"])}


@pytest.fixture(scope="module")
def queued(experiments):
    """Two experiments queued and run two at a time, as DVC runs a sweep: each in its own copy of the workspace
    under .dvc/tmp/exps/, which DVC deletes afterwards."""
    repo = experiments[0]
    for name, (change, _) in QUEUED.items():
        r = run(["dvc", "exp", "run", "--queue", "-S", change, "-n", name], repo)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    full = tool_env()  # as a user runs it: no MLFLOW_TRACKING_URI set
    r = subprocess.run(["dvc", "exp", "run", "--run-all", "-j", "2"], cwd=repo, env=full, capture_output=True,
                       text=True, timeout=1200)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    status = subprocess.run(["dvc", "queue", "status"], cwd=repo, env=full, capture_output=True, text=True)
    logs = [subprocess.run(["dvc", "queue", "logs", name], cwd=repo, env=full, capture_output=True, text=True).stdout
            for name in QUEUED]  # fmt: skip
    assert status.stdout.count("Success") == len(QUEUED), status.stdout + "\n".join(logs)  # --run-all exits 0 anyway
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, env=full, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    return repo, json.loads(shown.stdout)


def test_queued_experiments_report_into_the_workspaces_store_under_their_own_parent(queued, ui):
    repo, shown = queued
    names = {e.get("name") for entry in shown for e in [entry] + [x for x in (entry.get("experiments") or [])]}
    assert set(QUEUED) <= names, names
    assert not any((repo / ".dvc" / "tmp" / "exps").glob("tmp*")), "DVC kept a copy: the test would prove nothing"
    for name, (_, expected) in QUEUED.items():
        (exp_run,) = search(ui, f"tags.dvc_exp = '{name}' and tags.stage = 'experiment'")
        assert exp_run["info"]["run_name"] == f"experiment {name}" and exp_run["info"]["status"] == "FINISHED"
        runs = search(ui, f"tags.dvc_exp = '{name}' and tags.stage != 'experiment'")
        stages = sorted(tags(r)["stage"] for r in runs)
        assert stages == expected, (name, stages)  # evaluate logs no run
        assert {tags(r)["mlflow.parentRunId"] for r in runs} == {exp_run["info"]["run_id"]}
        assert all(r["info"]["status"] == "FINISHED" for r in runs)
        (report,) = [r for r in runs if tags(r)["stage"] == "report"]
        # its artifacts outlived DVC's copy: served from the workspace
        listed = ui(f"/api/2.0/mlflow/artifacts/list?run_id={report['info']['run_id']}")
        assert {"report.md", "summary.json"} <= {f["path"] for f in listed.get("files", [])}, listed
        md = ui(f"/get-artifact?path=report.md&run_uuid={report['info']['run_id']}", raw=True).decode()
        assert md.startswith("#")
        for r in runs:
            if tags(r)["stage"] == "train":  # every logged generator of the experiment is still there
                assert ui(f"/api/2.0/mlflow/artifacts/list?run_id={r['info']['run_id']}").get("files"), r["info"]
    assert not (repo / ".dvc" / "tmp" / "exps" / "mlflow.db").exists()
