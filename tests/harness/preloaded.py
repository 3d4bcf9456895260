"""Real `hpo` processes that start in milliseconds: forked from one that has already imported
torch, Optuna and the project.

Each `python -m hpo` pays about 2–3 s of CPU importing torch, Optuna and SQLAlchemy before it
does anything; the cluster tests start dozens of workers on a 2-core machine. Here one server
process (started once per test session) imports all of that and waits on a Unix socket; for each
command it forks a child, which takes the caller's stdout and stderr (passed over the socket),
working directory, environment and arguments, and runs the module as `python -m` would. The child
is a real process with its own pid, database connections, threads and signals: tests stop it
(SIGSTOP), kill it and read its exit status as they would a `subprocess.Popen`'s. The server
reports each child's exit status over that child's connection.

What a fork does not give: the import of the modules themselves (a command that must exit before
it imports torch runs with `fresh=True` in tests.helpers), and the environment as the imports saw
it; `OMP_NUM_THREADS` is applied again in the child, where the thread pool reads it.

    python -m tests.harness.preloaded SOCKET_PATH    (the server; tests start it through `start`)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import IO, Any

# What every `hpo` process imports before its work starts (the commands import torch lazily;
# torch's optimizers import its compiler stack, 1.4 s, when the first one is made).
PRELOAD = (
    "torch",
    "torch._dynamo",
    "optuna",
    "sqlalchemy",
    "psycopg",
    "pymysql",
    "pandas",
    "hpo.cli.main",
    "hpo.study.worker",
    "hpo.study.launcher",
    "hpo.trial.objective",
    "hpo.reports.report",
    "model.train",
)
_STATUS = struct.Struct("!i")  # the child's raw wait status, as os.waitpid gives it


# --- the server ----------------------------------------------------------------------------


class _ChildStart:
    """What a forked child runs: the caller's module, arguments, directory and environment."""

    def __init__(self, request: dict[str, Any], fds: list[int]) -> None:
        self.request = request
        self.fds = fds

    def run(self) -> None:
        stdout_fd, stderr_fd = self.fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((devnull, 0), (stdout_fd, 1), (stderr_fd, 2)):
            os.dup2(source, target)
        for fd in {devnull, stdout_fd, stderr_fd} - {0, 1, 2}:
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own stdin)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(self.request["cwd"])
        os.environ.clear()
        os.environ.update(self.request["env"])
        threads = os.environ.get("OMP_NUM_THREADS")
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        if os.environ.get("PYTHONUNBUFFERED"):
            sys.stdout.reconfigure(write_through=True)
            sys.stderr.reconfigure(write_through=True)
        import runpy

        module = self.request["module"]
        sys.argv = [module, *self.request["argv"]]
        sys.path[0] = os.getcwd()  # as `python -m` puts the working directory first
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            code = _exit_status(exit_.code)
        except BaseException:
            traceback.print_exc()
            code = 1
        # What the interpreter does at exit, less tearing down the modules, which with torch
        # loaded takes most of a second and runs nothing of the program's.
        threading._shutdown()  # type: ignore[attr-defined]  # waits for non-daemon threads
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _exit_status(code: object) -> int:
    """The exit status that `raise SystemExit(code)` gives a Python program."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _serve(path: str) -> _ChildStart:
    """Fork a child per request until the test session ends (its pipe on stdin closes).
    Returns only in a child, with what that child runs."""
    for name in PRELOAD:
        __import__(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to write to the wakeup pipe
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wakeup_read, selectors.EVENT_READ, "child exited")
    selector.register(sys.stdin, selectors.EVENT_READ, "session ended")
    print("ready", flush=True)
    children: dict[int, socket.socket] = {}
    while True:
        for key, _ in selector.select():
            if key.data == "session ended":
                if not sys.stdin.buffer.read1(1):
                    sys.exit(0)
            elif key.data == "child exited":
                os.read(wakeup_read, 4096)
                _reap(children)
            else:
                connection, _ = listener.accept()
                message, fds, _flags, _addr = socket.recv_fds(connection, 1 << 20, 2)
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    selector.close()
                    for own in (listener, connection, *children.values()):
                        own.close()
                    os.close(wakeup_read)
                    os.close(wakeup_write)
                    return _ChildStart(json.loads(message), fds)
                for fd in fds:
                    os.close(fd)
                children[pid] = connection  # its exit comes as SIGCHLD, through the wakeup pipe
                connection.sendall(_STATUS.pack(pid))


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = children.pop(pid, None)
        if connection is not None:
            with contextlib.suppress(OSError):  # the test no longer waits for it
                connection.sendall(_STATUS.pack(status))
            connection.close()


# --- the client ----------------------------------------------------------------------------


class PreloadedProcess:
    """A child of the server, with the part of `subprocess.Popen`'s interface that tests use."""

    def __init__(
        self,
        args: list[str],
        pid: int,
        connection: socket.socket,
        stdout: IO[str] | None,
        stderr: IO[str] | None,
    ) -> None:
        self.args = args
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._connection = connection

    def poll(self) -> int | None:
        self._receive_status(timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._receive_status(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        """All of stdout and stderr once the process has exited (read as they come, so that a
        full pipe never blocks the child)."""
        texts: list[str | None] = [None, None]

        def read(index: int, stream: IO[str]) -> None:
            texts[index] = stream.read()

        readers = [
            threading.Thread(target=read, args=(index, stream), daemon=True)
            for index, stream in enumerate((self.stdout, self.stderr))
            if stream is not None
        ]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout)
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(timeout)
        return texts[0], texts[1]

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _receive_status(self, timeout: float | None) -> bool:
        """Whether the exit status came within `timeout` seconds (0: without waiting)."""
        if self.returncode is not None:
            return True
        self._connection.settimeout(timeout)
        try:
            status = _receive_exactly(self._connection, _STATUS.size)
        except (TimeoutError, BlockingIOError):
            return False
        self.returncode = os.waitstatus_to_exitcode(_STATUS.unpack(status)[0])
        self._connection.close()
        return True


class _Server:
    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="hpo-preloaded-")
        self.path = str(Path(self.folder) / "server.sock")
        repo = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.preloaded", self.path],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the preloaded server did not start")
        atexit.register(self.stop)

    def stop(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        Path(self.path).unlink(missing_ok=True)
        os.rmdir(self.folder)


_server: _Server | None = None
_server_lock = threading.Lock()


def start(
    module: str,
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    output: bool = True,
    separate_stderr: bool = False,
) -> PreloadedProcess:
    """Run `python -m module args…` as a child of the preloaded server. Its stdout and stderr
    go to one pipe (`process.stdout`), or two (`separate_stderr`), or nowhere (not `output`)."""
    global _server
    with _server_lock:
        if _server is None or _server.process.poll() is not None:
            _server = _Server()
        path = _server.path
    readers: list[int] = []
    if not output:
        writers = [os.open(os.devnull, os.O_WRONLY)] * 2
    else:
        pipes = [os.pipe() for _ in range(2 if separate_stderr else 1)]
        readers = [read for read, _ in pipes]
        writers = [pipes[0][1], pipes[-1][1]]
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        request = {"module": module, "argv": list(args), "cwd": str(cwd), "env": env}
        socket.send_fds(connection, [json.dumps(request).encode()], writers)
    finally:
        for fd in set(writers):  # the child has its copies: EOF comes when it (and its own
            os.close(fd)  # children) exit
    pid = _STATUS.unpack(_receive_exactly(connection, _STATUS.size))[0]
    streams = [open(fd, encoding="utf-8", errors="replace") for fd in readers]  # noqa: SIM115
    stdout = streams[0] if streams else None
    stderr = streams[1] if len(streams) > 1 else None
    return PreloadedProcess([module, *args], pid, connection, stdout, stderr)


def _receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise RuntimeError("the preloaded server closed the connection")
        data += chunk
    return data


if __name__ == "__main__":
    _serve(sys.argv[1]).run()
