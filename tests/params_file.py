"""A complete params.yaml for tests: every key at its default (= the committed file), with a test's overrides.

Stage commands refuse a params file that leaves a declared key unstated (stage_params.load), so a test that
changes a few values writes `complete({...})` instead of those values alone.
"""

from __future__ import annotations

from typing import Any


def merged(base: dict, overrides: dict) -> dict:
    """`overrides` over `base`, mappings merged key by key at every depth."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def complete(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from aegan.params import ALL, validate_params

    return merged(validate_params({}, strategies=ALL).model_dump(mode="json"), overrides or {})
