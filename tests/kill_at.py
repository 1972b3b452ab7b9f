"""Run an `aegan` command in this process and SIGKILL it at a chosen point: the kill tests' driver.

    python tests/kill_at.py step:N -- train --strategy S --seed K            (right after training step N)
    python tests/kill_at.py checkpoint-write:N -- train --strategy S ...     (while the step-N checkpoint is written:
                                                                              temp file complete, not yet renamed)

The points are patched in here (the shared loop's step, torch.save), so the
production code carries no test hook. Steps count from the start of the run,
a resumed run included.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

import aegan.stages.train as train_stage
from aegan.checkpoint import FORMAT
from aegan.cli import app


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(point: str, args: list[str]) -> None:
    kind, n = point.split(":")
    n = int(n)
    if kind == "step":
        real_loop = train_stage.train_loop

        def loop(step_fn, *a, state=None, **kw):
            done = state["step"] if state else 0

            def step(*batch):
                nonlocal done
                out = step_fn(*batch)
                done += 1
                if done == n:
                    kill()
                return out

            return real_loop(step, *a, state=state, **kw)

        train_stage.train_loop = loop
    elif kind == "checkpoint-write":
        real_save, real_replace = torch.save, os.replace
        writing = []

        def save(obj, f, *a, **kw):
            real_save(obj, f, *a, **kw)
            if isinstance(obj, dict) and obj.get("format") == FORMAT and obj.get("step") == n:
                writing.append(n)  # serialised; the atomic write of its bytes follows

        def replace(src, dst, *a, **kw):
            if writing and Path(dst).parent.name == "checkpoints":
                kill()  # the temp file is complete, the rename has not happened
            return real_replace(src, dst, *a, **kw)

        torch.save, os.replace = save, replace
    else:
        raise SystemExit(f"unknown kill point {point!r}")
    app(args, prog_name="aegan")


if __name__ == "__main__":
    sep = sys.argv.index("--")
    main(sys.argv[1], sys.argv[sep + 1 :])
