"""What an evaluation was computed from, so the report never mixes it with what params.yaml asks for now.

A report run by hand after a pipeline run in which some train stage failed
(DVC then runs neither its evaluate nor the report) can meet the evaluation
an earlier run of other params left in reports/eval/. So each train run
records the declared params it read (run.json "params"); evaluate records its
own, and the sha256 of the run.json and generator.pt it scored. The report
checks all of them against params.yaml and the files on disk now
(`stale_evaluations`) and refuses to mix a mismatch into its answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aegan import paths
from aegan.data.packed import file_sha256
from aegan.params import flatten


def scored_files(run_dir: Path) -> dict[str, str | None]:
    """sha256 of the run's record and generator (None where absent: a diverged run saves no usable generator)."""
    return {name: file_sha256(run_dir / name) if (run_dir / name).is_file() else None for name in ("run.json", "generator.pt")}


def _changed(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first recorded key whose value params.yaml no longer gives, said as 'key = was (params.yaml: now)'."""
    for key in sorted(recorded):
        now = current.get(key, "<not set>")
        if now != recorded[key]:
            return f"{key} = {recorded[key]!r} (params.yaml: {now!r})"
    return None


def why_stale(evaluation: dict, current: dict[str, Any], strategy: str, seed: int, run_dir: Path | None = None) -> str | None:
    """Why reports/eval/<strategy>-<seed>.json does not score what the current params and files would; None if it does.

    `current`: the report's params flattened (strategy sections as params.yaml writes them, not validated).
    """
    if "params" not in evaluation or "scored" not in evaluation:
        return "it records no provenance (written by an older aegan)"
    changed = _changed(evaluation["params"], current)
    if changed:
        return f"it was scored with {changed}"
    run_dir = run_dir or paths.run_dir(strategy, seed)
    on_disk = scored_files(run_dir)
    if on_disk["run.json"] is None:
        return f"{run_dir}/run.json is missing (its train stage failed or has not run)"
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        info = None
    if not isinstance(info, dict):
        return f"{run_dir}/run.json is not a run record any more (corrupt or edited): restore it (`dvc checkout`)"
    if on_disk["generator.pt"] != info.get("generator_sha256", on_disk["generator.pt"]):
        return f"{run_dir}/generator.pt is not the file its training wrote (corrupt or replaced): restore it (`dvc checkout`)"
    if on_disk != evaluation["scored"]:
        return f"{run_dir} was trained again after it was scored"
    if "params" not in info:
        return f"{run_dir}/run.json records no params (written by an older aegan)"
    changed = _changed(info["params"], current)
    return f"its generator was trained with {changed}" if changed else None


def stale_evaluations(evaluations: dict[tuple[str, int], dict], params) -> list[tuple[str, int, str]]:
    """(strategy, seed, why) for every evaluation that does not match the current params and generators."""
    current = flatten(params.model_dump(mode="json"))
    out = []
    for (strategy, seed), evaluation in evaluations.items():
        why = why_stale(evaluation, current, strategy, seed)
        if why:
            out.append((strategy, seed, why))
    return out
