"""`profile-status demo` end to end: page and API served, jobs complete and fail, nothing left behind."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import psycopg
import pytest

from demo.embedded import free_port
from tests.integration.demo_stack import ROOT, Demo
from tests.integration.processes import (
    alive,
    command_line,
    descendants,
    shared_tmp_dir,
    subreaper,
    wait_gone,
)
from tests.integration.stack import eventually

# Fast and failure-prone, so both outcomes show within seconds: a job takes
# ~2.7 s at speed 100 and fails 3 times in a row with probability 0.6^3.
FAST = ("--speed", "100", "--rate", "4", "--workers", "8", "--failure-ratio", "0.6", "--initial", "16")


def _status(http: httpx.Client, username: str) -> dict[str, Any]:
    response = http.get(f"/api/profile/{username}/status")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _wait_for_children(demo: Demo) -> list[int]:
    """The demo's process tree once the servers, the API and the projector all run."""
    def tree() -> list[int]:
        pids = descendants(demo.pid)
        lines = " | ".join(command_line(p) for p in pids)
        for name in ("postgres", "valkey-server", "cli api", "cli projector"):
            assert name in lines, f"no {name} among the demo's children: {lines}"
        return pids

    return eventually(tree, timeout=10)


@pytest.mark.slow
def test_demo_serves_the_page_runs_the_workload_and_stops_cleanly_on_sigterm() -> None:
    with Demo(*FAST) as demo, demo.client() as http:
        demo.wait_ready()
        page = http.get("/")
        assert "text/html" in page.headers["content-type"] and "profile-status" in page.text
        for asset in ("/app.js", "/style.css"):
            assert http.get(asset).status_code == 200

        with demo.connect() as db:

            def some_exist() -> list[str]:
                names = [r[0] for r in db.execute("SELECT username FROM primary_profiles LIMIT 20")]
                done = [n for n in names if _status(http, n)["status"] == "exists"]
                assert len(done) >= 3, f"exists so far: {done}"
                return done

            def some_failed_after_retries() -> dict[str, Any]:
                # Retried at least once: attempts >= 2. Re-read each time: a retry may move it on.
                rows = db.execute(
                    "SELECT username FROM queue WHERE status = 'FAILED' AND attempts >= 2 "
                    "ORDER BY attempts DESC LIMIT 10"
                ).fetchall()
                for (name,) in rows:
                    data = _status(http, name)
                    if data["status"] == "FAILED" and data["attempts"] >= 2:
                        assert data["error_message"]
                        assert data["is_retry_eligible"] is (data["attempts"] < 3)
                        return data
                raise AssertionError("no FAILED profile with retries yet")

            eventually(some_exist, timeout=40, interval=0.3)
            eventually(some_failed_after_retries, timeout=40, interval=0.3)

        queue = http.get("/api/queue/status").json()["data"]
        assert queue["projector"]["heartbeat_age_seconds"] is not None

        pids = _wait_for_children(demo)
        started = time.monotonic()
        code = demo.stop(signal.SIGTERM)
        took = time.monotonic() - started
        assert code == 0, demo.tail()
        assert took < 5.0, f"demo took {took:.1f} s to stop"
        survivors = wait_gone(pids, 1.0)
        assert survivors == [], [command_line(p) for p in survivors]
        assert "stopping" in demo.tail()


@pytest.mark.slow
def test_a_sigkilled_demo_takes_every_child_along() -> None:
    with subreaper(), Demo(*FAST) as demo:
        demo.wait_ready()
        pids = _wait_for_children(demo)
        assert len(pids) >= 6  # postgres and its helpers, valkey, api, projector
        demo.stop(signal.SIGKILL)
        survivors = wait_gone(pids, 10.0)
        assert survivors == [], [command_line(p) for p in survivors]


@pytest.mark.slow
def test_data_dir_keeps_the_state_between_runs() -> None:
    data_dir = shared_tmp_dir("demo-data-")
    try:
        flags = ("--speed", "200", "--rate", "0", "--workers", "4", "--failure-ratio", "0", "--initial", "4")
        with Demo(*flags, data_dir=data_dir) as first, first.client() as http:
            first.wait_ready()
            with first.connect() as db:

                def one_exists() -> str:
                    row = db.execute("SELECT username FROM primary_profiles LIMIT 1").fetchone()
                    assert row is not None and _status(http, row[0])["status"] == "exists"
                    return str(row[0])

                username = eventually(one_exists, timeout=30, interval=0.2)
            assert first.stop() == 0

        idle = ("--rate", "0", "--workers", "0", "--initial", "0")
        with Demo(*idle, data_dir=data_dir) as second, second.client() as http:
            second.wait_ready()
            assert _status(http, username)["status"] == "exists"
            with second.connect() as db:
                assert db.execute("SELECT count(*) FROM queue").fetchone() == (4,)
            assert second.stop() == 0
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_bad_flags_and_a_busy_port_are_one_line_errors() -> None:
    cmd = [sys.executable, "-m", "profile_status.cli", "demo"]
    bad = subprocess.run([*cmd, "--speed", "0"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1] == "profile-status: error: speed must be above 0"

    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        busy = subprocess.run([*cmd, "--port", str(port)], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert busy.returncode != 0
    assert "Traceback" not in busy.stderr
    assert busy.stderr.strip().splitlines()[-1] == (
        f"profile-status: error: port {port} on 127.0.0.1 is already in use (choose another with --port)"
    )


@pytest.mark.slow
def test_simulate_works_the_queue_of_database_url_and_stops_on_sigterm(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    cmd = [sys.executable, "-m", "profile_status.cli", "simulate",
           "--speed", "300", "--rate", "5", "--workers", "4", "--failure-ratio", "0.3", "--initial", "10"]
    with subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            with psycopg.connect(database_url, autocommit=True) as db:

                def processed() -> bool:
                    (profiles,) = db.execute("SELECT count(*) FROM primary_profiles").fetchone() or (0,)
                    (failed,) = db.execute("SELECT count(*) FROM queue WHERE attempts >= 2").fetchone() or (0,)
                    assert profiles >= 5 and failed >= 1, (profiles, failed)
                    return True

                eventually(processed, timeout=30, interval=0.2)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
            assert time.monotonic() - started < 5.0
        finally:
            if alive(proc.pid):
                proc.kill()
    with psycopg.connect(database_url, autocommit=True) as db:
        # Stopped workers gave their jobs back.
        assert db.execute("SELECT count(*) FROM queue WHERE status = 'PROCESSING'").fetchone() == (0,)
