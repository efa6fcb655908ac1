"""`profile-status migrate`: the seed's tables where absent, and change capture. Idempotent."""

from __future__ import annotations

import logging
from importlib import resources

from psycopg import AsyncConnection, sql

log = logging.getLogger(__name__)
# Serializes concurrent migrations (two deploys starting at once).
_MIGRATE_LOCK_KEY = 0x6D696772617465  # "migrate"


def migration_files() -> list[tuple[str, str]]:
    """(name, SQL) of every migration, in order."""
    folder = resources.files("projector").joinpath("sql")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text()) for name in names]


# Least privilege: what each of our processes needs, and nothing else.
PROJECTOR_GRANTS = (
    "GRANT SELECT ON queue, primary_profiles TO {role}",
    "GRANT SELECT, DELETE ON profile_status_changes_v1 TO {role}",
)
API_GRANTS = ("GRANT SELECT ON queue, primary_profiles TO {role}",)


def grant_statements(projector_role: str | None, api_role: str | None) -> list[sql.Composed]:
    """The GRANTs for the projector's and the API's roles (either may be omitted)."""
    out = []
    for role, grants in ((projector_role, PROJECTOR_GRANTS), (api_role, API_GRANTS)):
        if role:
            out += [sql.SQL(g).format(role=sql.Identifier(role)) for g in grants]
    return out


async def migrate(
    conn: AsyncConnection, *, projector_role: str | None = None, api_role: str | None = None
) -> list[str]:
    """Apply every migration in one transaction, then the grants asked for; return the names applied."""
    applied = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK_KEY,))
        for name, text in migration_files():
            await conn.execute(text)  # type: ignore[arg-type]  # trusted SQL shipped with the package
            applied.append(name)
            log.info("migration applied", extra={"event": "migration_applied", "migration": name})
        for statement in grant_statements(projector_role, api_role):
            await conn.execute(statement)
            applied.append(statement.as_string(conn))
    return applied
