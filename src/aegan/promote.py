"""`aegan promote`: point the registry's `best` at the winner the comparison decided, and at nothing else.

Every report registers its winner's best-seed generator (a new version of
`aegan-generator` only for bytes not registered yet) and points `candidate` at
it: local experiments and throwaway `dvc exp run`s move only `candidate`.
`best` moves here, from a run the project declares authoritative (CI on main,
or a person who runs this), and only when reports/summary.json says the
comparison decided its winner (report/winner.py: better than every other
strategy by the report's own test). An undecided comparison leaves `best` where
it was and says why on the registered model (tag `best_status`). Runner code:
no stage imports it.
"""

from __future__ import annotations

import json
import time

from aegan import paths
from aegan.errors import UserError


def promote() -> str:
    """Move `best` to the decided winner, or leave it; one line saying which."""
    from aegan.tracking import BEST, REGISTERED_MODEL, model_versions, move_alias, tag_registered_model

    winner = read_winner()
    versions = model_versions(REGISTERED_MODEL)
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    current = next((v.version for v in versions if BEST in (getattr(v, "aliases", None) or [])), None)
    if not winner["decided"]:
        where = f"still version {current}" if current else "not set"
        tag_registered_model(REGISTERED_MODEL, "best_status", f"not moved on {now}: {winner['words']}")
        return f"@{BEST} not moved ({where}): {winner['words']}"
    same = sorted((v for v in versions if v.tags.get("generator_sha256") == winner.get("generator_sha256")),
                  key=lambda v: int(v.version))  # fmt: skip
    if not same:
        raise UserError(f"the winner's generator (`{winner['strategy']}` seed {winner.get('seed')}) is not registered "
                        f"in this MLflow store: run the report here first (`dvc repro --force --single-item report`), "
                        f"then `aegan promote`")  # fmt: skip
    version = same[0].version
    move_alias(REGISTERED_MODEL, BEST, version, {"promoted": now, "promoted_because": winner["words"]})
    tag_registered_model(REGISTERED_MODEL, "best_status", f"version {version} since {now}: {winner['words']}")
    was = f" (was version {current})" if current and current != version else ""
    return f"@{BEST} -> version {version}{was}: {winner['words']}"


def read_winner() -> dict:
    path = paths.SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: run the pipeline first (`aegan run`)") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path} cannot be read ({err}): restore it (`dvc checkout {path}`) or run `aegan run`") from None
    winner = summary.get("winner") if isinstance(summary, dict) else None
    if not isinstance(winner, dict) or "decided" not in winner:
        raise UserError(f"{path} names no winner (no strategy finished, or a report older than `aegan promote`): "
                        "run the report again (`dvc repro --force --single-item report`)")  # fmt: skip
    return winner
