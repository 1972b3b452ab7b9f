"""The params a stage declares in dvc.yaml, and nothing else: what DVC hashes is all a stage can read.

Each stage module names its params as dvc.yaml does (`PARAMS`, matched by
tests/test_stage_params.py). Its command loads and validates params.yaml as
usual, then hands the stage a view of those sections and keys only. Reading
anything else raises `UndeclaredParams`, a bug with its traceback, the first
time that code runs, instead of leaving results in DVC's cache that a change
of the undeclared value would not re-run. The test runs every stage with its
reads recorded (`recording`) and compares them with dvc.yaml both ways.

`untracked`: keys a stage reads that cannot change its outputs (how often a
checkpoint is written); allowed, not declared, each named with its reason.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from typing import Any, Collection, Iterator

from pydantic import BaseModel

STRATEGY = "${item.strategy}"  # the strategy's own section, as dvc.yaml's matrix names it
EVERYTHING = "params.yaml"  # the report: every section (it lists what differs from the defaults)

# what each stage command of this process read (params file, declared names, strategy, values), checked as it ends
_LOADED: list[tuple[Any, tuple[str, ...], str | None, dict[str, Any]]] = []
_reads: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("aegan_param_reads", default=None)


class UndeclaredParams(AttributeError):
    """A stage read a param it does not declare in dvc.yaml (an AttributeError, so hasattr() stays truthful)."""


@contextlib.contextmanager
def recording() -> Iterator[set[str]]:
    """Within: every `section.key` (and top-level value) a stage view hands out is added to the yielded set."""
    reads: set[str] = set()
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)


def _note(name: str) -> None:
    reads = _reads.get()
    if reads is not None:
        reads.add(name)


def allowed_keys(declared: Collection[str], strategy: str | None = None) -> dict[str, set[str] | None]:
    """`{"compute": None, "train": {"budget", ...}}` from dvc.yaml-style names: None means the whole section."""
    out: dict[str, set[str] | None] = {}
    for name in declared:
        name = name.replace(STRATEGY, strategy) if strategy is not None else name
        section, _, key = name.partition(".")
        if not key:
            out[section] = None
        elif out.get(section, set()) is not None:
            out.setdefault(section, set()).add(key)
    return out


class _View:
    """Attribute access to a pydantic model through an allow-list, reads recorded; methods run on the view."""

    __slots__ = ("_model", "_where", "_keys")

    def __init__(self, model: BaseModel, where: str, keys: dict[str, Any]):
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_where", where)
        object.__setattr__(self, "_keys", keys)

    def _allowed(self, name: str) -> bool:
        return self._keys is None or name in self._keys

    def __getattr__(self, name: str):
        model = self._model
        member = inspect.getattr_static(type(model), name, None)
        if isinstance(member, property):  # computed from fields: let its reads go through the view
            return member.fget(self)
        if callable(member) and name not in type(model).model_fields and not name.startswith("model_"):
            return member.__get__(self, type(self))  # a method of ours: its `self.x` reads are checked too
        if name not in type(model).model_fields:
            return getattr(model, name)  # pydantic's own API (model_fields, ...)
        if not self._allowed(name):
            raise UndeclaredParams(f"{self._where}.{name} is read but not declared: add it to the stage's params "
                                   "in dvc.yaml and to PARAMS in its stage module")  # fmt: skip
        _note(f"{self._where}.{name}")
        return getattr(model, name)

    def __setattr__(self, name, value):
        raise TypeError("params are read-only")

    def model_dump(self, **kwargs) -> dict[str, Any]:
        """The fields this view may read (all of a whole declared section)."""
        dump = self._model.model_dump(**kwargs)
        keep = [k for k in dump if self._allowed(k)]
        for k in keep:
            _note(f"{self._where}.{k}")
        return {k: dump[k] for k in keep}

    def __repr__(self) -> str:
        return f"<params {self._where}: {self.model_dump()!r}>"


class StageView(_View):
    """The whole params object as one stage may read it: declared sections (views) and declared top-level values."""

    def __getattr__(self, name: str):
        model = self._model
        if name in type(model).model_fields:
            if name not in self._keys:
                raise UndeclaredParams(f"params section {name!r} is read but not declared: add it to the stage's "
                                       "params in dvc.yaml and to PARAMS in its stage module")  # fmt: skip
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                return _View(value, name, self._keys[name])
            _note(name)
            return value
        return super().__getattr__(name)

    def model_dump(self, **kwargs) -> dict[str, Any]:
        return {name: getattr(self, name).model_dump(**kwargs) if isinstance(getattr(self._model, name), BaseModel)
                else getattr(self, name) for name in self._keys}  # fmt: skip


def stage_view(params: BaseModel, declared: Collection[str], untracked: Collection[str] = (),
               strategy: str | None = None) -> StageView:
    """`params` as the stage that declares `declared` (and reads `untracked`) may read it."""
    if EVERYTHING in declared:
        keys = {name: None for name in type(params).model_fields}
    else:
        keys = allowed_keys([*declared, *untracked], strategy)
    return StageView(params, "params", keys)


def load(path, declared: Collection[str], untracked: Collection[str] = (), strategy: str | None = None) -> StageView:
    """params.yaml at `path`, validated (the stage sections and `strategy`'s), as the stage may read it.

    Every declared key must be stated in the file, as `dvc repro` requires too: run directly, a stage must not
    compute from defaults DVC does not track (`aegan check-params` requires the whole file).
    """
    from aegan.params import check_complete, load_params_and_text, required_names

    params, raw = load_params_and_text(path, [strategy] if strategy else [])
    if EVERYTHING in declared:
        names = required_names(params)
    else:
        names = required_names(params, [n.replace(STRATEGY, strategy) if strategy else n for n in declared])
    check_complete(raw, names, str(path))
    _LOADED.append((path, tuple(declared), strategy, stage_view(params, declared, (), strategy).model_dump(mode="json")))
    return stage_view(params, declared, untracked, strategy)


def forget_loaded() -> None:
    _LOADED.clear()


def check_unchanged() -> None:
    """Every params file this process's stage read still gives the declared values it read at the start, or one line.

    DVC records a stage's params as the file gives them when the command has ended: a value edited while the stage
    ran (`git stash`, another `dvc exp run -S`) would be recorded beside outputs computed from the old one, and the
    run-cache would hand them out for the new one. Failing here keeps DVC from recording them.
    """
    from aegan.errors import UserError
    from aegan.params import flatten, load_params_and_text

    loaded = list(_LOADED)
    _LOADED.clear()
    for path, declared, strategy, before in loaded:
        try:
            params, _ = load_params_and_text(path, [strategy] if strategy else [])
        except UserError as err:
            raise UserError(f"{path} changed while this stage ran and no longer validates ({err}); its outputs are "
                            "not recorded: fix the file, then run the stage again (`aegan run` or `dvc repro`)") from None
        now = stage_view(params, declared, (), strategy).model_dump(mode="json")
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
