"""Waiting until Redis says what Postgres says, judged by the same code as `profile-status verify`."""

from __future__ import annotations

import asyncio
import time

from projector.verify import Report, verify
from shared.postgres.connect import connect_postgres
from shared.settings import Settings
from shared.wiring import open_store


async def _verify(settings: Settings, settle_s: float) -> Report:
    conn = await connect_postgres(settings.database_url, 5)
    try:
        async with open_store(settings) as store:
            return await verify(conn, store, settle_s=settle_s)
    finally:
        await conn.close()


def differences(settings: Settings, settle_s: float = 0.5) -> Report:
    """One `verify` run."""
    return asyncio.run(_verify(settings, settle_s))


def wait_converged(settings: Settings, timeout: float = 30.0) -> float:
    """Seconds until `verify` finds no difference; fails with the last report after `timeout`."""
    started = time.monotonic()
    while True:
        report = differences(settings, settle_s=0.2)
        if report.count == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError("\n".join(report.lines()))
        time.sleep(0.2)
