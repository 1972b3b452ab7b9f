"""Results that travel (issue 19): a DVC remote carries outputs and the run-cache from one clone to another, and
`aegan retrain` (the CI job, runnable anywhere) re-runs only what changed and says so in its Markdown.

A bare git repository stands for the shared one, a folder for the remote; the same round trip runs against
s3:// where moto's S3 server can start on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pipeline import TINY, copy_repo, edit_params, run

pytestmark = pytest.mark.e2e
STRATEGIES, SEEDS = ["dcgan", "ae_manifold"], [0]
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
TIMES: dict[str, tuple[float, int]] = {}  # wall time and stages run of each retrain, printed for docs/remotes-and-ci.md


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The shared git repository (bare) of a pipeline whose default DVC remote is a folder, and that folder."""
    root = tmp_path_factory.mktemp("travel")
    work = copy_repo(root / "work")
    edit_params(work, strategies=STRATEGIES, seeds=SEEDS, **TINY)
    (work / ".gitignore").write_text("/mlflow.db*\n/mlruns/\n/logs/\n/retrain.md\n")
    (work / "data" / "raw" / "README.md").write_text("your own data\n")  # git keeps no empty folder: prepare needs it
    ok(run(["dvc", "remote", "add", "-d", "storage", str(root / "storage")], work))
    git(work, "add", "-A")
    git(work, "commit", "-qm", "pipeline")
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(root / "shared.git")], check=True)
    return root


def clone(shared: Path, name: str) -> Path:
    subprocess.run(["git", "clone", "-q", str(shared / "shared.git"), str(shared / name)], check=True)
    return shared / name


def retrain(repo: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    t0 = time.monotonic()
    r = run(["aegan", "retrain", "--out", "retrain.md", "--jobs", "2", *args], repo, timeout=900)
    md = (repo / "retrain.md").read_text() if (repo / "retrain.md").is_file() else ""
    listed = md.split("<summary>stages run</summary>", 1)[1].split("</details>", 1)[0] if "</details>" in md else ""
    ran = sorted(line.strip()[3:-1] for line in listed.splitlines() if line.startswith("- `"))
    TIMES[f"{repo.name} {' '.join(args)}".strip()] = (time.monotonic() - t0, len(ran))
    return r, ran


@pytest.fixture(scope="module")
def first(shared):
    """Clone A: the first retrain trains everything and pushes; its results are committed and shared."""
    a = clone(shared, "a")
    r, ran = retrain(a)
    ok(r)
    assert "remote `storage`: pulled, pushed" in (a / "retrain.md").read_text()
    git(a, "add", "-A")
    git(a, "commit", "-qm", "results")
    git(a, "push", "-q", "origin", "HEAD")
    return a, ran


def test_a_fresh_clone_pulls_everything_and_runs_nothing(shared, first):
    a, ran = first
    import yaml

    assert ran == sorted(yaml.safe_load((a / "dvc.lock").read_text())["stages"])  # the first run: every stage
    b = clone(shared, "b")
    ok(run(["dvc", "pull"], b))
    status = ok(run(["dvc", "status"], b))
    assert "up to date" in status.stdout, status.stdout
    repro = ok(run(["dvc", "repro"], b))
    assert "Running stage" not in repro.stdout, repro.stdout
    for runner_code in ("retrain.py", "parallel.py", "cli.py"):  # code that only runs stages: no stage re-runs
        with open(b / "src" / "aegan" / runner_code, "a") as f:
            f.write("\n# edited\n")
    assert "up to date" in ok(run(["dvc", "status"], b)).stdout


def test_after_one_strategys_change_retrain_reruns_only_it_and_the_report_and_says_so(shared, first):
    c = clone(shared, "c")
    doc = edit_params(c, ae_manifold={"lambda_m": 1.0})
    assert doc["ae_manifold"]["lambda_m"] == 1.0
    r, ran = retrain(c, "--base", "HEAD")
    ok(r)
    assert ran == sorted([f"train@ae_manifold-{s}" for s in SEEDS] + [f"evaluate@ae_manifold-{s}" for s in SEEDS]
                         + ["report"])  # fmt: skip
    md = (c / "retrain.md").read_text()
    assert md.startswith("<!-- aegan-retrain -->") and "Strategies retrained: `ae_manifold`." in md
    assert "Not re-run (their stages' inputs did not change), not tested: `dcgan`." in md
    assert "reports/summary.json: ae_manifold.fid" in md and "### Findings (reports/report.md)" in md
    print("retrain wall times (s) and stages run:", json.dumps({k: [round(t, 1), n] for k, (t, n) in TIMES.items()}))


def test_a_remote_that_cannot_be_reached_is_one_line_naming_what_to_configure(shared, first):
    d = clone(shared, "d")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok(run(["dvc", "remote", "add", "--local", "-f", "-d", "broken", "s3://no-such-bucket/x"], d))
    ok(run(["dvc", "remote", "modify", "--local", "broken", "endpointurl", f"http://127.0.0.1:{port}"], d))
    r = run(["aegan", "retrain", "--out", "retrain.md"], d, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: dvc pull with remote 'broken' failed (") and "credentials" in r.stderr
    assert not (d / "retrain.md").exists()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with a bucket; skipped where moto or dvc-s3 is not installed."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[dev]')")
    pytest.importorskip("dvc_s3", reason="dvc-s3 is not installed (pip install -e '.[s3]')")
    boto3 = pytest.importorskip("boto3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    try:
        server.start()
    except Exception as err:  # noqa: BLE001 - any reason it cannot serve here
        pytest.skip(f"moto's S3 server did not start on 127.0.0.1: {err}")
    url = f"http://127.0.0.1:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=url, **{k.lower(): v for k, v in creds.items() if k != "AWS_DEFAULT_REGION"},
                 region_name="us-east-1").create_bucket(Bucket="aegan")  # fmt: skip
    yield url, creds
    server.stop()


def test_the_same_round_trip_through_s3(shared, first, s3, monkeypatch):
    url, creds = s3
    for k, v in creds.items():
        monkeypatch.setenv(k, v)
    a, _ = first

    def use_s3(repo: Path) -> None:
        ok(run(["dvc", "remote", "add", "--local", "-f", "-d", "s3", "s3://aegan/store"], repo))
        ok(run(["dvc", "remote", "modify", "--local", "s3", "endpointurl", url], repo))

    use_s3(a)
    ok(run(["dvc", "push", "--run-cache"], a))
    e = clone(shared, "e")
    use_s3(e)
    ok(run(["dvc", "pull", "--run-cache"], e))
    assert "up to date" in ok(run(["dvc", "status"], e)).stdout
    assert "Running stage" not in ok(run(["dvc", "repro"], e)).stdout
