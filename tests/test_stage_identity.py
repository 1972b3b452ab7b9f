"""A stage's identity is its computation, asked of DVC itself.

On a copy of the repository, `dvc status` after an edit to every plumbing
module (tests/imports.py PLUMBING: errors, paths, atomic writes, tracking,
params parsing, provenance) and to the code that runs stages reports no
changed code for any stage; after an edit to every computing module, each
stage reports changed exactly the code it computes with. DVC compares each
dependency by itself, so editing all modules at once and reading the changed
paths per stage says, for every module, which stages one edit to it re-runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imports import PLUMBING, REPO, RUNNER, STRATEGIES, STRATEGY_STAGES, SAME_AS, SRC, module_file, stage_modules

STAGE_NAMES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
OURS = sorted(p for p in (SRC / "aegan").rglob("*.py"))


def dvc_status(root: Path) -> dict[str, set[str]]:
    """Per stage (as `dvc status` names it, e.g. train@dcgan-0), the src/ paths it reports modified."""
    dvc = Path(sys.executable).with_name("dvc")
    out = subprocess.run([str(dvc), "status", "--json"], cwd=root, capture_output=True, text=True,
                         env=os.environ | {"DVC_NO_ANALYTICS": "1"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    changed: dict[str, set[str]] = {}
    for stage, entries in json.loads(out.stdout or "{}").items():
        for entry in entries:
            if isinstance(entry, dict):
                deps = entry.get("changed deps", {})
                changed.setdefault(stage, set()).update(p for p, how in deps.items() if p.startswith("src/"))
    return changed


def edit(paths) -> None:
    for path in paths:
        with open(path, "a") as f:
            f.write("\n# an edit that changes no number\n")


def stage_of(name: str) -> tuple[str, str | None]:
    """dvc status's `train@ae_disc-0` -> ("train", "ae_disc"); `prepare` -> ("prepare", None)."""
    base, _, item = name.partition("@")
    base = SAME_AS.get(base, base)
    strategy = next((s for s in STRATEGIES if item.startswith(s + "-")), None) if base in STRATEGY_STAGES else None
    return base, strategy


def covered(path: str, deps: set[str]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in deps)


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """The tracked files (dvc.yaml, dvc.lock, params.yaml, src/, data/raw) in a fresh git repository."""
    root = tmp_path_factory.mktemp("identity")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, tracked.split("\0")):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def test_plumbing_and_runner_edits_rerun_no_stage_and_computing_edits_rerun_exactly_theirs(repo_copy):
    before = dvc_status(repo_copy)  # a working tree ahead of dvc.lock: what is already modified is left out below
    plumbing = {module_file(m).relative_to(REPO).as_posix() for m in (*PLUMBING, *RUNNER)}
    edit(repo_copy / p for p in plumbing)
    after_plumbing = dvc_status(repo_copy)
    assert after_plumbing == before, {s: sorted(p - before.get(s, set())) for s, p in after_plumbing.items()
                                      if p != before.get(s, set())}  # fmt: skip

    computing = sorted({p.relative_to(REPO).as_posix() for p in OURS} - plumbing)
    edit(repo_copy / p for p in computing)
    after = dvc_status(repo_copy)
    stages = [s for s in after if s.partition("@")[0] in STAGE_NAMES]
    assert len(stages) >= 24, sorted(after)  # every stage of the default pipeline computes with some edited code
    checked = 0
    for name in stages:
        reported, stale = after[name], before.get(name, set())
        base, strategy = stage_of(name)
        runs = {module_file(m).relative_to(REPO).as_posix() for m in stage_modules(base, strategy)}
        for path in computing:
            if covered(path, stale):
                continue
            checked += 1
            assert covered(path, reported) == (path in runs), (
                f"an edit to {path} {'does not re-run' if path in runs else 're-runs'} stage {name}")
    assert checked > 1000, checked  # most (stage, module) pairs were decided, not skipped as already stale
