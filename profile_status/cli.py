"""`profile-status`: migrate, projector, api, resync, verify, simulate, demo.

Operators see one clear line on stderr when something is wrong, never a traceback
(run with PROFILE_STATUS_LOG_LEVEL=DEBUG to get one in the log).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import TYPE_CHECKING

from pydantic import ValidationError

from profile_status.cpus import usable_cpus
from shared import logs
from shared.errors import ProfileStatusError, one_line, redact_secrets
from shared.settings import Settings

if TYPE_CHECKING:
    from demo.simulator import WorkloadConfig

log = logging.getLogger("profile_status")


# Exit statuses. Every command: 0 done, 1 failed (one line on stderr), 2 usage error (argparse's).
# `verify` answers a question, so its 1 means "differences" and a failure to answer is 2, as with diff(1).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DIFFERENCES = 1
EXIT_CANNOT_VERIFY = 2
EXIT_INTERRUPTED = 130

_EXIT_CODES_HELP = """exit status:
  0    done (verify: Redis and Postgres agree)
  1    failed, with one line on stderr (verify: differences found)
  2    usage error (verify: also could not verify, e.g. a server cannot be reached)
  130  interrupted (Ctrl-C)
"""

_VERIFY_EXIT_CODES_HELP = """exit status:
  0    Redis and Postgres agree
  1    differences found (the count and a few examples on stdout)
  2    could not verify: a server cannot be reached, invalid configuration, a usage error, any
       other failure (one line on stderr, the last)
"""


def package_version() -> str:
    """The installed package's version (from its metadata)."""
    try:
        return metadata.version("profile-status")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def _server_flags(parser: argparse.ArgumentParser, default: str | None) -> None:
    """`--database-url` and `--redis-url`, accepted before and after the subcommand.

    After the subcommand the default must be SUPPRESS: argparse copies every
    attribute of the subcommand's namespace over the main one, so a default of
    None there would erase a value given before the subcommand.
    """
    parser.add_argument("--database-url", default=default, help="libpq URI (default: $DATABASE_URL)")
    parser.add_argument("--redis-url", default=default, help="Redis URL (default: $REDIS_URL)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profile-status",
        description="Event-driven profile status: Postgres change capture -> Redis documents -> HTTP API.",
        epilog=_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"profile-status {package_version()}")
    _server_flags(parser, default=None)
    servers = argparse.ArgumentParser(add_help=False)
    _server_flags(servers, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Every subcommand takes the server flags too: `profile-status migrate --database-url ...`.
    command = functools.partial(sub.add_parser, parents=[servers])
    migrate = command("migrate", help="create the seed's tables if absent and install change capture (idempotent)")
    migrate.add_argument("--projector-role", help="grant this role what the projector needs (and no more)")
    migrate.add_argument("--api-role", help="grant this role what the API needs (and no more)")
    migrate.add_argument(
        "--capture-owner", help="make this role (not a superuser) own the change-capture function; it may only append to the change log"
    )
    projector = command("projector", help="run the projector daemon in the foreground")
    projector.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    api = command("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)
    api.add_argument(
        "--forwarded-allow-ips",
        help="trust X-Forwarded-* headers from these proxy addresses (comma-separated); off by default",
    )
    resync = command("resync", help="rebuild every document from Postgres")
    resync.add_argument(
        "--workers", type=int, default=usable_cpus(),
        help="processes sharing the work, one CPU each (default: the CPUs this process may use, "
        "after affinity and cgroup quotas: %(default)s here)",
    )
    verify = command(
        "verify",
        help="compare Redis with Postgres; exit 0 when they agree, 1 on differences, 2 when it cannot tell",
        epilog=_VERIFY_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("--settle", type=float, default=2.0, help="seconds before re-checking a difference")
    simulate = command("simulate", help="run only the simulated workload against $DATABASE_URL")
    _workload_flags(simulate)
    demo = command("demo", help="everything embedded, with a simulated workload and a live page")
    _workload_flags(demo)
    demo.add_argument("--port", type=int, help="API and page port (default 8000, else a free one)")
    demo.add_argument("--pg-port", type=int, help="embedded PostgreSQL port (default: a free one)")
    demo.add_argument("--redis-port", type=int, help="embedded Valkey port (default: a free one)")
    demo.add_argument("--data-dir", help="keep the servers' data here between runs (default: a temp dir)")
    return parser


def _workload_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=0.5, help="new profile requests per second (default 0.5)")
    parser.add_argument("--workers", type=int, default=8, help="simulated workers (default 8)")
    parser.add_argument("--speed", type=float, default=20.0, help="time compression factor (default 20)")
    parser.add_argument("--failure-ratio", type=float, default=0.15, help="share of attempts that fail (default 0.15)")
    parser.add_argument("--initial", type=int, default=24, help="requests queued at start (default 24)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status (see `_EXIT_CODES_HELP`)."""
    args = _parser().parse_args(argv)
    # A failure is an answer of its own for verify (1 already means "differences").
    failed = EXIT_CANNOT_VERIFY if args.command == "verify" else EXIT_FAILED
    # Flags override the environment; set them there so API worker processes inherit them.
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    try:
        settings = Settings()
    except ValidationError as exc:
        # In our words: pydantic's own text quotes the input, URLs with their passwords included.
        problems = ((f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "") + e["msg"] for e in exc.errors())
        return _fail(f"invalid configuration: {redact_secrets('; '.join(problems))}", failed)
    logs.configure(settings.log_level, settings.log_json)
    commands: dict[str, Callable[[], int]] = {
        "migrate": lambda: _run(_migrate(settings, args.projector_role, args.api_role, args.capture_owner)),
        "projector": lambda: _run(_projector(settings, args.metrics_port or settings.metrics_port)),
        "api": lambda: _api(args.host, args.port, args.workers, args.forwarded_allow_ips, settings),
        "resync": lambda: _run(_resync(settings, max(1, args.workers))),
        "verify": lambda: _run(_verify(settings, args.settle), failed),
        "simulate": lambda: _run(_simulate(args, settings)),
        "demo": lambda: _demo(args, settings),
    }
    return commands[args.command]()


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"profile-status: error: {message}", file=sys.stderr)
    return code


def _run(work: Awaitable[int], failed: int = EXIT_FAILED) -> int:
    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except ProfileStatusError as exc:
        return _fail(str(exc), failed)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: one line for the operator, details in the log
        log.debug("command failed", exc_info=True)
        return _fail(one_line(exc), failed)


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


async def _migrate(
    settings: Settings, projector_role: str | None, api_role: str | None, capture_owner: str | None
) -> int:
    from projector.migrate import migrate
    from shared.postgres.connect import connect_postgres

    conn = await connect_postgres(settings.database_url, settings.startup_timeout_s)
    try:
        applied = await migrate(conn, projector_role=projector_role, api_role=api_role, capture_owner=capture_owner)
    finally:
        await conn.close()
    print(f"migrated: {', '.join(applied)}")
    return 0


async def _projector(settings: Settings, metrics_port: int | None) -> int:
    from projector.daemon import Projector
    from shared.postgres.connect import connect_postgres
    from shared.wiring import open_store

    # Fail fast, with one line, if either server is unreachable at start.
    conn = await connect_postgres(settings.database_url, settings.startup_timeout_s)
    await conn.close()
    async with open_store(settings) as store:
        if metrics_port:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=settings.metrics_host)
        stop = asyncio.Event()
        # Everything loaded so far lives for the whole process: keep the collector from rescanning it.
        gc.freeze()
        with _stop_on_signals(stop):
            await Projector(settings, store).run(stop)
    log.info("projector stopped", extra={"event": "projector_stopped"})
    return 0


def _api(host: str, port: int, workers: int, forwarded_allow_ips: str | None, settings: Settings) -> int:
    import tempfile

    import uvicorn

    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker counts in its own process; this folder lets /metrics add them up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="profile-status-metrics-")

    uvicorn.run(
        "api.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Streams and slow clients must not hold a stop beyond the contract's 5 s.
        timeout_graceful_shutdown=3,
        # Abuse limits, set deliberately (docs/security.md). uvicorn's httptools protocol has no
        # deadline and no size limit on a request head: ours adds both and caps connections per
        # address (h11's own size limit does not apply, h11 is not used). Beyond
        # `limit_concurrency` connections (or tasks) a process answers 503. No WebSockets.
        http="api.server:GuardedHttpToolsProtocol",
        ws="none",
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_s,
        log_level=settings.log_level.lower(),
        # Our format and password masking in every worker process, for uvicorn's own records too.
        log_config=logs.dict_config(settings.log_level, settings.log_json),
        access_log=False,
        # Rewriting client addresses costs every request; only behind a proxy that sets them.
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    return 0


async def _resync(settings: Settings, workers: int) -> int:
    from profile_status.progress import progress_bar
    from projector.rebuild import Workers, collect_rarely, rebuild
    from shared.postgres.connect import connect_postgres
    from shared.postgres.snapshots import count_usernames
    from shared.wiring import open_store

    collect_rarely()
    conn = await connect_postgres(settings.database_url, settings.startup_timeout_s)
    try:
        async with open_store(settings) as store:
            total = await count_usernames(conn)
            with progress_bar("resync", total) as advance:
                result = await rebuild(
                    conn, store, reason="resync", clear=False, progress=advance, workers=Workers(settings, workers)
                )
    finally:
        await conn.close()
    print(
        f"resynced {result.usernames} usernames: {result.written} written, {result.unchanged} unchanged, "
        f"{result.stale} newer in Redis, {result.vanished} vanished"
    )
    return 0


async def _verify(settings: Settings, settle_s: float) -> int:
    from profile_status.progress import progress_bar
    from projector.verify import verify
    from shared.postgres.connect import connect_postgres
    from shared.postgres.snapshots import count_usernames
    from shared.wiring import open_store

    conn = await connect_postgres(settings.database_url, settings.startup_timeout_s)
    try:
        async with open_store(settings) as store:
            total = await count_usernames(conn)
            with progress_bar("verify", total) as advance:
                report = await verify(conn, store, settle_s=settle_s, progress=advance)
    finally:
        await conn.close()
    print("\n".join(report.lines()))
    return EXIT_OK if report.count == 0 else EXIT_DIFFERENCES


def _workload(args: argparse.Namespace) -> WorkloadConfig:
    from demo.simulator import WorkloadConfig

    return WorkloadConfig(
        rate=args.rate, workers=args.workers, speed=args.speed, failure_ratio=args.failure_ratio, initial=args.initial
    )


async def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from demo.simulator import Simulator
    from demo.summary import Summary

    simulator = Simulator(settings.database_url, _workload(args))
    # No projector column: the workload may run where our Redis is not.
    summary = Summary(simulator.stats, projector=False)
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        task = asyncio.create_task(simulator.run(stop, startup_timeout_s=settings.startup_timeout_s))
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=5.0)
            if not done:
                summary.show(summary.line(None))
        summary.close()
        task.result()
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from demo.embedded import EmbeddedServerError
    from demo.run import DemoOptions, run_demo

    try:
        options = DemoOptions(
            workload=_workload(args), port=args.port, pg_port=args.pg_port, redis_port=args.redis_port,
            data_dir=Path(args.data_dir).resolve() if args.data_dir else None,
        )
        return run_demo(options, settings)
    except (ProfileStatusError, EmbeddedServerError, ValueError, OSError) as exc:
        return _fail(str(exc) if isinstance(exc, ProfileStatusError) else one_line(exc))
    except Exception as exc:  # the last line of defence, as in _run
        log.debug("demo failed", exc_info=True)
        return _fail(one_line(exc))


if __name__ == "__main__":
    sys.exit(main())
