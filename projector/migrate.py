"""`profile-status migrate`: the seed's tables where absent, and change capture. Idempotent.

Everything goes into the session's current schema (`current_schema()`, the
first existing schema of its search path); the SQL files name it `@extschema@`.
"""

from __future__ import annotations

import logging
from importlib import resources

from psycopg import AsyncConnection, sql

from shared.errors import ProfileStatusError
from shared.postgres.snapshots import SQL_PLACEHOLDERS

log = logging.getLogger(__name__)
# Serializes concurrent migrations (two deploys starting at once).
_MIGRATE_LOCK_KEY = 0x6D696772617465  # "migrate"
SCHEMA_PLACEHOLDER = "@extschema@"
CAPTURE_FUNCTION = "profile_status_capture_v1"


class NoSchema(ProfileStatusError):
    """No schema to install into: the search path names no schema that exists."""


def migration_files() -> list[tuple[str, str]]:
    """(name, SQL with `@extschema@` for the target schema) of every migration, in order.

    The queue order and the active predicate are filled in here from `SQL_PLACEHOLDERS`, so
    the index spells them exactly as the queries that rely on it do.
    """
    folder = resources.files("projector").joinpath("sql")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, _fill(folder.joinpath(name).read_text())) for name in names]


def _fill(text: str) -> str:
    for placeholder, spelling in SQL_PLACEHOLDERS.items():
        text = text.replace(placeholder, spelling)
    return text


# Least privilege: what each of our processes needs, and nothing else.
PROJECTOR_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT ON {schema}.queue, {schema}.primary_profiles TO {role}",
    "GRANT SELECT, DELETE ON {schema}.profile_status_changes_v1 TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON {schema}.profile_status_state_v1 TO {role}",
)
API_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT ON {schema}.queue, {schema}.primary_profiles TO {role}",
)
# The capture function's owner only appends to the log: INSERT of the two columns
# it writes, SELECT of `id` for RETURNING, and the id sequence.
CAPTURE_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT INSERT (username, source), SELECT (id) ON {schema}.profile_status_changes_v1 TO {role}",
    "GRANT USAGE ON SEQUENCE {schema}.profile_status_changes_v1_id_seq TO {role}",
)


def grant_statements(schema: str, projector_role: str | None, api_role: str | None) -> list[sql.Composed]:
    """The GRANTs for the projector's and the API's roles (either may be omitted)."""
    out = []
    for role, grants in ((projector_role, PROJECTOR_GRANTS), (api_role, API_GRANTS)):
        if role:
            out += _format(grants, schema, role)
    return out


def _format(statements: tuple[str, ...], schema: str, role: str) -> list[sql.Composed]:
    return [sql.SQL(s).format(schema=sql.Identifier(schema), role=sql.Identifier(role)) for s in statements]


async def migrate(
    conn: AsyncConnection,
    *,
    projector_role: str | None = None,
    api_role: str | None = None,
    capture_owner: str | None = None,
) -> list[str]:
    """Apply every migration in one transaction, then the grants asked for; return what was applied.

    `capture_owner` hands the capture function to that role (which may only
    append to the change log) instead of the role running `migrate`.
    """
    applied = []
    async with conn.transaction():
        await conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s::int8)", (_MIGRATE_LOCK_KEY,))
        schema = await _current_schema(conn)
        quoted = sql.Identifier(schema).as_string(conn)
        # Anything left unqualified resolves in pg_catalog first and never in a temporary schema.
        await conn.execute(sql.SQL("SET LOCAL search_path = pg_catalog, {}, pg_temp").format(sql.Identifier(schema)))
        for name, text in migration_files():
            await conn.execute(text.replace(SCHEMA_PLACEHOLDER, quoted))  # type: ignore[arg-type]  # trusted SQL shipped with the package
            applied.append(name)
            log.info("migration applied", extra={"event": "migration_applied", "migration": name, "schema": schema})
        if capture_owner:
            applied += await _hand_capture_to(conn, schema, capture_owner)
        for statement in grant_statements(schema, projector_role, api_role):
            await conn.execute(statement)
            applied.append(statement.as_string(conn))
    return applied


async def _current_schema(conn: AsyncConnection) -> str:
    cur = await conn.execute("SELECT pg_catalog.current_schema()")
    row = await cur.fetchone()
    if row is None or row[0] is None:
        raise NoSchema()
    return str(row[0])


async def _hand_capture_to(conn: AsyncConnection, schema: str, role: str) -> list[str]:
    """Make `role` the capture function's owner, with only what the function needs."""
    statements = _format(CAPTURE_GRANTS, schema, role)
    function = sql.SQL("{}.{}()").format(sql.Identifier(schema), sql.Identifier(CAPTURE_FUNCTION))
    change_owner = sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(function, sql.Identifier(role))
    cur = await conn.execute(
        "SELECT pg_catalog.pg_get_userbyid(proowner) OPERATOR(pg_catalog.=) %s::name,"
        " pg_catalog.has_schema_privilege(%s, %s, 'CREATE')"
        " FROM pg_catalog.pg_proc WHERE oid OPERATOR(pg_catalog.=) %s::regprocedure",
        (role, role, schema, function.as_string(conn)),
    )
    owns, may_create = await cur.fetchone() or (False, False)
    if not owns and may_create:
        statements.append(change_owner)
    elif not owns:
        # PostgreSQL lets a role own a function only where it may create one. CREATE
        # is lent for the change of owner alone: the role keeps only what the function needs.
        schema_id, role_id = sql.Identifier(schema), sql.Identifier(role)
        statements += [
            sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(schema_id, role_id),
            change_owner,
            sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(schema_id, role_id),
        ]
    for statement in statements:
        await conn.execute(statement)
    return [s.as_string(conn) for s in statements]
