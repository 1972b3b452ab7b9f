"""A throwaway copy of the project for a bench: the code and pipeline files, a git repo, params overridden."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

COPIED = ["src", "dvc.yaml", "params.yaml", "pyproject.toml", ".dvc/config", ".dvcignore"]


def copy_repo(src: Path, dest: Path, params: dict) -> Path:
    """`src`'s pipeline in `dest`, each section of `params` merged over params.yaml's (other values replace)."""
    for name in COPIED:
        if (src / name).is_dir():
            shutil.copytree(src / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dest / name)
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    doc = yaml.safe_load((dest / "params.yaml").read_text())
    for key, value in params.items():
        doc[key] = {**doc[key], **value} if isinstance(value, dict) else value
    (dest / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def command_shim(repo: Path, python: str) -> Path:
    """A folder holding an `aegan` that runs `repo`'s own code with `python`: put it first on PATH.

    `python -m aegan` where the copy has `aegan/__main__.py` (the installed command's entry), else
    `python -m aegan.cli` (older checkouts), so a bench can time a checkout older than the installed package.
    """
    shim = repo / ".bench-bin"
    shim.mkdir(exist_ok=True)
    module = "aegan" if (repo / "src/aegan/__main__.py").exists() else "aegan.cli"
    (shim / "aegan").write_text(f'#!/bin/sh\nexec "{python}" -m {module} "$@"\n')
    (shim / "aegan").chmod(0o755)
    return shim
