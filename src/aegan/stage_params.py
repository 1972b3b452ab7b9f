"""The params a stage declares in dvc.yaml, and nothing else: what DVC hashes is all a stage can read.

dvc.yaml's `params:` of a stage is the one declaration (`declared`). A stage
command validates params.yaml as usual, then is handed a copy that holds the
declared sections and keys only (`handed`): reading anything else is an
AttributeError the first time that code runs, instead of results in DVC's
cache that a change of the undeclared value would not re-run.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Collection

from pydantic import BaseModel, create_model

STRATEGY = "${item.strategy}"  # the strategy's own section, as dvc.yaml's matrix names it
EVERYTHING = "params.yaml"  # `- params.yaml:` with no keys (the report): every section
DVC_FILE = Path("dvc.yaml")

# what each stage command of this process was handed (params file, declared names, values), checked as it ends
_LOADED: list[tuple[Any, tuple[str, ...], dict[str, Any]]] = []


def declared(stage: str, strategy: str | None = None, dvc_file: Path = DVC_FILE) -> tuple[str, ...]:
    """dvc.yaml's params of `stage` (a foreach stage: of its `do:`), `${item.strategy}` replaced by `strategy`."""
    from aegan.errors import UserError
    from aegan.yaml_file import read_yaml

    restore = "restore it (git checkout dvc.yaml) and run the command in the workspace (the folder holding dvc.yaml)"
    if not dvc_file.is_file():
        raise UserError(f"{dvc_file}: not found: {restore}")
    entry = ((read_yaml(dvc_file) or {}).get("stages") or {}).get(stage)
    if not isinstance(entry, dict):
        raise UserError(f"{dvc_file}: no stage {stage!r}: {restore}")
    names: list[str] = []
    for item in entry.get("do", entry).get("params") or []:
        if isinstance(item, dict):  # `- params.yaml:` (no keys): the whole file
            names += [EVERYTHING] if list(item) == [EVERYTHING] and not item[EVERYTHING] else []
        else:
            names.append(item.replace(STRATEGY, strategy) if strategy is not None else item)
    return tuple(names)


def allowed_keys(names: Collection[str]) -> dict[str, set[str] | None]:
    """`{"compute": None, "train": {"budget", ...}}` from dvc.yaml-style names: None means the whole section."""
    out: dict[str, set[str] | None] = {}
    for name in names:
        section, _, key = name.partition(".")
        if not key:
            out[section] = None
        elif out.get(section, set()) is not None:
            out.setdefault(section, set()).add(key)
    return out


@functools.lru_cache(maxsize=None)
def _narrowed(cls: type[BaseModel], keys: frozenset[str]) -> type[BaseModel]:
    """`cls` with the fields in `keys` only, its config kept (no validators: the values are validated already)."""
    fields = {k: (f.annotation, f) for k, f in cls.model_fields.items() if k in keys}
    return create_model(cls.__name__, __config__=cls.model_config, **fields)


def handed(params: BaseModel, names: Collection[str]) -> BaseModel:
    """`params` as a stage that declares `names` gets it: declared sections whole, of the others the declared keys."""
    if EVERYTHING in names:
        return params
    values: dict[str, Any] = {}
    for section, keys in allowed_keys(names).items():
        value = getattr(params, section)
        if keys is not None:
            value = _narrowed(type(value), frozenset(keys)).model_construct(**{k: getattr(value, k) for k in keys})
        values[section] = value
    cls = _narrowed_top(tuple((k, type(v)) for k, v in values.items()))
    return cls.model_construct(**values)


@functools.lru_cache(maxsize=None)
def _narrowed_top(fields: tuple[tuple[str, type], ...]) -> type[BaseModel]:
    return create_model("Params", __config__=BaseModel.model_config | {"frozen": True},
                        **{name: (kind, ...) for name, kind in fields})  # fmt: skip


def values(params: BaseModel) -> dict[str, Any]:
    """What a stage was handed, as dotted keys in JSON types (run.json and evaluations keep it: provenance)."""
    from aegan.params import flatten

    return flatten(params.model_dump(mode="json"))


def load(path, stage: str, strategy: str | None = None) -> BaseModel:
    """params.yaml at `path`, validated, as stage `stage` of dvc.yaml gets it (`strategy`: of a matrix stage)."""
    from aegan.params import load_params

    names = declared(stage, strategy)
    given = handed(load_params(path), names)
    _LOADED.append((path, names, given.model_dump(mode="json")))
    return given


def forget_loaded() -> None:
    _LOADED.clear()


def check_unchanged() -> None:
    """Every params file this process's stage read still gives the declared values it read at the start, or one line.

    DVC records a stage's params as the file gives them when the command has ended: a value edited while the stage
    ran (`git stash`, another `dvc exp run -S`) would be recorded beside outputs computed from the old one, and the
    run-cache would hand them out for the new one. Failing here keeps DVC from recording them.
    """
    from aegan.errors import UserError
    from aegan.params import flatten, load_params

    loaded = list(_LOADED)
    _LOADED.clear()
    for path, names, before in loaded:
        try:
            params = load_params(path)
        except UserError as err:
            raise UserError(f"{path} changed while this stage ran and no longer validates ({err}); its outputs are "
                            "not recorded: fix the file, then run the stage again (`aegan run` or `dvc repro`)") from None
        now = handed(params, names).model_dump(mode="json")
        if now != before:
            a, b = flatten(before), flatten(now)
            diffs = [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
            more = f" and {len(diffs) - 1} more" if len(diffs) > 1 else ""
            raise UserError(f"{path} changed while this stage ran ({diffs[0]}: {a.get(diffs[0])!r} -> "
                            f"{b.get(diffs[0])!r}{more}): its outputs were computed with the values it read at the "
                            "start, and DVC would record them under the new ones, so they are not recorded: run the "
                            "stage again (`aegan run` or `dvc repro`)")  # fmt: skip


def check_seed(seed: int) -> int:
    """A training seed from the command line, in the range every seed of params.yaml has (what numpy and torch take)."""
    from aegan.errors import UserError
    from aegan.params_base import SEED_MAX

    if not 0 <= seed <= SEED_MAX:
        raise UserError(f"--seed {seed} is out of range: give a seed from 0 to {SEED_MAX}")
    return seed
