"""`aegan retrain`: the retraining job, the same on a laptop and in any CI (.github/workflows/retrain.yml).

1. check params.yaml (every section, as `aegan check-params`);
2. pull outputs and the run-cache from the default DVC remote when one is configured (a first run, with
   nothing there yet, is fine);
3. `aegan run --jobs N`: only stages whose inputs changed run, and a stage the run-cache knows is restored;
4. push outputs and the run-cache to the remote (unless `--no-push`);
5. write one Markdown file: what ran, the metrics diff against a base revision (seed-noise aware, Holm over
   the table, strategies that did not re-run listed as such: metrics_diff.py) and the report's Findings.

Exit status: 1 when the pipeline failed (the Markdown names the stage and its log), 2 for bad input or a
remote that cannot be used (one line saying what to configure); changed metrics never fail it. Runner code,
like cli.py: no stage imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aegan.errors import UserError

MARKER = "<!-- aegan-retrain -->"  # the workflow finds its own pull-request comment by it


@dataclass
class Retrained:
    ran: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    failure: str | None = None
    remote: str | None = None
    pulled: bool = False
    pushed: bool = False
    push_failure: str | None = None  # the pipeline ran; its results did not reach the remote
    seconds: float = 0.0


def dvc(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True, env=env)


def default_remote() -> str | None:
    """The default DVC remote's name, None when there is none (`dvc remote add -d NAME URL` sets one)."""
    done = dvc("remote", "default")
    return done.stdout.strip() or None if done.returncode == 0 else None


def _dvc_error(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [f"exit {done.returncode}"])[-1].removeprefix("ERROR: ")[:300]


FULL_WORDS = ("no space left", "disk quota", "quota exceeded", "insufficient storage", "errno 28", "errno 122")


def remote_problem(action: str, remote: str, done: subprocess.CompletedProcess) -> UserError:
    error = _dvc_error(done)
    if any(w in error.lower() for w in FULL_WORDS):
        return UserError(f"dvc {action} with remote '{remote}' failed: the remote is full ({error}): free space on "
                         f"it or raise its quota, then run `dvc {action} --run-cache` again")  # fmt: skip
    return UserError(f"dvc {action} with remote '{remote}' failed ({error}): check its URL (`dvc remote "
                     "list`) and its credentials (docs/remotes-and-ci.md: e.g. AWS_ACCESS_KEY_ID and "
                     "AWS_SECRET_ACCESS_KEY for s3://), or retrain without it (`dvc remote default --unset`)")  # fmt: skip


def pull(remote: str) -> None:
    """Outputs and run-cache from the remote; what it does not have yet (a first run) is not an error."""
    done = dvc("pull", "--run-cache", "--allow-missing")
    if done.returncode != 0:
        raise remote_problem("pull", remote, done)


def push(remote: str) -> None:
    done = dvc("push", "--run-cache")
    if done.returncode != 0:
        raise remote_problem("push", remote, done)


def retrain(out: Path, base: str | None, jobs: int | None, push_results: bool = True, echo=print) -> Retrained:
    from aegan.runnable import check_params_file
    from aegan.parallel import failure_message, run

    if out.exists() and out.is_dir():
        raise UserError(f"--out {out}: is a folder: give the path of the Markdown file to write")
    if base is not None and _git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}") is None:
        raise UserError(f"--base {base}: not a revision of this repository: give a branch, tag or commit "
                        "(e.g. origin/main after `git fetch origin main`)")  # fmt: skip
    check_params_file(Path("params.yaml"))
    t0 = time.monotonic()
    result = Retrained(remote=default_remote())
    if result.remote:
        pull(result.remote)
        result.pulled = True
    outcome = run(jobs, echo=echo)
    result.ran = sorted(outcome.done) + sorted(outcome.failed)
    result.up_to_date = sorted(outcome.up_to_date)
    result.failure = failure_message(outcome)
    if result.remote and push_results and not result.failure:
        try:
            push(result.remote)
            result.pushed = True
        except UserError as err:  # the Markdown is still written: what ran, the metrics, and that the push failed
            result.push_failure = str(err)
    result.seconds = time.monotonic() - t0
    write_markdown(out, markdown(result, base))
    return result


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def metrics_against(base: str) -> str:
    """The metrics_diff table of reports/summary.json against `base`, strategies that did not re-run listed."""
    import yaml

    from aegan import metrics_diff

    old_lock = _git("show", f"{base}:dvc.lock")
    if old_lock is None:
        return f"`{base}` has no dvc.lock: nothing to compare with yet.\n"
    done = dvc("metrics", "diff", base, "--all", "--json", "--targets", "reports/summary.json")
    if done.returncode != 0:
        return f"`dvc metrics diff {base}` failed ({_dvc_error(done)}): no comparison.\n"
    diff = json.loads(done.stdout or "{}")
    unchanged = metrics_diff.not_rerun(yaml.safe_load(old_lock) or {}, yaml.safe_load(Path("dvc.lock").read_text()))
    judged, unjudged = metrics_diff.judge(diff, unchanged=unchanged)
    if not judged and not unjudged:
        return "No metric changed.\n"
    return metrics_diff.markdown(judged, unjudged, 0.05)


def findings() -> str:
    """The Findings section of reports/report.md, without its heading."""
    path = Path("reports/report.md")
    if not path.is_file():
        return "reports/report.md is missing.\n"
    text = path.read_text()
    if "\n## Findings\n" not in text:
        return "reports/report.md has no Findings section.\n"
    return text.split("\n## Findings\n", 1)[1].split("\n## ", 1)[0].strip() + "\n"


def markdown(r: Retrained, base: str | None) -> str:
    strategies = sorted({s.split("@", 1)[1].rsplit("-", 1)[0] for s in r.ran if s.startswith("train@")})
    where = (f"remote `{r.remote}`: {'pulled' if r.pulled else 'not pulled'}, {'pushed' if r.pushed else 'not pushed'}"
             if r.remote else "no DVC remote configured (`dvc remote add -d storage <url>`): nothing pulled or pushed")
    lines = [MARKER, "## aegan retrain", "",
             f"Ran {len(r.ran)} stage(s) in {r.seconds:.0f} s, {len(r.up_to_date)} up to date; {where}.",
             f"Strategies retrained: {', '.join(f'`{s}`' for s in strategies) if strategies else 'none'}."]  # fmt: skip
    if r.ran:
        lines += ["", "<details><summary>stages run</summary>", "", *[f"- `{s}`" for s in r.ran], "", "</details>"]
    if r.failure:
        lines += ["", f"**The pipeline failed**: {r.failure}"]
        return "\n".join(lines) + "\n"
    if r.push_failure:
        lines += ["", f"**The results were not pushed**: {r.push_failure}"]
    if base is not None:
        lines += ["", f"### Metrics against `{base}`", "", metrics_against(base).rstrip()]
    lines += ["", "### Findings (reports/report.md)", "", findings().rstrip()]
    return "\n".join(lines) + "\n"


def write_markdown(out: Path, text: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, prefix=f".{out.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, out)
