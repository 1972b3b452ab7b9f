"""Atomic file writes: write to a temp file in the same folder, then rename.

A killed or failed stage therefore leaves either the old file or the new one,
never a half-written file that DVC or a later stage could take for a good one.
Outputs get the mode the user's umask gives any new file (mkstemp alone would
give 0600). A folder that cannot be written is a one-line `UserError`.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from aegan.errors import UserError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would create


def _temp_next_to(path: Path, suffix: str) -> Path:
    """A new, empty temp file in `path`'s folder (created if needed), with the umask's mode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    except OSError as err:
        raise UserError(
            f"{path.parent}: cannot write {path.name} there ({err.strerror or type(err).__name__}): "
            f"make the folder writable (chmod u+w {path.parent})"
        ) from None
    os.close(fd)
    os.chmod(tmp, FILE_MODE)
    return Path(tmp)


def ensure_writable(folder: str | os.PathLike) -> None:
    """Fail now, in one line, if files cannot be written into `folder` (before hours of work need to)."""
    _temp_next_to(Path(folder) / ".write-check", "").unlink()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    tmp_path = _temp_next_to(path, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


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
    """torch.save, byte-stable: the same tensors give the same file (and DVC hash).

    Saved to a path, torch names the archive inside the zip after the file, here a random temp name;
    saved to a buffer, the name is fixed.
    """
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temp files `atomic_path(path)` left behind when its process was killed (SIGKILL skips cleanup)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = [p for p in path.parent.glob(f".{path.name}.*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
