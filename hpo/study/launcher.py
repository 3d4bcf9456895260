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
    process: subprocess.Popen[str] | None = None
    restarts: int = 0
    next_start: float = 0.0
    finished: bool = False
    exit_codes: list[int] = field(default_factory=list)


THREADS_ENV = "OMP_NUM_THREADS"
SLURM_CPUS_ENV = "SLURM_CPUS_PER_TASK"


def usable_cpus() -> int:
    """The CPUs this process may use, not the whole machine's: its affinity mask (which a
    scheduler's CPU binding, Slurm's task/affinity or a container's cpuset, narrows), and no more
    than `SLURM_CPUS_PER_TASK` where Slurm gives the task its CPU count without binding it."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks on this platform
        cpus = os.cpu_count() or 1
    allotted = os.environ.get(SLURM_CPUS_ENV, "")
    if allotted.isdigit() and int(allotted) > 0:
        cpus = min(cpus, int(allotted))
    return max(1, cpus)


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """CPU threads for each of `workers` processes: the CPUs this job may use, shared out.

    Each worker's PyTorch would otherwise start one thread per core, and the threads of several
    workers, spinning as they wait for each other, slow them all: tests/test_confirm.py, with two
    CPU workers on 2 cores, took 44 s with a thread per core in each and 19 s with one thread
    each. torchrun likewise starts each process with one thread. On a shared node the whole
    machine's count would give each job's workers threads on cores that other jobs were given.
    """
    return max(1, (cpus or usable_cpus()) // workers)


VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"


def visible_device(index: str, inherited: str | None) -> str:
    """What a worker on GPU `index` gets as CUDA_VISIBLE_DEVICES. Indices count the GPUs that
    this process was given, as CUDA and torchrun count them: a Slurm task whose allocated GPUs
    are `CUDA_VISIBLE_DEVICES=3,5` runs `--gpus 0,1` on GPUs 3 and 5, not on 0 and 1, which
    are other jobs'. With nothing inherited, the index is the machine's own."""
    if inherited is None:
        return index
    given = [device.strip() for device in inherited.split(",") if device.strip()]
    if int(index) >= len(given):
        raise UsageError(
            f"--gpus {index}: this job was given {len(given)} GPU(s) "
            f"({VISIBLE_ENV}={inherited!r}); indices count from 0 among them"
        )
    return given[int(index)]


def plan_slots(options: LaunchOptions) -> list[_Slot]:
    base = {k: v for k, v in os.environ.items()}
    workers = len(options.gpus) * options.per_gpu + options.cpu_workers
    if workers > 0:  # what the user set in the environment wins
        base.setdefault(THREADS_ENV, str(threads_per_worker(workers)))
    devices = {gpu: visible_device(gpu, base.get(VISIBLE_ENV)) for gpu in options.gpus}
    slots = [
        _Slot(name=f"gpu{gpu}.{k}", env={**base, VISIBLE_ENV: devices[gpu]}, device="cuda")
        for gpu in options.gpus
        for k in range(options.per_gpu)
    ]
    slots += [
        _Slot(name=f"cpu{k}", env={**base, VISIBLE_ENV: ""}, device="cpu")
        for k in range(options.cpu_workers)
    ]
    if not slots:
        raise UsageError("nothing to launch: give --gpus 0,1,… or --cpu N")
    if len(slots) > 1 and options.storage_url.is_sqlite:
        raise UsageError(
            f"{len(slots)} workers on SQLite: it serves one worker at a time; use PostgreSQL or "
            "MySQL (--storage postgresql+psycopg://…) for several"
        )
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
        + f" ({slots[0].env[THREADS_ENV]} CPU threads each)"
    )
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
