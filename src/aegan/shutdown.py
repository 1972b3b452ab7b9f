"""How a stage process stops: SIGTERM like Ctrl-C, never outliving its parent.

- SIGTERM (sent by `kill`, CI runners, container stops, and by the kernel
  below) raises `Terminated` in the main thread, so `finally` blocks and the
  atomic writes clean up and the CLI ends the open MLflow runs as KILLED,
  exactly as after Ctrl-C (SIGINT); the exit code is 143 (128 + SIGTERM).
- On Linux the process asks the kernel to send it SIGTERM when its parent
  dies (prctl PR_SET_PDEATHSIG). A stage whose `dvc repro` was killed then
  stops, instead of finishing later and writing outputs DVC has given up on.
  The signal follows the parent *thread* that started the process; DVC starts
  stage commands from its main thread.
- DVC runs a stage's command through `$SHELL -c` (`/bin/sh` when SHELL is
  unset, as under CI runners and cron). bash execs the command, so the stage's
  parent is DVC; dash does not, so the parent is the shell, which lives on
  after DVC is killed. Where the parent is such a shell, a watcher thread
  polls the shell's parent and sends SIGTERM to this process when it is gone.
- A stage started by `aegan run` is told the pid of the process that started
  it (AEGAN_RUNNER: the runner, or the Dask worker on a remote cluster) and
  watches it the same way: a runner or worker killed with SIGKILL, which can
  stop nothing itself, leaves no stage running unattended.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PR_SET_PDEATHSIG = 1
SHELLS = {"sh", "dash", "bash", "zsh", "ksh", "mksh", "fish"}
WATCH_INTERVAL_S = 0.5


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


Identity = tuple  # (pid, start): a process, not just a pid (pids are reused)


def identity(pid: int) -> Identity | None:
    """(pid, start) of a live process, None when it is gone or a zombie. On Linux `start` is its start in clock
    ticks since boot (/proc/PID/stat): unlike psutil's create_time, no wall clock goes into it, so a clock step
    (NTP, a VM resumed) cannot make a live process look like another one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if Path("/proc/self/stat").exists():
            return None  # Linux: gone
        import psutil  # elsewhere: psutil's view (its start time follows the wall clock)

        try:
            proc = psutil.Process(pid)
            return None if proc.status() == psutil.STATUS_ZOMBIE else (pid, proc.create_time())
        except psutil.Error:
            return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces or ')'
    return None if fields[0] in ("Z", "X") else (pid, int(fields[19]))  # fields 3 (state) and 22 (starttime)


def shell_parent_owner() -> Identity | None:
    """The process that ran this one through `<shell> -c` where the shell did not exec it; else None."""
    import psutil

    try:
        parent = psutil.Process().parent()
        if parent is None or parent.name() not in SHELLS or "-c" not in parent.cmdline()[1:]:
            return None
        owner = parent.parent()
        return identity(owner.pid) if owner is not None and owner.pid > 1 else None
    except psutil.Error:  # the parent went away or cannot be read: nothing to watch
        return None


def _gone(owner: Identity) -> bool:
    """Exited (a zombie counts), or its pid now belongs to another process."""
    return identity(owner[0]) != owner


RUNNER_ENV = "AEGAN_RUNNER"  # "<pid>:<start>" of the process that started this stage: runner or worker (parallel.py)


def runner_env() -> dict[str, str]:
    """What `aegan run` (or its Dask worker) hands a stage it starts so that the stage stops when it is gone."""
    pid, start = identity(os.getpid())
    return {RUNNER_ENV: f"{pid}:{start}"}


def runner_owner() -> Identity | None | bool:
    """The `aegan run` process named in AEGAN_RUNNER; None when not set; False when it is gone already."""
    pid, _, start = os.environ.get(RUNNER_ENV, "").partition(":")
    if not pid.isdigit():
        return None
    owner = identity(int(pid))
    return owner if owner is not None and str(owner[1]) == start else False


def _watch(owner: Identity | bool, stop: threading.Event) -> None:
    """SIGTERM to this process once `owner` is gone (at once when it is False: gone before the stage began)."""
    while owner is False or not stop.wait(WATCH_INTERVAL_S):
        if owner is False or _gone(owner):
            os.kill(os.getpid(), signal.SIGTERM)
            return


@contextmanager
def stage_process() -> Iterator[None]:
    """While a command runs: SIGTERM raises `Terminated`, the parent's death sends SIGTERM. Undone afterwards."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    set_parent_death_signal(signal.SIGTERM)
    stop_watching = threading.Event()
    for name, owner in (("owner-watch", shell_parent_owner()), ("runner-watch", runner_owner())):
        if owner is not None:
            threading.Thread(target=_watch, args=(owner, stop_watching), name=name, daemon=True).start()
    try:
        yield
    finally:
        stop_watching.set()
        set_parent_death_signal(0)
        signal.signal(signal.SIGTERM, previous)


def invoked_as_command() -> bool:
    """Whether this process is an `aegan` command (not aegan called in-process, e.g. by tests)."""
    started = Path(sys.argv[0])  # the `aegan` script, or `python -m aegan` (aegan/__main__.py), not `python -m pytest`
    return started.name == "aegan" or started.parent.name == "aegan"


def exit_now(code: int = 0) -> None:
    """End an `aegan` command at once, skipping the interpreter's clean-up (seconds with torch and MLflow loaded);
    its outputs are written and closed by then, and MLflow's writes are committed. In-process calls return."""
    if invoked_as_command():
        flush_and_exit(code)


def flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream must not keep the process alive
            pass
    os._exit(code)
