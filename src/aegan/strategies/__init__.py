"""Strategies are registered by name, as torch-fidelity registers feature extractors.

Each strategy is one module that defines a `Strategy` subclass decorated with
`@register_strategy("name")`. Adding a strategy = adding a module here and its
name to BUILTIN_MODULES; params.yaml then accepts a section of that name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from aegan.strategies.base import Strategy

BUILTIN_MODULES = ["dcgan", "ae_init", "ae_disc", "ae_hybrid", "ae_manifold", "vaegan"]

_REGISTRY: dict[str, type["Strategy"]] = {}


def register_strategy(name: str) -> Callable[[type["Strategy"]], type["Strategy"]]:
    def decorate(cls: type["Strategy"]) -> type["Strategy"]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"strategy {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def registry() -> dict[str, type["Strategy"]]:
    for module in BUILTIN_MODULES:
        importlib.import_module(f"aegan.strategies.{module}")
    return dict(_REGISTRY)


def get_strategy(name: str) -> type["Strategy"]:
    from aegan.errors import UserError

    strategies = registry()
    if name not in strategies:
        raise UserError(f"unknown strategy {name!r}: choose one of {', '.join(sorted(strategies))}")
    return strategies[name]
