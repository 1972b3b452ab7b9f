"""Strategies are found by name, as torch-fidelity finds feature extractors in its registry.

Each strategy is one module of this package, named after the strategy, that
defines one `Strategy` subclass as `STRATEGY`. Adding a strategy = adding a
module here, its section's model in params_strategies.py (a field of
params.Params and of params_sections.StudyParams) and its section in params.yaml.
Names come from the module files, without importing them: a stage imports
only the strategy it runs, so only that module is part of the stage's code.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aegan.strategies.base import Strategy

NOT_STRATEGIES = {"base"}


def names() -> list[str]:
    """Every strategy's name, sorted (the module files of this package)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name not in NOT_STRATEGIES)


def get_strategy(name: str) -> type["Strategy"]:
    """The strategy class called `name`, importing its module only."""
    from aegan.errors import UserError

    known = names()
    if name not in known:
        raise UserError(f"unknown strategy {name!r}: choose one of {', '.join(known)}")
    cls = importlib.import_module(f"{__name__}.{name}").STRATEGY
    if cls.name != name:
        raise TypeError(f"module {name}.py defines STRATEGY with name {cls.name!r}: they must match")
    return cls


def registry() -> dict[str, type["Strategy"]]:
    """All strategies by name (imports every strategy module)."""
    return {name: get_strategy(name) for name in names()}
