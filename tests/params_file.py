"""A complete params.yaml for tests: the committed file (the default comparison), with a test's overrides.

The code holds no defaults: a params file states every key, so a test that changes a few values writes
`complete({...})`, or validates it with `validated({...})`, instead of those values alone. The file is
params.yaml as committed at HEAD (the working file outside a git checkout): a preset or a `dvc exp run -S`
applied in the workspace does not change what the tests run with. A change that adds or removes a key
commits params.yaml with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def merged(base: dict, overrides: dict) -> dict:
    """`overrides` over `base`, mappings merged key by key at every depth."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def committed_text() -> str:
    """params.yaml as committed at HEAD; the working file where there is no commit to read."""
    import subprocess

    out = subprocess.run(["git", "show", "HEAD:./params.yaml"], cwd=REPO, capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else (REPO / "params.yaml").read_text()


def complete(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The committed params.yaml's data with `overrides` merged in."""
    from ruamel.yaml import YAML

    return merged(YAML(typ="safe").load(committed_text()), overrides or {})


def validated(overrides: dict[str, Any] | None = None):
    """`complete(overrides)`, validated: the params a command would read from such a file."""
    from aegan.params import validate_params

    return validate_params(complete(overrides), "params.yaml")


def stage_values(params, stage: str, strategy: str | None = None) -> dict[str, Any]:
    """What stage `stage` of the repository's dvc.yaml is handed of `params`, as run.json and evaluations record it."""
    from aegan.stage_params import declared, handed, values

    return values(handed(params, declared(stage, strategy, REPO / "dvc.yaml")))


def write_params(folder: Path, overrides: dict[str, Any] | None = None) -> None:
    """`folder` as a workspace for stage commands: a complete params.yaml with `overrides`, and the pipeline's
    dvc.yaml (a stage is handed the params its stage there declares)."""
    import shutil

    import yaml

    (folder / "params.yaml").write_text(yaml.safe_dump(complete(overrides)))
    if not (folder / "dvc.yaml").exists():
        shutil.copy(REPO / "dvc.yaml", folder / "dvc.yaml")
