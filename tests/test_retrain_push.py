"""The retraining job when the push fails: the pipeline's results are described all the same (the Markdown is
written, with the push failure in it), the job exits non-zero, and a full remote is called full, not blamed on its
URL and credentials."""

from __future__ import annotations

import subprocess

import pytest

from aegan import retrain
from aegan.parallel import Outcome


def failed(stderr: str) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["dvc"], 1, stdout="", stderr=stderr)


@pytest.mark.parametrize("stderr", [
    "ERROR: failed to push data to the cloud - [Errno 28] No space left on device",
    "ERROR: failed to transfer 'abc' - Disk quota exceeded",
])  # fmt: skip
def test_a_full_remote_is_called_full(stderr):
    msg = str(retrain.remote_problem("push", "storage", failed(stderr)))
    assert "the remote is full" in msg and "free space on it" in msg and "credentials" not in msg
    assert len(msg.splitlines()) == 1


def test_an_unreachable_remote_still_names_its_url_and_credentials():
    msg = str(retrain.remote_problem("push", "storage", failed("ERROR: unexpected error - Could not connect")))
    assert "check its URL" in msg and "credentials" in msg and "full" not in msg


def test_a_failed_push_still_writes_the_markdown_with_the_failure_in_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("")
    monkeypatch.setattr("aegan.runnable.check_params_file", lambda path: None)
    monkeypatch.setattr(retrain, "default_remote", lambda: "storage")
    monkeypatch.setattr(retrain, "pull", lambda remote: None)
    monkeypatch.setattr("aegan.parallel.run", lambda jobs, echo=print: Outcome(done=["train@dcgan-0"],
                                                                                 up_to_date=["prepare"]))  # fmt: skip
    monkeypatch.setattr(retrain, "dvc", lambda *args: failed("ERROR: failed to push - [Errno 28] No space left on device"))
    out = tmp_path / "retrain.md"
    result = retrain.retrain(out, None, 1)
    assert result.failure is None and not result.pushed and "the remote is full" in result.push_failure
    text = out.read_text()
    assert "not pushed" in text and "**The results were not pushed**: dvc push with remote 'storage' failed" in text
    assert "Strategies retrained: `dcgan`" in text and "### Findings" in text
