"""`hpo launch`: start and supervise several local workers of one study.

K workers per GPU, each pinned to its GPU with CUDA_VISIBLE_DEVICES (or N CPU workers), their
output prefixed with the worker's name. A worker that crashes is restarted after a back-off that
doubles each time, up to a limit; one that exits 0 (the study is done) or 2 (bad input: restarting
would not help) is not. SIGINT and SIGTERM are passed on to every worker, which hands its trial
back and exits; the launcher exits when all workers have.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from hpo.errors import UsageError
from hpo.study.allocation import (
    VISIBLE_ENV,
    CpuAllotment,
    threads_per_worker,
    usable_cpus,
    visible_device,
)
from storage.urls import STORAGE_ENV, StorageURL

DEFAULT_PER_GPU = 8  # the best throughput measured on one H200 (BENCHMARKS.md, benchmark 3)
DEFAULT_MAX_RESTARTS = 5
EXIT_DONE = 0
EXIT_USAGE = 2
STOP_TIMEOUT_S = 30.0
POLL_S = 0.2  # how often the launcher looks at its workers


@dataclass(frozen=True, kw_only=True)
class LaunchOptions:
    storage_url: StorageURL
    study_name: str
    gpus: tuple[str, ...] = ()
    per_gpu: int = DEFAULT_PER_GPU
    cpu_workers: int = 0
    max_restarts: int = DEFAULT_MAX_RESTARTS
    backoff_s: float = 2.0
    worker_args: tuple[str, ...] = ()  # passed on to every `hpo worker`
    # What starts a worker; the launcher adds the storage, study, device and `worker_args`.
    worker_command: tuple[str, ...] = (sys.executable, "-m", "hpo", "worker")


@dataclass(kw_only=True)
class _Slot:
    name: str
    env: dict[str, str]
    device: str
    placement: str  # for the launch line: the device and threads, and where they came from
    process: subprocess.Popen[str] | None = None
    restarts: int = 0
    next_start: float = 0.0
    finished: bool = False
    exit_codes: list[int] = field(default_factory=list)


THREADS_ENV = "OMP_NUM_THREADS"


def plan_slots(options: LaunchOptions, cpus: CpuAllotment | None = None) -> list[_Slot]:
    base = {k: v for k, v in os.environ.items()}
    workers = len(options.gpus) * options.per_gpu + options.cpu_workers
    inherited = base.get(VISIBLE_ENV)
    devices = {gpu: visible_device(gpu, inherited) for gpu in options.gpus}
    slots = [
        _Slot(
            name=f"gpu{gpu}.{k}",
            env={**base, VISIBLE_ENV: devices[gpu]},
            device="cuda",
            placement=f"{VISIBLE_ENV}={devices[gpu]}"
            + (f" (GPU {gpu} of the job's {VISIBLE_ENV}={inherited})" if inherited else ""),
        )
        for gpu in options.gpus
        for k in range(options.per_gpu)
    ]
    slots += [
        _Slot(name=f"cpu{k}", env={**base, VISIBLE_ENV: ""}, device="cpu", placement="CPU")
        for k in range(options.cpu_workers)
    ]
    if not slots:
        raise UsageError("nothing to launch: give --gpus 0,1,… or --cpu N")
    if len(slots) > 1 and options.storage_url.is_sqlite:
        raise UsageError(
            f"{len(slots)} workers on SQLite: it serves one worker at a time; use PostgreSQL or "
            "MySQL (--storage postgresql+psycopg://…) for several"
        )
    if THREADS_ENV in base:  # what the user set in the environment wins
        threads_note = f"{THREADS_ENV}={base[THREADS_ENV]}, as set"
    else:
        cpus = cpus or usable_cpus()
        threads = threads_per_worker(workers, cpus.count)
        for slot in slots:
            slot.env[THREADS_ENV] = str(threads)
        threads_note = f"{cpus} shared by {workers} worker{'s' if workers > 1 else ''}"
    for slot in slots:
        slot.placement += f", {slot.env[THREADS_ENV]} CPU threads ({threads_note})"
    return slots


def launch(options: LaunchOptions, say: Callable[[str], None] = print) -> int:
    slots = plan_slots(options)
    lock = threading.Lock()
    stopping = threading.Event()

    def emit(line: str) -> None:
        with lock:
            say(line)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        emit(f"[launch] {signal.Signals(signum).name}: stopping {len(slots)} workers")
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    emit(
        f"[launch] {len(slots)} workers for study {options.study_name!r}: "
        + ", ".join(slot.name for slot in slots)
    )
    for slot in slots:
        emit(f"[launch] {slot.name}: {slot.placement}")
    try:
        return _supervise(slots, options, stopping, emit)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _supervise(
    slots: list[_Slot],
    options: LaunchOptions,
    stopping: threading.Event,
    emit: Callable[[str], None],
) -> int:
    readers: list[threading.Thread] = []
    while not all(slot.finished for slot in slots):
        if stopping.is_set():
            _stop_all(slots, emit)
            break
        now = time.monotonic()
        for slot in slots:
            if slot.finished:
                continue
            if slot.process is None:
                if now >= slot.next_start:
                    readers.append(_start(slot, options, emit))
                continue
            code = slot.process.poll()
            if code is not None:
                _on_exit(slot, code, now, options, emit)
        time.sleep(POLL_S)
    for reader in readers:
        reader.join(timeout=5)
    if stopping.is_set():
        return 128 + signal.SIGTERM
    codes = [slot.exit_codes[-1] if slot.exit_codes else 1 for slot in slots]
    emit(f"[launch] all workers finished: exit codes {codes}")
    return 0 if all(code == 0 for code in codes) else 1


def _on_exit(
    slot: _Slot, code: int, now: float, options: LaunchOptions, emit: Callable[[str], None]
) -> None:
    """A worker exited: done, bad input, or crashed (restarted after a back-off, up to a limit)."""
    slot.exit_codes.append(code)
    slot.process = None
    if code in (EXIT_DONE, EXIT_USAGE):
        slot.finished = True
        emit(
            f"[launch] {slot.name} exited {code}"
            + (" (study done)" if code == 0 else " (bad input)")
        )
    elif slot.restarts >= options.max_restarts:
        slot.finished = True
        emit(f"[launch] {slot.name} exited {code}; gave up after {slot.restarts} restarts")
    else:
        delay = options.backoff_s * 2**slot.restarts
        slot.restarts += 1
        slot.next_start = now + delay
        emit(
            f"[launch] {slot.name} exited {code}; restarting in {delay:.0f} s "
            f"(restart {slot.restarts} of {options.max_restarts})"
        )


def _start(slot: _Slot, options: LaunchOptions, emit: Callable[[str], None]) -> threading.Thread:
    # The storage URL goes in the environment, not the command line, which every user of the
    # machine can read (ps): it may hold the database password.
    command = [
        *options.worker_command,
        "--study",
        options.study_name,
        "--device",
        slot.device,
        *options.worker_args,
    ]
    slot.process = subprocess.Popen(
        command,
        env={**slot.env, STORAGE_ENV: options.storage_url.secret(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # Ctrl-C in the terminal reaches the launcher, which forwards it
    )
    emit(f"[launch] {slot.name} started (pid {slot.process.pid})")
    stream = slot.process.stdout
    assert stream is not None

    def pump() -> None:
        for line in stream:
            emit(f"[{slot.name}] {line.rstrip()}")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return reader


def _stop_all(slots: list[_Slot], emit: Callable[[str], None]) -> None:
    running = [slot for slot in slots if slot.process is not None]
    for slot in running:
        assert slot.process is not None
        slot.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for slot in running:
        assert slot.process is not None
        try:
            code = slot.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            slot.process.kill()
            code = slot.process.wait()
        slot.exit_codes.append(code)
        slot.finished = True
        emit(f"[launch] {slot.name} stopped (exit {code})")
    for slot in slots:
        slot.finished = True
