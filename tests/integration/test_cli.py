"""The `profile-status` commands as an operator runs them: real processes, real servers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from psycopg.conninfo import make_conninfo

from demo.embedded import free_port
from profile_status.cli import EXIT_CANNOT_VERIFY, EXIT_DIFFERENCES, EXIT_FAILED, EXIT_OK
from shared.redis_store.records import Meta
from shared.settings import Settings
from tests.integration.cli_helpers import CLI, cli_env, run_cli
from tests.integration.rows import add_job, add_profile
from tests.integration.stack import eventually

SEED_CLIENT = Path(__file__).parents[1] / "seed" / "check-profile-status.sh"
_env = cli_env


@pytest.fixture
def projector_process(settings: Settings) -> Iterator[subprocess.Popen[str]]:
    """`profile-status projector` as a child process."""
    proc = subprocess.Popen([*CLI, "projector"], env=_env(settings), stderr=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    assert proc.stderr is not None
    proc.stderr.close()


def _wait_heartbeat(rds: redis.Redis, settings: Settings) -> None:
    eventually(lambda: rds.exists(settings.keys().heartbeat), timeout=15)


@pytest.fixture
def seed_database(postgres_server_url: str) -> Iterator[str]:
    """A database holding the seed's tables and data, created without us."""
    name = f"ps_seed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(postgres_server_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE queue (id UUID DEFAULT gen_random_uuid() PRIMARY KEY, username VARCHAR(255) NOT NULL,"
            " source VARCHAR(50) NOT NULL, priority VARCHAR(10) NOT NULL, status VARCHAR(20) DEFAULT 'PENDING',"
            " timestamp TIMESTAMPTZ DEFAULT NOW(), last_attempt TIMESTAMPTZ, attempts INTEGER DEFAULT 0,"
            " error_message TEXT, request_id VARCHAR(50) UNIQUE NOT NULL, created_at TIMESTAMPTZ DEFAULT NOW(),"
            " updated_at TIMESTAMPTZ DEFAULT NOW())"
        )
        conn.execute("INSERT INTO queue (username, source, priority, request_id) VALUES ('kept', 'seed', 'HIGH', 'r1')")
    yield url
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrate_is_idempotent_and_keeps_existing_data(settings: Settings, seed_database: str) -> None:
    target = settings.model_copy(update={"database_url": seed_database})
    for _ in range(2):
        result = run_cli(target, "migrate")
        assert result.returncode == 0, result.stderr
    with psycopg.connect(seed_database, autocommit=True) as conn:
        assert conn.execute("SELECT username FROM queue").fetchall() == [("kept",)]
        assert conn.execute("SELECT count(*) FROM primary_profiles").fetchone() == (0,)
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'profile_status_%%_v1'"
        ).fetchone()
        assert triggers == (8,)
        conn.execute("UPDATE queue SET status = 'PROCESSING'")
        assert conn.execute("SELECT username FROM profile_status_changes_v1").fetchall() == [("kept",)]


@pytest.mark.parametrize(
    ("command", "server"),
    [(c, "postgres") for c in ("migrate", "projector", "resync", "verify")]
    + [(c, "redis") for c in ("projector", "resync", "verify")],
)
def test_unreachable_servers_are_one_clear_line(settings: Settings, command: str, server: str) -> None:
    dead = {
        "postgres": {"database_url": "postgresql://nobody@127.0.0.1:1/none"},
        "redis": {"redis_url": "redis://127.0.0.1:1/0"},
    }
    started = time.monotonic()
    result = run_cli(settings.model_copy(update=dead[server]), command, PROFILE_STATUS_STARTUP_TIMEOUT_S="1")
    # verify's 1 means "differences": not being able to tell is 2.
    assert result.returncode == (EXIT_CANNOT_VERIFY if command == "verify" else EXIT_FAILED), result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("profile-status: error: cannot reach "), last
    assert time.monotonic() - started < 30


_DEAD = {"--database-url": "postgresql://nobody@127.0.0.1:1/none", "--redis-url": "redis://127.0.0.1:1/0"}


@pytest.mark.parametrize("flag", list(_DEAD))
@pytest.mark.parametrize("position", ["before", "after", "both"])
def test_server_flags_override_the_environment_on_either_side(
    settings: Settings, flag: str, position: str
) -> None:
    live = settings.database_url if flag == "--database-url" else settings.redis_url
    variable = "DATABASE_URL" if flag == "--database-url" else "REDIS_URL"
    flags = {
        "before": ([flag, live], []),
        "after": ([], [flag, live]),
        "both": ([flag, _DEAD[flag]], [flag, live]),  # the one after the subcommand wins
    }[position]
    env = {**cli_env(settings), variable: _DEAD[flag], "PROFILE_STATUS_STARTUP_TIMEOUT_S": "1"}
    result = subprocess.run([*CLI, *flags[0], "verify", *flags[1]], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.startswith("0 differences"), result.stdout


@pytest.mark.parametrize("flag", list(_DEAD))
def test_a_server_flag_after_the_subcommand_beats_the_one_before(settings: Settings, flag: str) -> None:
    live = settings.database_url if flag == "--database-url" else settings.redis_url
    env = {**cli_env(settings), "PROFILE_STATUS_STARTUP_TIMEOUT_S": "1"}
    result = subprocess.run(
        [*CLI, flag, live, "verify", flag, _DEAD[flag]], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == EXIT_CANNOT_VERIFY, result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("profile-status: error: cannot reach ")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_projector_exits_cleanly_on_signals(
    settings: Settings, projector_process: subprocess.Popen[str], rds: redis.Redis, sig: signal.Signals
) -> None:
    _wait_heartbeat(rds, settings)
    stopped = time.monotonic()
    projector_process.send_signal(sig)
    assert projector_process.wait(5) == 0
    assert time.monotonic() - stopped < 5


def test_api_serves_and_exits_on_sigterm_closing_streams(settings: Settings) -> None:
    port = free_port()
    proc = subprocess.Popen([*CLI, "api", "--port", str(port)], env=_env(settings), stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: _get(f"http://127.0.0.1:{port}/healthz") == 200, timeout=20)
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/profile/streamer/status/stream", timeout=10) as stream:
            lines = stream.iter_lines()
            while not next(lines).startswith("data:"):
                pass
            stopped = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            for _ in lines:  # the server ends the stream; a clean end raises nothing here
                pass
        proc.wait(5)
        assert time.monotonic() - stopped < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return 0


def test_verify_finds_differences_and_resync_repairs_them(
    settings: Settings, projector_process: subprocess.Popen[str], db: psycopg.Connection, rds: redis.Redis
) -> None:
    keys = settings.keys()
    for i in range(20):
        add_job(db, f"user_{i}", priority=("HIGH", "LOW")[i % 2])
    add_profile(db, "famous")
    _wait_heartbeat(rds, settings)
    eventually(lambda: sum(rds.zcard(key) for s in keys.all_shards for key in keys.queue_sets(s)) == 20)
    assert run_cli(settings, "verify").returncode == 0
    projector_process.send_signal(signal.SIGTERM)
    assert projector_process.wait(5) == 0
    rds.delete(keys.document("user_3"))
    shard = keys.shard_of("user_0")
    member = Meta.parse(rds.hget(keys.meta(shard), "user_0")).entries[0]
    rds.zrem(keys.set_of(shard, member), member)
    rds.set(keys.document("ghost"), rds.get(keys.document("famous")).replace(b'"famous"', b'"ghost"'))
    result = run_cli(settings, "verify", "--settle", "0.1")
    assert result.returncode == EXIT_DIFFERENCES
    # a missing document, a missing queue entry (which also skews the size and the counts), a ghost
    assert result.stdout.startswith("5 differences"), result.stdout
    resync = run_cli(settings, "resync")
    assert resync.returncode == 0, resync.stderr
    assert "vanished" in resync.stdout
    final = run_cli(settings, "verify")
    assert final.returncode == 0, final.stdout
    assert final.stdout.startswith("0 differences")


def test_resync_shared_by_worker_processes_leaves_nothing_out(
    settings: Settings, db: psycopg.Connection, rds: redis.Redis
) -> None:
    statuses = ("PENDING", "PROCESSING", "COMPLETED", "FAILED")
    for i in range(120):
        add_job(db, f"Worker_Split_{i}", status=statuses[i % 4], priority=("HIGH", "MEDIUM", "LOW")[i % 3])
        if i % 5 == 0:
            add_profile(db, f"worker_split_{i}")
    resync = run_cli(settings, "resync", "--workers", "3")
    assert resync.returncode == 0, resync.stderr
    assert resync.stdout.startswith("resynced 120 usernames: 120 written"), resync.stdout
    final = run_cli(settings, "verify")
    assert final.returncode == 0, final.stdout
    again = run_cli(settings, "resync", "--workers", "3")
    assert again.stdout.startswith("resynced 120 usernames: 0 written, 120 unchanged"), again.stdout


@pytest.mark.skipif(not (shutil.which("jq") and shutil.which("curl")), reason="the seed's client needs jq and curl")
def test_the_seed_bash_client_works_unchanged(
    http: httpx.Client, db: psycopg.Connection, projector: object
) -> None:
    add_profile(db, "entrepreneur_mike", followers=125000, posts=847)
    add_job(db, "pending_user", priority="HIGH")
    add_job(db, "failed_user", status="FAILED", attempts=2, last_attempt=None, error_message="Instagram profile not accessible")
    eventually(lambda: http.get("/api/profile/failed_user/status").json()["data"]["status"] == "FAILED")

    def client(username: str) -> str:
        env = {**os.environ, "API_BASE": str(http.base_url).rstrip("/")}
        out = subprocess.run(["bash", str(SEED_CLIENT), username], env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    done = client("@entrepreneur_mike")
    assert "Status: exists" in done and "Profile processing completed!" in done
    assert "Followers: 125000" in done and "Profile URL: /api/profile/entrepreneur_mike" in done
    pending = client("pending_user")
    assert "Status: PENDING" in pending and "Stage: queued" in pending and "Queue position: #1" in pending
    failed = client("failed_user")
    assert "Processing failed (attempt #2)" in failed and "Error: Instagram profile not accessible" in failed
    unknown = client("nobody_at_all")
    assert "Status: NOT_FOUND" in unknown and "Endpoint: /api/profile/nobody_at_all/request" in unknown


def test_the_vendored_seed_client_is_the_spec_s(request: pytest.FixtureRequest) -> None:
    spec = Path(__file__).parents[2].parent / "shared" / "seed" / "status-endpoint-spec.md"
    if not spec.exists():
        pytest.skip("the seed specification is not beside this checkout")
    assert SEED_CLIENT.read_text() in spec.read_text()
