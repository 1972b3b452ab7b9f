"""Atomic file writes: write to a temp file in the same folder, then rename.

A killed or failed stage therefore leaves either the old file or the new one,
never a half-written file that DVC or a later stage could take for a good one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def finite_or_none(obj: Any) -> Any:
    """Replace NaN/inf floats (a diverged run's losses) by None, recursively, so the JSON stays valid."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(finite_or_none(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    # through a file object: torch.save given a path names the archive inside after the (random) temp file,
    # so the same tensors would give different bytes, and a different DVC hash, on every run
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temp files `atomic_path(path)` left behind when its process was killed (SIGKILL skips cleanup)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = [p for p in path.parent.glob(f".{path.name}.*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
