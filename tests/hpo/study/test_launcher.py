"""The launcher's supervision with stand-in workers: exit codes, restarts and back-off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from hpo.errors import UsageError
from hpo.study.allocation import CpuAllotment, cgroup_cpu_quota, threads_per_worker, usable_cpus
from hpo.study.launcher import LaunchOptions, launch, plan_slots
from storage import parse_storage_url


def _options(exit_code: int, **changes) -> LaunchOptions:
    # A stand-in worker that prints its arguments and exits with `exit_code`.
    code = f"import os, sys; print(os.environ['HPO_STORAGE'], *sys.argv[1:]); sys.exit({exit_code})"
    base = dict(
        storage_url=parse_storage_url("postgresql+psycopg://u@127.0.0.1/db"),
        study_name="s",
        cpu_workers=2,
        max_restarts=2,
        backoff_s=0.01,
        worker_args=("--grace", "30"),
        worker_command=(sys.executable, "-c", code),
    )
    return LaunchOptions(**{**base, **changes})


def test_workers_that_finish_are_not_restarted() -> None:
    lines: list[str] = []
    assert launch(_options(0), say=lines.append) == 0
    assert sum("(study done)" in line for line in lines) == 2
    assert not any("restarting" in line for line in lines)
    # Each worker got the storage (in its environment), the study, its device and the settings
    # passed on.
    started = [line for line in lines if line.startswith("[cpu0] ")]
    assert started == [
        "[cpu0] postgresql+psycopg://u@127.0.0.1/db --study s --device cpu --grace 30"
    ]


def test_a_crashing_worker_is_restarted_with_back_off_then_given_up() -> None:
    lines: list[str] = []
    assert launch(_options(3, cpu_workers=1), say=lines.append) == 1
    restarts = [line for line in lines if "restarting in" in line]
    assert len(restarts) == 2 and "(restart 2 of 2)" in restarts[-1]
    assert any("gave up after 2 restarts" in line for line in lines)
    assert lines[-1] == "[launch] all workers finished: exit codes [3]"


def test_bad_input_is_not_retried() -> None:
    lines: list[str] = []
    assert launch(_options(2, cpu_workers=1), say=lines.append) == 1
    assert any("exited 2 (bad input)" in line for line in lines)
    assert not any("restarting" in line for line in lines)


def test_plan_pins_each_worker_to_its_gpu_and_refuses_many_on_sqlite() -> None:
    slots = plan_slots(_options(0, cpu_workers=0, gpus=("0", "3"), per_gpu=2))
    assert [(s.name, s.env["CUDA_VISIBLE_DEVICES"]) for s in slots] == [
        ("gpu0.0", "0"),
        ("gpu0.1", "0"),
        ("gpu3.0", "3"),
        ("gpu3.1", "3"),
    ]
    with pytest.raises(UsageError, match="SQLite"):
        plan_slots(_options(0, storage_url=parse_storage_url("sqlite:///x.db")))
    with pytest.raises(UsageError, match="nothing to launch"):
        plan_slots(_options(0, cpu_workers=0))


def test_workers_share_the_cores_unless_the_environment_says(monkeypatch) -> None:
    assert [threads_per_worker(n, cpus=16) for n in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    expected = str(threads_per_worker(4))
    slots = plan_slots(_options(0, cpu_workers=2, gpus=("0",), per_gpu=2))
    assert [slot.env["OMP_NUM_THREADS"] for slot in slots] == [expected] * 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert {slot.env["OMP_NUM_THREADS"] for slot in plan_slots(_options(0))} == {"3"}


def test_threads_come_from_the_cpus_the_job_was_given_not_the_whole_node(
    monkeypatch, tmp_path
) -> None:
    """A Slurm task with --cpus-per-task=2 on a 64-core node, bound (affinity) or not."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(64)))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    no_cgroup = {"cgroup_root": tmp_path, "membership": tmp_path / "none"}
    assert usable_cpus(**no_cgroup) == CpuAllotment(64, "affinity mask")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")  # Slurm without CPU binding (task/none)
    assert usable_cpus(**no_cgroup) == CpuAllotment(2, "SLURM_CPUS_PER_TASK=2")
    assert threads_per_worker(1, 2) == 2 and threads_per_worker(4, 2) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {5})  # bound to one core
    assert usable_cpus(**no_cgroup) == CpuAllotment(1, "affinity mask")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "not a number")
    assert usable_cpus(**no_cgroup).count == 1


def _cgroup(tmp_path, membership: str, files: dict[str, str]):
    tmp_path.mkdir(parents=True)
    (tmp_path / "proc").write_text(membership)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return {"cgroup_root": tmp_path, "membership": tmp_path / "proc"}


def test_a_cgroup_cpu_quota_caps_the_threads(monkeypatch, tmp_path) -> None:
    """A Kubernetes CPU limit of 2.5 on a 64-core node: cgroup v2's cpu.max, the tightest of
    the process's cgroup and its ancestors; and v1's cfs quota, where -1 means none."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(64)))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    v2 = _cgroup(
        tmp_path / "v2",
        "0::/kubepods/pod1/c1\n",
        {"kubepods/cpu.max": "800000 100000", "kubepods/pod1/c1/cpu.max": "250000 100000"},
    )
    assert cgroup_cpu_quota(**v2) == 2.5
    assert usable_cpus(**v2) == CpuAllotment(2, "cgroup CPU quota 2.5")
    v2_unlimited = _cgroup(tmp_path / "v2m", "0::/a\n", {"a/cpu.max": "max 100000"})
    assert cgroup_cpu_quota(**v2_unlimited) is None
    v1 = _cgroup(
        tmp_path / "v1",
        "4:memory:/x\n2:cpu,cpuacct:/slurm/job7\n",
        {
            "cpu,cpuacct/slurm/job7/cpu.cfs_quota_us": "50000",
            "cpu,cpuacct/slurm/job7/cpu.cfs_period_us": "100000",
            "cpu,cpuacct/cpu.cfs_quota_us": "-1",
            "cpu,cpuacct/cpu.cfs_period_us": "100000",
        },
    )
    assert cgroup_cpu_quota(**v1) == 0.5
    assert usable_cpus(**v1) == CpuAllotment(1, "cgroup CPU quota 0.5")


def test_the_launch_line_says_each_worker_s_device_threads_and_why(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    slots = plan_slots(
        _options(0, gpus=("1",), per_gpu=2, cpu_workers=0), CpuAllotment(8, "affinity mask")
    )
    assert [slot.placement for slot in slots] == [
        "CUDA_VISIBLE_DEVICES=5 (GPU 1 of the job's CUDA_VISIBLE_DEVICES=3,5), "
        "4 CPU threads (8 CPUs (affinity mask) shared by 2 workers)"
    ] * 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert plan_slots(_options(0, cpu_workers=1))[0].placement == (
        "CPU, 3 CPU threads (OMP_NUM_THREADS=3, as set)"
    )


def _devices(**changes) -> list[str]:
    return [slot.env["CUDA_VISIBLE_DEVICES"] for slot in plan_slots(_options(0, **changes))]


def test_gpu_indices_count_the_gpus_this_job_was_given(monkeypatch) -> None:
    """Slurm without device cgroups exports the allocated GPUs; `--gpus 0,1` then means those
    two, and a worker never lands on a GPU that another job holds."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert _devices(gpus=("0", "1"), per_gpu=2, cpu_workers=0) == ["3", "3", "5", "5"]
    with pytest.raises(UsageError, match="given 2 GPU"):
        _devices(gpus=("2",), cpu_workers=0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1a2b, MIG-3c4d")  # UUIDs pass through
    assert _devices(gpus=("1",), per_gpu=1, cpu_workers=0) == ["MIG-3c4d"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert _devices(gpus=("2",), per_gpu=1, cpu_workers=0) == ["2"]


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs util-linux's taskset")
def test_a_real_taskset_mask_reaches_the_plan() -> None:
    """`taskset -c 0 hpo launch …`: the affinity that a scheduler's binding sets, for real."""
    code = (
        "from hpo.study.allocation import usable_cpus, threads_per_worker; "
        "print(usable_cpus(), threads_per_worker(1))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_CPUS_PER_TASK",)}
    shown = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.split()
    assert shown[:2] == ["1", "CPU"] and shown[-1] == "1", shown
