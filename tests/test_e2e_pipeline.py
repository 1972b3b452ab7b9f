"""End to end: `dvc repro` on a copy of the repo with tiny parameters runs every stage of every strategy."""

from __future__ import annotations

import json
import math
import re

import pytest
import yaml

from pipeline import TINY, copy_repo, edit_params, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("e2e") / "repo")
    params = edit_params(repo, seeds=[0], **TINY)
    r = run(["dvc", "repro"], repo, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return repo, params


def test_every_output_exists_and_summary_is_finite(repro):
    repo, params = repro
    for path in ["data/prepared/dataset.npz", "data/prepared/card.json", "models/ae/ae-0.pt", "models/scorer.pt",
                 "reports/eval/reference.json", "reports/report.md", "reports/summary.json", "dvc.lock"]:  # fmt: skip
        assert (repo / path).is_file(), path
    summary = json.loads((repo / "reports/summary.json").read_text())
    for strategy in params["strategies"]:
        for seed in params["seeds"]:
            run_dir = repo / "models/runs" / f"{strategy}-{seed}"
            for name in ["generator.pt", "history.csv", "samples.png", "run.json"]:
                assert (run_dir / name).is_file(), (strategy, seed, name)
            result = json.loads((repo / "reports/eval" / f"{strategy}-{seed}.json").read_text())
            assert result["status"] == "finished"
            assert all(math.isfinite(v) for v in result["metrics"].values())
        for metric in ["fid", "kid_mean", "is_mean", "precision", "recall"]:
            assert math.isfinite(summary[strategy][metric]["mean"]), (strategy, metric)
    report = (repo / "reports/report.md").read_text()
    assert all(f"| `{s}` |" in report for s in params["strategies"])
    html = (repo / "reports/report.html").read_text()
    for fig in ["fid_curves", "losses", "final_fid", "samples", "class_coverage", "began"]:
        assert (repo / f"reports/figures/{fig}.png").is_file(), fig
        assert f"](figures/{fig}.png)" in report and f'data-file="figures/{fig}.png"' in html, fig
    for strategy in params["strategies"]:  # the evaluate stage recorded which scorer class each sample fell in
        counts = json.loads((repo / "reports/eval" / f"{strategy}-0.json").read_text())["class_counts"]
        assert len(counts) == 10 and sum(counts) == params["evaluate"]["num_samples"]


def test_dvc_metrics_and_plots_read_the_report(repro):
    repo, params = repro
    r = run(["dvc", "metrics", "show", "--json"], repo)
    assert r.returncode == 0, r.stderr
    shown = json.dumps(json.loads(r.stdout))
    assert all(f'"{s}"' in shown for s in params["strategies"]) and '"fid"' in shown
    assert "stability" not in shown and "fid_minus_dcgan" not in shown  # the narrow file: summary.json has the rest
    r = run(["dvc", "plots", "show", "--json"], repo)
    assert r.returncode == 0, r.stderr
    (plot,) = json.loads(r.stdout)["data"]["fid_curves"]  # one plot, every strategy in it
    spec = plot["content"]
    assert {row["strategy"] for row in spec["data"]["values"]} == set(params["strategies"])
    assert spec["encoding"]["color"]["field"] == "strategy" and spec["encoding"]["x"]["title"].startswith("budget")
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["area", "line"]  # the std band, then the mean
    assert spec["layer"][1]["encoding"]["y"]["title"].startswith("small-sample FID")


def test_second_repro_is_a_no_op(repro):
    repo, _ = repro
    r = run(["dvc", "status"], repo)
    assert r.returncode == 0 and "changed" not in r.stdout, r.stdout


# Appended to a copy of the page only; at the end: vega-embed's own code holds the text "</body>"
PLOT_PROBE = """<script>window.addEventListener('load', function () { setTimeout(function () {
  document.title = 'PROBE drawn=' + document.querySelectorAll('#fid_curves svg, #fid_curves canvas').length;
}, 2000); });</script>"""


def test_dvc_plots_show_renders_without_internet(repro, tmp_path):
    """DVC's own page loads Vega from a CDN, and without internet it was blank: .dvc/config points DVC at
    .dvc/plots/offline.html, which holds the libraries (tools/offline_plots.py)."""
    import re

    from browser import chromium, headless

    repo, _ = repro
    r = run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], repo)
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "plots" / "index.html").read_text()
    assert re.findall(r"<script[^>]+src=", html) == [], "a script is loaded from elsewhere"
    browser = chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium); CI installs it")
    end = html.rindex("</body>")
    probed = tmp_path / "probed.html"
    probed.write_text(html[:end] + PLOT_PROBE + html[end:])
    # every request but file:// goes to a closed port: no network, as on an offline machine
    dom = headless(browser, tmp_path / "profile", "--proxy-server=127.0.0.1:9", "--virtual-time-budget=10000",
                   "--dump-dom", probed.as_uri())  # fmt: skip
    drawn = re.search(r"<title>PROBE drawn=(\d+)</title>", dom)
    assert drawn and int(drawn.group(1)) >= 1, dom[:300]


def status_after_editing(repo, module: str) -> dict:
    """`dvc status --json` with a comment appended to src/aegan/<module>, the file restored afterwards."""
    path = repo / "src/aegan" / module
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        r = run(["dvc", "status", "--json"], repo)
    finally:
        path.write_text(original)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("module", ["losses.py", "images.py", "data/packed.py"])
def test_editing_a_shared_module_changes_exactly_the_stages_that_import_it(repro, module):
    """dvc.yaml's code deps match the imports: an edit marks every stage importing the file, and no other."""
    from imports import stage_files

    repo, params = repro
    changed = set(status_after_editing(repo, module))
    target = f"src/aegan/{module}"
    expected = {s for s in ("prepare", "train_scorer", "reference", "report") if target in stage_files(s)}
    for seed in params["seeds"]:
        expected |= {f"pretrain_ae@{seed}"} if target in stage_files("pretrain_ae") else set()
    for strategy in params["strategies"]:
        for seed in params["seeds"]:
            expected |= {f"train@{strategy}-{seed}"} if target in stage_files("train", strategy) else set()
            expected |= {f"evaluate@{strategy}-{seed}"} if target in stage_files("evaluate") else set()
    assert expected, f"nothing imports {module}?"
    assert changed == expected, (sorted(changed - expected), sorted(expected - changed))


@pytest.mark.parametrize("module", ["cli.py", "parallel.py", "shutdown.py", "__main__.py"])
def test_editing_runner_code_changes_no_stage(repro, module):
    """Code that only runs stages (the command line, the scheduler, signal handling) is no stage's dependency."""
    repo, _ = repro
    assert status_after_editing(repo, module) == {}


def test_mlflow_has_one_run_per_strategy_and_seed(repro):
    repo, params = repro
    r = run(["python", "-c", (
        "from mlflow.tracking import MlflowClient;"
        "c = MlflowClient();"
        "e = c.get_experiment_by_name('aegan');"
        "runs = c.search_runs([e.experiment_id], \"tags.stage = 'train'\");"
        "print(sorted((r.data.tags['strategy'], r.data.tags['seed'], r.info.status, 'final/fid' in r.data.metrics, "
        "'fid/small' in r.data.metrics, 'fid/small_vs_budget' in r.data.metrics, "
        "any(k.startswith('train/loss') for k in r.data.metrics)) for r in runs));"
        "held = lambda stage, key: all(key in r.data.metrics for r in c.search_runs([e.experiment_id], f\"tags.stage = '{stage}'\"));"
        "print(held('pretrain_ae', 'heldout/mse'), held('train_scorer', 'heldout/accuracy'))"
    )], repo)  # fmt: skip
    expected = sorted((s, "0", "FINISHED", True, True, True, True) for s in params["strategies"])
    assert r.stdout.strip().splitlines() == [str(expected), "True True"], r.stdout + r.stderr


def test_changing_one_strategy_param_reruns_only_that_strategy(repro):
    """Runs last: it re-runs one strategy (and leaves the params as they were)."""
    repo, params = repro
    path = repo / "params.yaml"
    original = path.read_text()
    doc = yaml.safe_load(original)
    numeric = [(s, k) for s in params["strategies"] for k, v in (doc.get(s) or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]  # fmt: skip
    if not numeric:
        pytest.skip("no strategy has a numeric parameter")
    strategy, knob = numeric[0]
    doc[strategy][knob] = doc[strategy][knob] * 2 or 1
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        r = run(["dvc", "repro", "--no-run-cache"], repo)
    finally:
        path.write_text(original)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ran = set(re.findall(r"Running stage '([^']+)'", r.stdout))
    assert ran == {f"train@{strategy}-0", f"evaluate@{strategy}-0", "report"}, r.stdout
