"""Resumable training: one checkpoint per (strategy, seed) under checkpoints/, outside every DVC out.

DVC deletes a stage's outs before it runs the stage, so a checkpoint inside
models/runs/ would vanish exactly when it is needed. checkpoints/ is
git- and dvc-ignored; the file is removed once its run has finished.

A checkpoint continues a run only when its fingerprint (the params and data
that define the run) matches; otherwise training starts fresh and says so.
The file carries the sha256 of its payload on its first line (torch.load
checks no checksum of its zip): a checkpoint whose bytes changed after it was
written is never resumed; the run starts fresh with one warning line.
The resumed run logs into the same MLflow run; metrics of the steps between
the last checkpoint and the kill are logged twice (same step, same values).
"""

from __future__ import annotations

import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aegan.atomic import ensure_writable, remove_stale_temps, write_bytes
from aegan.errors import UserError

FORMAT = "aegan-checkpoint/2"
HEADER = b"aegan-checkpoint sha256="  # then the payload's sha256 in hex, a newline, and torch.save's bytes
CHECKPOINT_DIR = Path("checkpoints")


def checkpoint_path(strategy: str, seed: int) -> Path:
    return CHECKPOINT_DIR / f"{strategy}-{seed}.pt"


def fingerprint(strategy: str, seed: int, params, inputs: dict[str, str]) -> str:
    """What defines a run: a checkpoint continues it only when all of it is unchanged.

    `params`: what the train stage was handed (the params it declares); `inputs`: the sha256 of each file it trains
    from.
    """
    from aegan.stage_params import values
    from aegan.tracking import params_hash

    return params_hash({"strategy": strategy, "seed": seed, **values(params), **inputs})


class CorruptCheckpoint(ValueError):
    """The payload's sha256 is not the one the file carries."""


def save_checkpoint(path: Path, bundle: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **bundle}, buf)
    payload = buf.getvalue()
    write_bytes(path, HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def read_checkpoint(path: Path) -> dict:
    """The bundle saved at `path`, after its payload's sha256 was checked (ValueError: not a checkpoint of ours)."""
    head, newline, payload = path.read_bytes().partition(b"\n")
    if not head.startswith(HEADER) or not newline:
        raise ValueError("not an aegan checkpoint")
    if hashlib.sha256(payload).hexdigest().encode() != head[len(HEADER):]:
        raise CorruptCheckpoint("its sha256 differs from the one written with it")
    bundle = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise ValueError("not an aegan checkpoint of this version")
    return bundle


def load_checkpoint(path: Path, strategy: str, shape, expected_fingerprint: str) -> dict | None:
    """The checkpoint to resume from, or None (no file, or params changed: then one line on stderr)."""
    remove_stale_temps(path)
    if not path.is_file():
        return None
    try:
        bundle = read_checkpoint(path)
    except CorruptCheckpoint as err:
        print(f"{path}: corrupt checkpoint ({err}): starting fresh", file=sys.stderr)
        return None
    except Exception as err:
        print(f"{path}: unreadable checkpoint ({type(err).__name__}): starting fresh", file=sys.stderr)
        return None
    if bundle["strategy"] != strategy:
        raise UserError(f"{path}: checkpoint of strategy {bundle['strategy']!r}, not {strategy!r}: delete it")
    if bundle["fingerprint"] != expected_fingerprint:
        saved = bundle.get("shape")
        why = f"architecture {saved} != {shape.as_dict()}" if saved != shape.as_dict() else "params or data changed"
        print(f"{path}: {why} since it was written: starting fresh", file=sys.stderr)
        return None
    return bundle


def remove_checkpoint(path: Path) -> None:
    path.unlink(missing_ok=True)
    remove_stale_temps(path)
    try:
        path.parent.rmdir()  # only if empty: other runs may be checkpointing next to it
    except OSError:
        pass


@dataclass
class Resumable:
    """Where one (strategy, seed) run checkpoints, and what it must match to be continued."""

    path: Path
    strategy: Any  # the Strategy being trained: restored in place on resume, saved on checkpoint
    seed: int
    fingerprint: str

    def resume_or_start(self) -> dict | None:
        """Restore the strategy from a matching checkpoint and return it (step, loop_state, mlflow_run_id), else None."""
        name, shape = self.strategy.name, self.strategy.shape
        ensure_writable(self.path.parent)  # a read-only checkpoints/ fails here, not at the first checkpoint
        ckpt = load_checkpoint(self.path, name, shape, self.fingerprint)
        if ckpt is None:
            return None
        try:
            self.strategy.load_checkpoint_state(ckpt["strategy_state"])
        except (KeyError, ValueError, RuntimeError) as err:
            raise UserError(f"{self.path}: does not fit strategy {name!r} ({type(err).__name__}): delete it") from None
        return ckpt

    def save(self, step: int, loop_state: dict, mlflow_run_id: str) -> None:
        save_checkpoint(self.path, {
            "strategy": self.strategy.name, "seed": self.seed, "shape": self.strategy.shape.as_dict(),
            "fingerprint": self.fingerprint, "mlflow_run_id": mlflow_run_id, "step": step, "loop_state": loop_state,
            "strategy_state": self.strategy.checkpoint_state(),
        })  # fmt: skip

    def finish(self) -> None:
        """The run is complete: its checkpoint is no longer needed."""
        remove_checkpoint(self.path)
