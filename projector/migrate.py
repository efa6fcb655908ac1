"""`profile-status migrate`: the seed's tables where absent, and change capture. Idempotent."""

from __future__ import annotations

import logging
from importlib import resources

from psycopg import AsyncConnection

log = logging.getLogger(__name__)
# Serializes concurrent migrations (two deploys starting at once).
_MIGRATE_LOCK_KEY = 0x6D696772617465  # "migrate"


def migration_files() -> list[tuple[str, str]]:
    """(name, SQL) of every migration, in order."""
    folder = resources.files("projector").joinpath("sql")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text()) for name in names]


async def migrate(conn: AsyncConnection) -> list[str]:
    """Apply every migration in one transaction; return their names."""
    applied = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK_KEY,))
        for name, sql in migration_files():
            await conn.execute(sql)  # type: ignore[arg-type]  # trusted SQL shipped with the package
            applied.append(name)
            log.info("migration applied", extra={"event": "migration_applied", "migration": name})
    return applied
