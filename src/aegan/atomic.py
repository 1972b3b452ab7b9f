"""Atomic file writes: write to a temp file in the same folder, then rename.

A killed or failed stage therefore leaves either the old file or the new one,
never a half-written file that DVC or a later stage could take for a good one.
Outputs get the mode the user's umask gives any new file (mkstemp alone would
give 0600). A folder that cannot be written, or a full disk, is a one-line
`UserError` and the file keeps its old content.

`file_set` replaces several files and folders as one unit (the report's):
all are written into a staging folder first, then moved into place under a
journal, so a failure leaves the previous set and a kill is completed by the
next writer (`recover`).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from aegan.errors import UserError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would create
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # the device or the user's quota is full, or the file too big


class DiskFull(UserError):
    """A write ran out of space; what was there before is left as it was."""


def disk_full(where: Path, err: OSError | None = None, kept: str = "the previous file is left as it was") -> DiskFull:
    why = (err.strerror if err is not None else None) or os.strerror(errno.ENOSPC)
    return DiskFull(f"{where}: {why} while writing ({kept}): free space there "
                    f"(df -h {where.parent if where.suffix else where}) or write elsewhere, then run again")


def _temp_next_to(path: Path, suffix: str) -> Path:
    """A new, empty temp file in `path`'s folder (created if needed), with the umask's mode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    except OSError as err:
        if err.errno in FULL:
            raise disk_full(path, err) from None
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
    except OSError as err:
        if err.errno in FULL:
            raise disk_full(path, err) from None
        raise
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


JOURNAL = ".publishing"  # in the destination folder while a staged set is moved into place: the staging folder's name


@contextmanager
def file_set(dest: str | os.PathLike, names: Sequence[str]) -> Iterator[Path]:
    """Yield a staging folder inside `dest`; write each of `names` (files or folders) there. On success they replace
    `dest/<name>` together; on any error none is touched and the staging folder is removed (a full disk is one line).

    The moves are renames in one folder: a kill between two of them leaves the journal, and the next `file_set` or
    `recover` on `dest` completes them before doing anything else.
    """
    dest = Path(dest)
    recover(dest)
    ensure_writable(dest)
    staging = dest / f".staging-{os.getpid()}-{os.urandom(4).hex()}"  # the pid: `recover` leaves a live writer's
    published = False
    try:
        staging.mkdir()
        yield staging
        missing = [n for n in names if not (staging / n).exists()]
        if missing:
            raise RuntimeError(f"file_set({dest}): {', '.join(missing)} not written")  # a bug of the caller
        write_text(dest / JOURNAL, staging.name)
        published = True  # from here the staging folder belongs to the journal: `recover` completes what is left
        _move_in(dest, staging)
        (dest / JOURNAL).unlink()
        shutil.rmtree(staging, ignore_errors=True)
    except (DiskFull, OSError) as err:  # while staging or writing the journal: nothing in `dest` was replaced yet
        if isinstance(err, DiskFull) or err.errno in FULL:
            raise disk_full(dest, kept="the previous set is left as it was") from None
        raise
    finally:
        if not published:
            shutil.rmtree(staging, ignore_errors=True)


def _move_in(dest: Path, staging: Path) -> None:
    """Rename each staged name over its destination; a folder already there goes into the staging folder first.
    Idempotent: a name no longer staged was moved by an earlier, interrupted call."""
    for new in sorted(staging.iterdir()):
        if new.name.startswith(".old-"):
            continue
        old = dest / new.name
        if old.is_dir() and not old.is_symlink():
            os.replace(old, staging / f".old-{new.name}")
        os.replace(new, old)


def recover(dest: str | os.PathLike) -> None:
    """Complete a set whose moves were interrupted (its journal is there), and remove staging folders left by
    killed writers. Does nothing when `dest` holds neither."""
    dest = Path(dest)
    if not dest.is_dir():
        return
    journal = dest / JOURNAL
    if journal.is_file():
        staging = dest / journal.read_text(encoding="utf-8").strip()
        if staging.parent == dest and staging.name.startswith(".staging-") and staging.is_dir():
            _move_in(dest, staging)
        journal.unlink()
    for left in dest.glob(".staging-*"):
        pid = left.name.split("-")[1]
        if not (pid.isdigit() and _alive(int(pid))):
            shutil.rmtree(left, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # PermissionError: another user's process, alive
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
