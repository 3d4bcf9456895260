"""What a scheduler gave this job: the CPUs it may run on and the GPUs it may use.

`hpo launch` shares these among its workers. A GPU node is usually shared by several jobs, so
the whole machine's counts (`os.cpu_count()`, GPU 0, 1, …) would put each job's workers on cores
and GPUs that other jobs were given.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpo.errors import UsageError

SLURM_CPUS_ENV = "SLURM_CPUS_PER_TASK"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_MEMBERSHIP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CpuAllotment:
    """How many CPUs this process may use, and which limit set that number (for the launch
    line, so that a user can see why a worker got the threads it got)."""

    count: int
    source: str

    def __str__(self) -> str:
        return f"{self.count} CPU{'s' if self.count != 1 else ''} ({self.source})"


def usable_cpus(
    cgroup_root: Path = CGROUP_ROOT, membership: Path = CGROUP_MEMBERSHIP
) -> CpuAllotment:
    """The smallest of: the affinity mask (Slurm's task/affinity, a container's cpuset, taskset),
    a cgroup CPU quota (Kubernetes' CPU limit, Slurm's cgroup plugin), and `SLURM_CPUS_PER_TASK`
    (Slurm without CPU binding gives the count only)."""
    try:
        limits = [(len(os.sched_getaffinity(0)), "affinity mask")]
    except AttributeError:  # no affinity masks on this platform
        limits = [(os.cpu_count() or 1, "os.cpu_count")]
    quota = cgroup_cpu_quota(cgroup_root, membership)
    if quota is not None:
        limits.append((max(1, math.floor(quota)), f"cgroup CPU quota {quota:g}"))
    allotted = os.environ.get(SLURM_CPUS_ENV, "")
    if allotted.isdigit() and int(allotted) > 0:
        limits.append((int(allotted), f"{SLURM_CPUS_ENV}={allotted}"))
    count, source = min(limits, key=lambda limit: limit[0])
    return CpuAllotment(max(1, count), source)


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, membership: Path = CGROUP_MEMBERSHIP
) -> float | None:
    """CPUs' worth of time this process's cgroup (or an ancestor) may use per period, or None
    when no quota is set. cgroup v2 writes it as `cpu.max` ("150000 100000"), v1 as
    `cpu.cfs_quota_us` / `cpu.cfs_period_us` (a quota of -1 is none)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2's unified hierarchy
            quotas += _quotas_up(cgroup_root, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            quotas += _quotas_up(cgroup_root / controllers, path, _v1_quota)
    return min(quotas) if quotas else None


def _quotas_up(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas of a cgroup and its ancestors: the tightest of them binds."""
    found = []
    folder = mount / path.lstrip("/")
    while True:
        quota = read(folder)
        if quota is not None:
            found.append(quota)
        if folder == mount or mount not in folder.parents:
            return found
        folder = folder.parent


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """CPU threads for each of `workers` processes: the CPUs this job may use, shared out.

    Each worker's PyTorch would otherwise start one thread per core, and the threads of several
    workers, spinning as they wait for each other, slow them all: tests/test_confirm.py, with two
    CPU workers on 2 cores, took 44 s with a thread per core in each and 19 s with one thread
    each. torchrun likewise starts each process with one thread.
    """
    return max(1, (cpus or usable_cpus().count) // workers)


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
