"""`resync --workers` defaults to the CPUs this process may use: affinity and cgroup quotas, on fake cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from profile_status.cli import _parser
from profile_status.cpus import cgroup_cpu_quota, usable_cpus

HOST_CORES = 16


@pytest.fixture(autouse=True)
def host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16-core host; each test narrows it."""
    monkeypatch.setattr(os, "cpu_count", lambda: HOST_CORES)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(HOST_CORES)), raising=False)


def _tree(root: Path, files: dict[str, str], membership: str) -> tuple[Path, Path]:
    """A cgroup mount at `root` holding `files`, and a /proc/self/cgroup saying `membership`."""
    for name, text in files.items():
        path = root / "cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    (root / "cgroup").mkdir(exist_ok=True)
    proc = root / "proc-self-cgroup"
    proc.write_text(membership + "\n")
    return root / "cgroup", proc


# (files under the mount, /proc/self/cgroup, CPUs expected)
V2 = {
    "no limit": ({"cpu.max": "max 100000"}, "0::/", HOST_CORES),
    "one CPU, in a container (cgroup namespace)": ({"cpu.max": "100000 100000"}, "0::/", 1),
    "half a CPU rounds up to one": ({"cpu.max": "50000 100000"}, "0::/", 1),
    "1.5 CPUs round up to two": ({"cpu.max": "150000 100000"}, "0::/", 2),
    "a parent's limit binds its children": (
        {"cpu.max": "max 100000", "kubepods/cpu.max": "300000 100000", "kubepods/pod1/cpu.max": "max 100000"},
        "0::/kubepods/pod1",
        3,
    ),
    "the strictest of the chain wins": (
        {"system.slice/cpu.max": "800000 100000", "system.slice/app.service/cpu.max": "200000 50000"},
        "0::/system.slice/app.service",
        4,
    ),
    "a quota above the host's cores": ({"cpu.max": "6400000 100000"}, "0::/", HOST_CORES),
    "no cpu controller enabled (no cpu.max)": ({"cgroup.controllers": "memory pids"}, "0::/user.slice", HOST_CORES),
}
V1 = {
    "no limit": (
        {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
        "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n2:cpuset:/docker/abc",
        HOST_CORES,
    ),
    "two CPUs, container's cgroup mounted as the root": (
        {"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
        "3:cpu,cpuacct:/docker/abc",
        2,
    ),
    "on the host, the process's own cgroup": (
        {
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/cpu.cfs_period_us": "100000",
            "cpu/batch/cpu.cfs_quota_us": "50000",
            "cpu/batch/cpu.cfs_period_us": "100000",
        },
        "1:cpu:/batch",
        1,
    ),
}


@pytest.mark.parametrize(("files", "membership", "expected"), list(V2.values()), ids=list(V2))
def test_cgroup_v2_quota(tmp_path: Path, files: dict[str, str], membership: str, expected: int) -> None:
    assert usable_cpus(*_tree(tmp_path, files, membership)) == expected


@pytest.mark.parametrize(("files", "membership", "expected"), list(V1.values()), ids=list(V1))
def test_cgroup_v1_quota(tmp_path: Path, files: dict[str, str], membership: str, expected: int) -> None:
    assert usable_cpus(*_tree(tmp_path, files, membership)) == expected


def test_hybrid_hierarchy_reads_the_v1_cpu_controller(tmp_path: Path) -> None:
    files = {"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000", "unified/cgroup.procs": ""}
    assert usable_cpus(*_tree(tmp_path, files, "1:cpu:/\n0::/")) == 3


@pytest.mark.parametrize("garbage", ["", "max", "lots 100000", "0 100000", "-5 100000", "100000 0"])
def test_unreadable_quota_means_no_limit(tmp_path: Path, garbage: str) -> None:
    mount, proc = _tree(tmp_path, {"cpu.max": garbage}, "0::/")
    assert cgroup_cpu_quota(mount, proc) is None
    assert usable_cpus(mount, proc) == HOST_CORES


def test_no_cgroup_information_at_all(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path / "absent", tmp_path / "absent-proc") is None
    assert usable_cpus(tmp_path / "absent", tmp_path / "absent-proc") == HOST_CORES


@pytest.mark.parametrize(("affinity", "quota", "expected"), [(4, "max 100000", 4), (4, "200000 100000", 2), (2, "800000 100000", 2)])
def test_affinity_and_quota_the_smaller_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, affinity: int, quota: str, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)))
    assert usable_cpus(*_tree(tmp_path, {"cpu.max": quota}, "0::/")) == expected


def test_without_an_affinity_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity")
    assert usable_cpus(*_tree(tmp_path, {"cpu.max": "max 100000"}, "0::/")) == HOST_CORES
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert usable_cpus(*_tree(tmp_path, {}, "0::/")) == 1


def test_resync_workers_default_is_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    expected = usable_cpus()
    assert expected <= 3
    assert _parser().parse_args(["resync"]).workers == expected
    assert _parser().parse_args(["resync", "--workers", "7"]).workers == 7
