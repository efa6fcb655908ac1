"""How many CPUs this process may actually use: its affinity and its cgroup's CPU quota.

`os.cpu_count()` counts the host's cores. Inside a container limited to one CPU
(`docker run --cpus 1`, a Kubernetes `limits.cpu`) that is the wrong number of
worker processes: they would share one CPU's time and be throttled. The limit
is a CFS quota in the process's cgroup (v2 `cpu.max`, v1 `cpu.cfs_quota_us`
over `cpu.cfs_period_us`), on that cgroup or on any cgroup above it, and a
CPU affinity mask (`taskset`, `docker run --cpuset-cpus`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

QuotaReader = Callable[[Path], float | None]


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """The CPUs this process may use: the least of its affinity, its cgroup quota and `os.cpu_count()`; at least 1."""
    limits = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):  # Linux; macOS and Windows have no affinity call here
        limits.append(len(os.sched_getaffinity(0)))
    quota = cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    if quota is not None:
        # A quota of 1.5 CPUs keeps two processes busy most of the time: round up.
        limits.append(math.ceil(quota))
    return max(1, min(limits))


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The strictest CPU quota (in CPUs) on this process's cgroup and its ancestors, or None when unlimited or unknown."""
    try:
        memberships = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in memberships:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            quotas += _quotas(cgroup_root, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            for mount in (cgroup_root / controllers, cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"):
                if mount.is_dir():
                    quotas += _quotas(mount, path, _v1_quota)
                    break
    return min(quotas) if quotas else None


def _quotas(mount: Path, path: str, read: QuotaReader) -> list[float]:
    """The quotas found on `path` and each folder above it, up to the mount point.

    In a container the mount point is usually the container's own cgroup while
    /proc/self/cgroup still names its path on the host (cgroup v1), or "/"
    (cgroup v2 with a cgroup namespace): the mount point itself is always read.
    """
    found: list[float] = []
    relative = PurePosixPath(path).relative_to("/") if path.startswith("/") else PurePosixPath(path)
    folders = [mount / relative, *(mount / parent for parent in relative.parents)]
    for folder in dict.fromkeys(folders):  # `.parents` ends at ".", the mount point: read it once
        quota = read(folder)
        if quota is not None:
            found.append(quota)
    return found


def _v2_quota(folder: Path) -> float | None:
    """cgroup v2 `cpu.max`: "max 100000" (no limit) or "QUOTA PERIOD" in microseconds."""
    try:
        quota, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
    except OSError:
        return None
    return _ratio(quota, period or "100000")


def _v1_quota(folder: Path) -> float | None:
    """cgroup v1 `cpu.cfs_quota_us` (-1: no limit) over `cpu.cfs_period_us`."""
    try:
        quota = (folder / "cpu.cfs_quota_us").read_text().strip()
        period = (folder / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:  # "max", or a file we cannot read as numbers
        return None
    return q / p if q > 0 and p > 0 else None
