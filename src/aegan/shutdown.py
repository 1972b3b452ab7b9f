"""How a stage process stops: SIGTERM like Ctrl-C, never outliving its parent.

- SIGTERM (sent by `kill`, CI runners, container stops, and by the kernel
  below) raises `Terminated` in the main thread, so `finally` blocks and the
  atomic writes clean up and the CLI ends the open MLflow runs as KILLED,
  exactly as after Ctrl-C (SIGINT); the exit code is 143 (128 + SIGTERM).
- On Linux the process asks the kernel to send it SIGTERM when its parent
  dies (prctl PR_SET_PDEATHSIG). A stage whose `dvc repro` was killed then
  stops, instead of finishing later and writing outputs DVC has given up on.
  The signal follows the parent *thread* that started the process; DVC starts
  stage commands from its main thread, through a shell that execs them.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

PR_SET_PDEATHSIG = 1


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt: `except Exception` must not swallow it."""

    exit_code = 128 + signal.SIGTERM


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM while cleaning up ends the process at once
    raise Terminated()


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel for `sig` when the parent dies (0: no longer); False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@contextmanager
def stage_process() -> Iterator[None]:
    """While a command runs: SIGTERM raises `Terminated`, the parent's death sends SIGTERM. Undone afterwards."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    set_parent_death_signal(signal.SIGTERM)
    try:
        yield
    finally:
        set_parent_death_signal(0)
        signal.signal(signal.SIGTERM, previous)
