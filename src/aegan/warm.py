"""Warm stage processes: a stage started by `aegan run` forks from a process that has already imported
torch, torch-fidelity, MLflow and aegan, instead of importing them again (seconds per stage on a small CPU).

`aegan run` starts one server per machine (`serve`), naming the command's
entry point (`aegan.cli:app`), and gives the stages its socket in
AEGAN_WARM_SOCKET. The `aegan` command (aegan/__main__.py, before anything
else) then hands its arguments, working directory, environment and standard
streams to the server, which forks a child that runs the entry point as a
fresh process would and sends back its exit status; signals sent to the command
reach the child, and the child stops if the command dies. Without a server
(plain `dvc repro`), before it is up, or when it holds other code than the
command would run (another checkout, an edited file), the command runs itself.

This module is imported by every `aegan` command first: standard library only. It is runner
code, like cli.py and parallel.py: no stage imports it, so editing it re-runs nothing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from aegan.shutdown import flush_and_exit, invoked_as_command

ENV = "AEGAN_WARM_SOCKET"
PRELOAD = ("torch", "torch_fidelity", "pandas", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store",
           "torch.export", "torch._dynamo", "mlflow.pyfunc",  # a train stage logs its generator as a model
           "aegan.tracking", "aegan.generator_model", "aegan.stages.prepare", "aegan.stages.train_scorer", "aegan.stages.pretrain_ae",
           "aegan.stages.train", "aegan.stages.reference", "aegan.stages.evaluate", "aegan.stages.report")  # fmt: skip
_server: dict = {}  # this process's server: {"proc": Popen, "path": str}
_server_lock = threading.Lock()


# ---- the command's side ------------------------------------------------------------------------------------------


def forward_if_warm() -> None:
    """In an `aegan` command with a warm server: run there and exit with its status; otherwise return."""
    path = os.environ.get(ENV)
    if not path or not invoked_as_command():
        return
    rc = forward(path, sys.argv)
    if rc is not None:
        sys.exit(rc)


def forward(path: str, argv: list[str]) -> int | None:
    """Run `argv` in a child of the server at `path`: its exit status, or None when it cannot (run it here)."""
    import aegan

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        return None
    started = time.time() - aegan.wall_seconds()
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "started": started,
                          "aegan": aegan.__file__}).encode()  # fmt: skip
    reader = sock.makefile("r")
    try:
        socket.send_fds(sock, [len(request).to_bytes(8, "big") + request], [0, 1, 2])
        first = reader.readline().split()
    except OSError:
        return None  # the server went away before starting anything
    if first[:1] != ["pid"]:
        return None  # stale or other code: nothing ran
    child = int(first[1])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: os.kill(child, signum))
    last = reader.readline().split()
    if last[:1] != ["rc"]:
        print(f"error: the warm process running this command (pid {child}) was lost", file=sys.stderr)
        return 1
    return int(last[1])


# ---- the server's side -------------------------------------------------------------------------------------------


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    size = int.from_bytes(data[:8], "big")
    data = data[8:]
    while len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            raise ConnectionError("request cut short")
        data += more
    return json.loads(data), fds


def _aegan_files() -> dict[str, float]:
    return {m.__file__: os.stat(m.__file__).st_mtime for name, m in list(sys.modules.items())
            if (name == "aegan" or name.startswith("aegan.")) and getattr(m, "__file__", None)}  # fmt: skip


def serve(path: str, parent: int, entry: str) -> None:
    """Import everything once, then fork one child per command, run by `entry`, until the process `parent` is gone."""
    import importlib
    import pkgutil

    os.environ.pop(ENV, None)
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # torch.cuda.is_available() must not init CUDA before fork
    app = pkgutil.resolve_name(entry)  # "module:attribute": the command's typer app
    for name in PRELOAD:
        importlib.import_module(name)
    if threading.active_count() > 1:
        sys.exit(f"aegan warm server: importing {PRELOAD} started threads; forking would be unsafe")
    if sys.modules["torch"].cuda.is_initialized():
        sys.exit("aegan warm server: an import initialised CUDA, which a forked child cannot use")
    loaded = _aegan_files()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # clean up (finally) when stopped
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path + ".new")
    srv.listen(64)
    os.rename(path + ".new", path)  # clients see the socket only once it accepts
    srv.settimeout(0.2)
    children: dict[int, socket.socket] = {}
    try:
        while os.getppid() == parent:
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                conn = None
            if conn is not None:
                conn.settimeout(None)
                _start(conn, srv, children, loaded, app)
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                code = os.waitstatus_to_exitcode(status)
                conn = children.pop(pid)
                try:
                    conn.sendall(f"rc {128 - code if code < 0 else code}\n".encode())
                except OSError:
                    pass
                conn.close()
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        Path(path).unlink(missing_ok=True)


def _start(conn: socket.socket, srv: socket.socket, children: dict, loaded: dict[str, float], app) -> None:
    try:
        request, fds = _receive(conn)
    except (OSError, ValueError):
        conn.close()
        return
    import aegan

    if request["aegan"] != aegan.__file__ or _aegan_files_changed(loaded):
        conn.sendall(b"stale\n")
        conn.close()
        for fd in fds:
            os.close(fd)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        srv.close()
        for other in children.values():
            other.close()
        _run_child(conn, request, fds, app)  # never returns
    for fd in fds:
        os.close(fd)
    conn.sendall(f"pid {pid}\n".encode())
    children[pid] = conn


def _aegan_files_changed(loaded: dict[str, float]) -> bool:
    try:
        return any(os.stat(f).st_mtime != t for f, t in loaded.items())
    except OSError:
        return True


def _run_child(conn: socket.socket, request: dict, fds: list[int], app) -> None:
    """In the forked child: become the command's process (streams, directory, environment), run it, exit."""
    import aegan

    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(ENV, None)
        sys.argv = request["argv"]
        aegan._STARTED = time.monotonic() - (time.time() - request["started"])
        if "OMP_NUM_THREADS" in os.environ and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(max(1, int(os.environ["OMP_NUM_THREADS"])))
        threading.Thread(target=_stop_when_command_dies, args=(conn,), daemon=True).start()
        app(request["argv"][1:], prog_name="aegan")
        code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
        if isinstance(err.code, str):
            print(err.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        flush_and_exit(code)


def _stop_when_command_dies(conn: socket.socket) -> None:
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


# ---- started by `aegan run` --------------------------------------------------------------------------------------


def ensure_server(entry: str) -> str:
    """The socket of this process's warm server, started on first use (the server is up some seconds later).

    `entry`: "module:attribute" of the callable that runs a command's arguments (cli.py's typer app).
    """
    import subprocess
    import tempfile

    with _server_lock:
        proc = _server.get("proc")
        if proc is None or proc.poll() is not None:
            path = str(Path(tempfile.mkdtemp(prefix="aegan-warm-")) / "socket")
            cmd = [sys.executable, "-c", f"from aegan.warm import serve; serve({path!r}, {os.getpid()}, {entry!r})"]
            _server.update(proc=subprocess.Popen(cmd, stdin=subprocess.DEVNULL), path=path)
        return _server["path"]


def stop_server() -> None:
    with _server_lock:
        proc = _server.pop("proc", None)
        path = _server.pop("path", None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
    if path:
        import shutil

        shutil.rmtree(Path(path).parent, ignore_errors=True)
