"""`profile-status`: migrate, projector, api, resync, verify, demo.

Operators see one clear line on stderr when something is wrong, never a traceback
(run with PROFILE_STATUS_LOG_LEVEL=DEBUG to get one in the log).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from profile_status import logs
from shared.errors import ProfileStatusError, one_line
from shared.settings import Settings

log = logging.getLogger("profile_status")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profile-status",
        description="Event-driven profile status: Postgres change capture -> Redis documents -> HTTP API.",
    )
    parser.add_argument("--database-url", help="libpq URI (default: $DATABASE_URL)")
    parser.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="create the seed's tables if absent and install change capture (idempotent)")
    projector = sub.add_parser("projector", help="run the projector daemon in the foreground")
    projector.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    api = sub.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)
    sub.add_parser("resync", help="rebuild every document from Postgres")
    verify = sub.add_parser("verify", help="compare Redis with Postgres; exit 1 on any difference")
    verify.add_argument("--settle", type=float, default=2.0, help="seconds before re-checking a difference")
    sub.add_parser("demo", help="everything embedded, with a simulated workload and a live page")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    # Flags override the environment; set them there so API worker processes inherit them.
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    try:
        settings = Settings()
    except ValueError as exc:
        return _fail(f"invalid configuration: {one_line(exc)}")
    logs.configure(settings.log_level, settings.log_json)
    commands: dict[str, Callable[[], int]] = {
        "migrate": lambda: _run(_migrate(settings)),
        "projector": lambda: _run(_projector(settings, args.metrics_port or settings.metrics_port)),
        "api": lambda: _api(args.host, args.port, args.workers, settings),
        "resync": lambda: _run(_resync(settings)),
        "verify": lambda: _run(_verify(settings, args.settle)),
        "demo": lambda: _fail("demo is not available yet (see issue 5)"),
    }
    return commands[args.command]()


def _fail(message: str) -> int:
    print(f"profile-status: error: {message}", file=sys.stderr)
    return 1


def _run(work: Awaitable[int]) -> int:
    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except ProfileStatusError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line for the operator, details in the log
        log.debug("command failed", exc_info=True)
        return _fail(one_line(exc))


@contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _migrate(settings: Settings) -> int:
    from projector.migrate import migrate
    from shared.connections import connect_postgres

    conn = await connect_postgres(settings.database_url, settings.startup_timeout_s)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    print(f"migrated: {', '.join(applied)}")
    return 0


async def _projector(settings: Settings, metrics_port: int | None) -> int:
    from projector.daemon import Projector
    from profile_status.wiring import open_store
    from shared.connections import connect_postgres

    # Fail fast, with one line, if either server is unreachable at start.
    conn = await connect_postgres(settings.database_url, settings.startup_timeout_s)
    await conn.close()
    async with open_store(settings) as store:
        if metrics_port:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr="127.0.0.1")
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            await Projector(settings, store).run(stop)
    log.info("projector stopped", extra={"event": "projector_stopped"})
    return 0


def _api(host: str, port: int, workers: int, settings: Settings) -> int:
    import uvicorn

    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Streams and slow clients must not hold a stop beyond the contract's 5 s.
        timeout_graceful_shutdown=3,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0


async def _resync(settings: Settings) -> int:
    from projector.rebuild import rebuild
    from profile_status.progress import progress_bar
    from profile_status.wiring import open_store
    from shared.connections import connect_postgres
    from shared.truth import count_usernames

    conn = await connect_postgres(settings.database_url, settings.startup_timeout_s)
    try:
        async with open_store(settings) as store:
            total = await count_usernames(conn)
            with progress_bar("resync", total) as advance:
                result = await rebuild(conn, store, reason="resync", clear=False, progress=advance)
    finally:
        await conn.close()
    print(
        f"resynced {result.usernames} usernames: {result.written} written, {result.unchanged} unchanged, "
        f"{result.stale} newer in Redis, {result.vanished} vanished"
    )
    return 0


async def _verify(settings: Settings, settle_s: float) -> int:
    from projector.verify import verify
    from profile_status.progress import progress_bar
    from profile_status.wiring import open_store
    from shared.connections import connect_postgres
    from shared.truth import count_usernames

    conn = await connect_postgres(settings.database_url, settings.startup_timeout_s)
    try:
        async with open_store(settings) as store:
            total = await count_usernames(conn)
            with progress_bar("verify", total) as advance:
                report = await verify(conn, store, settle_s=settle_s, progress=advance)
    finally:
        await conn.close()
    print("\n".join(report.lines()))
    return 0 if report.count == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
