"""YAML files as DVC reads them (params.yaml, dvc.yaml), with one-line errors for what cannot be read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aegan.errors import UserError


def read_yaml(path: Path) -> Any:
    """The file's data: UTF-8, YAML 1.2 as DVC reads it (ruamel.yaml), a key given twice in one mapping refused."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import ConstructorError, DuplicateKeyError
    from ruamel.yaml.error import YAMLError

    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}): save it as UTF-8") from None
    try:
        return YAML(typ="safe").load(text)
    except DuplicateKeyError as err:
        key = re.search(r'duplicate key "(.*?)" with value', err.problem or "")
        first, again = err.context_mark.line + 1, err.problem_mark.line + 1
        raise UserError(
            f"{path}: key '{key.group(1) if key else '?'}' is given twice in the mapping that starts on line {first} "
            f"(again on line {again}): keep one, the second would silently replace the first"
        ) from None
    except ConstructorError as err:  # a tag such as !!python/object: YAML that is valid, values that are not plain
        mark = err.problem_mark
        tag = re.search(r"tag '(?:tag:yaml\.org,2002:)?(.*?)'", err.problem or "")
        raise UserError(
            f"{path}: line {mark.line + 1 if mark else '?'}: the tag !!{tag.group(1) if tag else '?'} is not allowed: "
            "params hold plain values (numbers, strings, booleans, lists, mappings): remove the tag"
        ) from None
    except (YAMLError, RecursionError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}: fix the syntax") from None
