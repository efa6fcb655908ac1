"""The embedded PostgreSQL and Valkey launchers: they serve clients and leave no process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from demo.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServerError,
    free_port,
)
from tests.integration.processes import (
    alive,
    descendants,
    shared_tmp_dir,
    subreaper,
    wait_gone,
)

ROOT = Path(__file__).resolve().parents[2]

def test_both_servers_serve_clients_then_leave_nothing_behind() -> None:
    with EmbeddedPostgres() as pg, EmbeddedRedis() as rd:
        assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        assert rd.url == f"redis://127.0.0.1:{rd.port}/0"
        assert pg.port not in (5432, 6379) and rd.port not in (5432, 6379)
        pids = [pg.pid, rd.pid, *descendants(pg.pid or 0)]

        with psycopg.connect(pg.url, autocommit=True) as listener, psycopg.connect(pg.url, autocommit=True) as talker:
            (uuid,) = talker.execute("SELECT gen_random_uuid()").fetchone() or (None,)
            assert uuid is not None and uuid.version == 4
            listener.execute("LISTEN profile_changes")
            talker.execute("SELECT pg_notify('profile_changes', 'alice')")
            got = [(n.channel, n.payload) for n in listener.notifies(timeout=5, stop_after=1)]
            assert got == [("profile_changes", "alice")]

        with redis.Redis.from_url(rd.url) as client:
            assert client.set("k", "v") and client.get("k") == b"v"
            assert client.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, "n", 41) == 41

    assert pg.pid is None and rd.pid is None
    assert len(pids) > 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid or 0, 0)


def test_stop_is_idempotent_and_url_needs_a_running_server() -> None:
    pg = EmbeddedPostgres()
    with pytest.raises(EmbeddedServerError):
        _ = pg.url
    pg.stop()
    rd = EmbeddedRedis()
    assert rd.start() == rd.start()
    rd.stop()
    rd.stop()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A data-dir parent the servers can reach when, as root, they run as nobody."""
    path = shared_tmp_dir("embedded-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_data_dirs_are_kept_and_reused(shared_dir: Path) -> None:
    with EmbeddedPostgres(shared_dir / "pg") as pg, psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    with EmbeddedRedis(shared_dir / "valkey") as rd, redis.Redis.from_url(rd.url) as client:
        client.set("kept", "still here")
    assert (shared_dir / "pg" / "PG_VERSION").exists()

    with EmbeddedPostgres(shared_dir / "pg") as pg, psycopg.connect(pg.url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
    with EmbeddedRedis(shared_dir / "valkey") as rd, redis.Redis.from_url(rd.url) as client:
        assert client.get("kept") == b"still here"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops to nobody")
def test_a_data_dir_nobody_cannot_reach_is_a_clear_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    with pytest.raises(EmbeddedServerError, match="unreachable for uid 65534"):
        EmbeddedPostgres(tmp_path / "pg").start()


def test_a_port_in_use_is_a_clear_error() -> None:
    port = free_port()
    with EmbeddedRedis(port=port), pytest.raises(EmbeddedServerError, match="already in use"):
        EmbeddedRedis(port=port).start()


def test_sigkilled_parent_leaves_no_server_behind() -> None:
    script = textwrap.dedent(
        """
        import json, pathlib, sys, time
        from demo.embedded import EmbeddedPostgres, EmbeddedRedis
        pg, rd = EmbeddedPostgres(), EmbeddedRedis()
        pg.start(); rd.start()
        kids = [int(c) for t in pathlib.Path(f"/proc/{pg.pid}/task").glob("*") for c in (t / "children").read_text().split()]
        print(json.dumps({"pids": [pg.pid, rd.pid, *kids], "tmp": [str(pg._tmp), str(rd._tmp)]}), flush=True)
        time.sleep(300)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started: dict[str, list[Any]] = {"pids": [], "tmp": []}
    with subreaper(), subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    ) as child:
        try:
            assert child.stdout is not None
            started = json.loads(child.stdout.readline())
            assert len(started["pids"]) > 2 and all(alive(p) for p in started["pids"])
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            assert wait_gone(started["pids"], 10.0) == []
        finally:
            child.kill()
            for tmp in started["tmp"]:
                shutil.rmtree(tmp, ignore_errors=True)  # a SIGKILLed parent cannot clean up
