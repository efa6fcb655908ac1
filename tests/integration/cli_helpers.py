"""Running `profile-status` commands as child processes."""

from __future__ import annotations

import os
import subprocess
import sys

from shared.settings import Settings

CLI = [sys.executable, "-m", "profile_status.cli"]


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a command needs to reach this test's servers."""
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "PROFILE_STATUS_KEY_PREFIX": settings.key_prefix,
        "PROFILE_STATUS_REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "PROFILE_STATUS_QUEUE_SHARDS": str(settings.queue_shards),
        "PROFILE_STATUS_HEARTBEAT_INTERVAL_S": "0.2",
        **extra,
    }


def run_cli(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run one command to completion."""
    return subprocess.run([*CLI, *args], env=cli_env(settings, **extra), capture_output=True, text=True, timeout=60)


def run_migrate(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`profile-status migrate` with extra flags."""
    return run_cli(settings, "migrate", *args)
