"""``profile-status demo``: everything on one machine with nothing installed, and a live page.

One supervised process group: this process starts an embedded Valkey and
PostgreSQL (the launcher the tests use), migrates, runs the projector and the
API as child processes, and the simulated workload in-process; then it prints
the page URL and a live one-line summary until Ctrl-C or SIGTERM.

Every child carries PR_SET_PDEATHSIG=SIGKILL, so none outlives a SIGKILLed
demo; on an ordinary stop they go in order (workload, API and projector, then
the servers) within the contract's 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from redis.exceptions import RedisError

from demo.children import Child
from demo.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from demo.simulator import Simulator, WorkloadConfig
from demo.summary import Summary
from shared.errors import ProfileStatusError, one_line
from shared.logs import RedactSecrets, TextFormatter
from shared.redis_store import reports
from shared.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
SERVE_TIMEOUT_S = 20.0
SUMMARY_EVERY_S = 1.0
PLAIN_SUMMARY_EVERY_S = 5.0  # without a terminal a line a second would flood the log
CHILD_STOP_S = 3.0  # the API's own graceful shutdown is 3 s (open SSE streams)


class DemoError(ProfileStatusError):
    """The demo could not start."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``profile-status demo`` was asked for; None ports mean "pick a free one"."""

    workload: WorkloadConfig
    port: int | None = None
    pg_port: int | None = None
    redis_port: int | None = None
    data_dir: Path | None = None


def run_demo(options: DemoOptions, settings: Settings) -> int:
    """Run the demo in the foreground until SIGINT or SIGTERM; return the exit code."""
    with _run_dir(options.data_dir) as run_dir:
        logs = run_dir / "logs"
        logs.mkdir(exist_ok=True)
        _log_to(logs / "demo.log", settings.log_level)
        port = options.port or _default_port()
        if not _port_free(port):
            # Else a server already there would answer our readiness check in our API's stead.
            raise DemoError(f"port {port} on 127.0.0.1 is already in use (choose another with --port)")
        data = options.data_dir
        rd = EmbeddedRedis(data / "valkey" if data else None, port=options.redis_port)
        pg = EmbeddedPostgres(data / "postgres" if data else None, port=options.pg_port)
        # During the blocking start-up a SIGTERM unwinds like Ctrl-C, so the finally below still runs.
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            _say("starting embedded Valkey and PostgreSQL" + (f" (state in {data})" if data else "") + " ...")
            rd.start()
            pg.start()
            return asyncio.run(_serve(options, settings, port, pg, rd, logs))
        except KeyboardInterrupt:
            return 0
        finally:
            # A second Ctrl-C must not cut the servers' shutdown short; it is bounded anyway.
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            pg.stop(timeout=1.5)
            rd.stop(timeout=1.0)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.signal(signal.SIGINT, signal.default_int_handler)


async def _serve(
    options: DemoOptions, settings: Settings, port: int, pg: EmbeddedPostgres, rd: EmbeddedRedis, logs: Path
) -> int:
    from projector.migrate import migrate
    from shared.postgres.connect import connect_postgres
    from shared.wiring import open_store

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    conn = await connect_postgres(pg.url, settings.startup_timeout_s)
    try:
        await migrate(conn)
    finally:
        await conn.close()

    # The live page shows recently changed jobs: the demo publishes that list for itself.
    env = {**os.environ, "DATABASE_URL": pg.url, "REDIS_URL": rd.url, "PROFILE_STATUS_PUBLIC_RECENT_USERNAMES": "true"}
    api = Child("api", ["api", "--host", "127.0.0.1", "--port", str(port)], env, logs / "api.log")
    projector = Child("projector", ["projector"], env, logs / "projector.log")
    children = [api, projector]
    for child in children:
        child.start()
    summary: Summary | None = None
    simulator = Simulator(pg.url, options.workload)
    sim_task: asyncio.Task[None] | None = None
    try:
        await _wait_served(port, api, stop)
        if stop.is_set():
            return 0
        _banner(options, port, pg, rd, logs)
        sim_task = asyncio.create_task(simulator.run(stop, startup_timeout_s=settings.startup_timeout_s, reclaim=True))
        summary = Summary(simulator.stats)
        async with open_store(settings.model_copy(update={"redis_url": rd.url})) as store:
            last_plain = 0.0
            while not stop.is_set():
                for child in children:
                    if (note := child.check()) is not None:
                        summary.note(note)
                if sim_task.done():
                    sim_task.result()  # raises what ended it
                    break
                try:
                    beat = await reports.heartbeat(store)
                except (RedisError, OSError):  # a busy or restarting Redis only blanks the projector column
                    beat = None
                line = summary.line(beat)
                now = time.monotonic()
                if summary.tty or now - last_plain >= PLAIN_SUMMARY_EVERY_S:
                    summary.show(line)
                    last_plain = now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SUMMARY_EVERY_S)
    finally:
        started_stop = time.monotonic()
        stop.set()
        if summary is not None:
            summary.close()
        for child in children:
            child.terminate()
        if sim_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sim_task, CHILD_STOP_S)
        deadline = started_stop + CHILD_STOP_S
        await asyncio.gather(*(asyncio.to_thread(child.wait, deadline) for child in children))
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        _say("stopping embedded servers ...")
    return 0


async def _wait_served(port: int, api: Child, stop: asyncio.Event) -> None:
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while not stop.is_set():
        if await _http_status(port, "/healthz") == 200:
            return
        if api.proc is not None and api.proc.poll() is not None:
            raise DemoError(f"the API exited with code {api.proc.returncode}: {_tail(api.log_path)}")
        if time.monotonic() > deadline:
            raise DemoError(f"the API did not serve on port {port} within {SERVE_TIMEOUT_S:g} s: {_tail(api.log_path)}")
        await asyncio.sleep(0.05)


async def _http_status(port: int, path: str) -> int | None:
    """Status code of a GET on 127.0.0.1, or None (no HTTP client among our dependencies)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status_line = await asyncio.wait_for(reader.readline(), 2.0)
        return int(status_line.split()[1])
    except (OSError, TimeoutError, ValueError, IndexError):
        return None
    finally:
        writer.close()


def _banner(options: DemoOptions, port: int, pg: EmbeddedPostgres, rd: EmbeddedRedis, logs: Path) -> None:
    w = options.workload
    _say(
        "\n".join(
            [
                "",
                f"  page      http://127.0.0.1:{port}/",
                f"  api       http://127.0.0.1:{port}/api/queue/status",
                f"  postgres  {pg.url}",
                f"  redis     {rd.url}",
                f"  logs      {logs}",
                f"  workload  {w.rate:g} requests/s, {w.workers} workers, speed x{w.speed:g}, "
                f"{w.failure_ratio:.0%} of attempts fail",
                "",
                "Ctrl-C stops everything.",
            ]
        )
    )


@contextlib.contextmanager
def _run_dir(data_dir: Path | None) -> Iterator[Path]:
    """``--data-dir`` (kept), else a temp dir removed on a clean exit (logs stay after a failure)."""
    if data_dir is not None:
        try:
            data_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise DemoError(f"cannot create data dir {data_dir}: {one_line(exc)}") from exc
        yield data_dir
        return
    path = Path(tempfile.mkdtemp(prefix="profile-status-demo-"))
    ok = False
    try:
        yield path
        ok = True
    finally:
        if ok:
            shutil.rmtree(path, ignore_errors=True)


def _default_port() -> int:
    return DEFAULT_PORT if _port_free(DEFAULT_PORT) else free_port()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # uvicorn sets SO_REUSEADDR too: a port in TIME_WAIT counts as free, as it will for the API.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _log_to(path: Path, level: str) -> None:
    # The terminal belongs to the live summary; our own log records go to a file.
    handler = logging.FileHandler(path)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _say(text: str) -> None:
    print(text, flush=True)
    log.info(text.strip(), extra={"event": "demo"})
