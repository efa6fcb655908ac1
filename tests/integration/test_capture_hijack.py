"""A role that may create objects where we live cannot redirect our code to its own (CVE-2018-1058).

The attacker is an ordinary login role with CREATE on `public` (the default on
PostgreSQL 13 and 14, and on databases upgraded from them). It defines
functions, aggregates and operators that match our calls as closely as it can
(`lower(varchar)` is a closer match than pg_catalog's `lower(text)`,
`=(varchar, varchar)` than `texteq`, ...), each of which records its use in a
table of the attacker's and then answers plausibly, as a real attacker would.
We then migrate, write as an outside writer, and run the projector, the API
(hits, misses, positions counted in Postgres), `verify` and `resync` under
their least-privilege roles: not one shadow may ever run, and every change must
still be captured and served.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.settings import Settings
from tests.integration.cli_helpers import run_cli, run_migrate
from tests.integration.stack import ApiThread, ProjectorThread, eventually

# (signature, return type, plausible answer in PL/pgSQL, or None for void)
SHADOW_FUNCTIONS = (
    ("lower(varchar)", "text", "pg_catalog.lower($1::text)"),
    ("lower(text)", "text", "pg_catalog.lower($1)"),
    ("hashtext(varchar)", "int4", "pg_catalog.hashtext($1::text)"),
    ("now()", "timestamptz", "pg_catalog.now()"),
    ("clock_timestamp()", "timestamptz", "pg_catalog.clock_timestamp()"),
    ("gen_random_uuid()", "uuid", "pg_catalog.gen_random_uuid()"),
    ("current_database()", "name", "pg_catalog.current_database()"),
    ("pg_notify(varchar, text)", None, None),
    ("pg_notify(text, varchar)", None, None),
    ("pg_notify(text, text)", None, None),
    ("mod(int8, int2)", "int8", "pg_catalog.mod($1, $2::int8)"),
    ("mod(int8, int4)", "int8", "pg_catalog.mod($1, $2::int8)"),
    ("abs(int8)", "int8", "pg_catalog.abs($1)"),
    ("pg_current_snapshot()", "pg_snapshot", "pg_catalog.pg_current_snapshot()"),
    ("pg_advisory_lock(int4)", None, None),
    ("pg_try_advisory_lock(int4)", "bool", "true"),
    ("pg_try_advisory_lock(int2)", "bool", "true"),
    ("pg_advisory_xact_lock(int4)", None, None),
    ("has_schema_privilege(text, varchar, text)", "bool", "true"),
)
# (operator, left, right): each answers as pg_catalog's text/int comparison would.
SHADOW_OPERATORS = (
    ("=", "varchar", "varchar"),
    ("=", "varchar", "text"),
    ("=", "text", "varchar"),
    ("=", "text", "text"),
    ("=", "name", "varchar"),
    ("<", "int4", "int2"),
    ("=", "int8", "int2"),
    ("||", "text", "text"),
)
# (aggregate, argument type): each still computes the real aggregate.
SHADOW_AGGREGATES = (("max", "int8"), ("min", "timestamptz"), ("count", "*"))
_AGGREGATE_STEPS = {
    "max": "CASE WHEN $1 IS NULL OR $2 OPERATOR(pg_catalog.>) $1 THEN $2 ELSE $1 END",
    "min": "CASE WHEN $1 IS NULL OR $2 OPERATOR(pg_catalog.<) $1 THEN $2 ELSE $1 END",
    "count": "$1 OPERATOR(pg_catalog.+) 1",
}


def _record(what: str) -> str:
    return f"INSERT INTO public.attack_hits VALUES ('{what}', current_user::text);"


def attack_sql() -> list[str]:
    """What the attacker runs: a hit log everyone may append to, and every shadow."""
    out = [
        "CREATE TABLE public.attack_hits (what text, run_as text)",
        "GRANT INSERT ON public.attack_hits TO PUBLIC",
    ]
    for signature, returns, value in SHADOW_FUNCTIONS:
        body = f"BEGIN {_record(signature)} RETURN {value}; END" if returns else f"BEGIN {_record(signature)} END"
        out.append(
            f"CREATE FUNCTION public.{signature} RETURNS {returns or 'void'} LANGUAGE plpgsql AS $f$ {body} $f$"
        )
    for i, (op, left, right) in enumerate(SHADOW_OPERATORS):
        real = f"$1::text OPERATOR(pg_catalog.{op}) $2::text" if "int" not in left else f"$1 OPERATOR(pg_catalog.{op}) $2"
        kind = "text" if op == "||" else "bool"
        out.append(
            f"CREATE FUNCTION public.shadow_op_{i}({left}, {right}) RETURNS {kind} LANGUAGE plpgsql"
            f" AS $f$ BEGIN {_record(f'{left} {op} {right}')} RETURN {real}; END $f$"
        )
        out.append(f"CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = public.shadow_op_{i})")
    for name, arg in SHADOW_AGGREGATES:
        state = "int8" if arg in ("int8", "*") else arg
        params = state if arg == "*" else f"{state}, {arg}"
        step = _AGGREGATE_STEPS[name]
        out.append(
            f"CREATE FUNCTION public.shadow_{name}_step({params}) RETURNS {state} LANGUAGE plpgsql"
            f" AS $f$ BEGIN {_record(f'{name}({arg})')} RETURN {step}; END $f$"
        )
        init = ", INITCOND = 0" if name == "count" else ""
        out.append(f"CREATE AGGREGATE public.{name}({arg}) (SFUNC = public.shadow_{name}_step, STYPE = {state}{init})")
    return out


@dataclass(frozen=True)
class Roles:
    """Login roles of one test, and the capture function's owner (no login)."""

    attacker: str
    writer: str
    projector: str
    api: str
    capture: str

    def all(self) -> tuple[str, ...]:
        """Every role, in the order they are created."""
        return (self.attacker, self.writer, self.projector, self.api, self.capture)


@pytest.fixture
def roles(postgres_server_url: str, database_url: str) -> Iterator[Roles]:
    """Fresh roles for the attacker, an outside writer and our processes; dropped afterwards."""
    suffix = uuid.uuid4().hex[:6]
    names = Roles(*(f"ps_{kind}_{suffix}" for kind in ("attacker", "writer", "projector", "api", "capture")))
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        for name in names.all():
            admin.execute(f'CREATE ROLE "{name}" {"NOLOGIN" if name == names.capture else "LOGIN"}')
    yield names
    drop_owned(database_url, names)
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        for name in reversed(names.all()):
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def drop_owned(url: str, roles: Roles) -> None:
    """Remove what the roles own or were granted in one database, so that they can be dropped."""
    with psycopg.connect(url, autocommit=True) as conn:
        for role in roles.all():
            conn.execute(f'DROP OWNED BY "{role}" CASCADE')


@pytest.fixture
def empty_database(postgres_server_url: str, roles: Roles) -> Iterator[str]:
    """A database nobody migrated yet, where the attacker may create in `public`."""
    name = f"ps_hijack_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(postgres_server_url, dbname=name)
    yield url
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def as_role(url: str, role: str) -> str:
    """`url` logging in as `role` (the test servers trust local connections)."""
    return make_conninfo(url, user=role)


def plant(url: str, roles: Roles) -> None:
    """Let the attacker create in `public`, as PostgreSQL 13/14 allow everyone, and plant every shadow."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'GRANT CREATE ON SCHEMA public TO "{roles.attacker}"')
    with psycopg.connect(as_role(url, roles.attacker), autocommit=True) as attacker:
        for statement in attack_sql():
            attacker.execute(statement)  # type: ignore[arg-type]


def hits(url: str) -> list[tuple[str, str]]:
    """Every use of a shadow so far: (what, as whom)."""
    with psycopg.connect(url, autocommit=True) as admin:
        return admin.execute("SELECT what, run_as FROM public.attack_hits").fetchall()


def bound_to_attacker(url: str, attacker: str) -> list[str]:
    """Objects not the attacker's that depend on the attacker's functions or operators (indexes, defaults, ...)."""
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            """
            SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
                   || ' -> ' || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)
            FROM pg_catalog.pg_depend d
            LEFT JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.refobjid
            LEFT JOIN pg_catalog.pg_operator o ON d.refclassid = 'pg_catalog.pg_operator'::regclass AND o.oid = d.refobjid
            WHERE pg_catalog.pg_get_userbyid(COALESCE(p.proowner, o.oprowner)) = %s
              AND NOT (d.classid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_operator'::regclass,
                                     'pg_catalog.pg_aggregate'::regclass))
            """,
            (attacker,),
        ).fetchall()
    return [r[0] for r in rows]


def write_as(url: str, sql: str, *params: object) -> None:
    """One autocommitted statement of an outside writer (typed so that it uses no shadow itself)."""
    with psycopg.connect(url, autocommit=True) as writer:
        writer.execute(sql, params)  # type: ignore[arg-type]


_INSERT = (
    "INSERT INTO queue (username, source, priority, status, request_id, timestamp, last_attempt)"
    " VALUES (%s::text, 'w', %s::text, %s::text, %s::text, pg_catalog.clock_timestamp(), %s::timestamptz)"
)


def test_no_shadow_runs_from_migrate_capture_projector_api_or_tools(
    empty_database: str, roles: Roles, redis_server_url: str, key_prefix: str
) -> None:
    url = empty_database
    plant(url, roles)
    settings = Settings(
        database_url=url, redis_url=redis_server_url, key_prefix=key_prefix,
        heartbeat_interval_s=0.2, safety_poll_s=1.0, startup_timeout_s=5.0, partitions=2,
    )
    # migrate as the superuser: the worst case, and what the issue reproduced.
    result = run_migrate(
        settings, "--projector-role", roles.projector, "--api-role", roles.api, "--capture-owner", roles.capture
    )
    assert result.returncode == 0, result.stderr
    assert hits(url) == []
    assert bound_to_attacker(url, roles.attacker) == []
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON queue, primary_profiles TO "{roles.writer}"')

    writer = as_role(url, roles.writer)
    for i, (name, priority, status) in enumerate(
        [("Mike_1", "HIGH", "PENDING"), ("anna", "LOW", "PENDING"), ("Bob", "MEDIUM", "PROCESSING")]
    ):
        write_as(writer, _INSERT, name, priority, status, f"r-{i}", None)
    write_as(writer, "UPDATE queue SET username = %s::text WHERE request_id::text = %s::text", "Anna_2", "r-1")
    write_as(
        writer,
        "INSERT INTO primary_profiles (username, followers_count) VALUES (%s::text, 5), (%s::text, 6)",
        "done_1", "gone_1",
    )
    write_as(writer, "DELETE FROM primary_profiles WHERE username::text = %s::text", "gone_1")
    assert hits(url) == []
    with psycopg.connect(url, autocommit=True) as admin:
        logged = {r[0] for r in admin.execute("SELECT username FROM public.profile_status_changes_v1").fetchall()}
    assert logged == {"mike_1", "anna", "anna_2", "bob", "done_1", "gone_1"}

    ours = {
        "projector": settings.model_copy(update={"database_url": as_role(url, roles.projector)}),
        # Without the process cache every poll reads Redis, and counts in Postgres when it must.
        "api": settings.model_copy(update={"database_url": as_role(url, roles.api), "local_cache": False}),
    }
    projector = ProjectorThread(ours["projector"]).start()
    api = ApiThread(ours["api"]).start()
    try:
        with api.client() as http:
            def status(name: str) -> dict[str, object]:
                response = http.get(f"/api/profile/{name}/status")
                assert response.status_code == 200, response.text
                return response.json()["data"]

            eventually(lambda: status("mike_1")["status"] == "PENDING")
            eventually(lambda: status("anna_2")["status"] == "PENDING")
            assert status("bob")["status"] == "PROCESSING"
            assert status("done_1")["status"] == "exists"
            eventually(lambda: status("gone_1")["status"] == "NOT_FOUND")
            # The miss path reads Postgres as the API's role.
            assert status("never_seen")["status"] == "NOT_FOUND"
            projector.stop()
            # Without the generation marker the API counts positions in Postgres.
            redis.Redis.from_url(redis_server_url).delete(f"{key_prefix}@generation{{{key_prefix}}}")
            assert status("mike_1")["queue_position"] == 1
            assert status("anna_2")["queue_position"] == 3
    finally:
        api.stop()
        projector.stop()
    for command in (["resync", "--workers", "2"], ["verify", "--settle", "0"]):
        done = run_cli(ours["projector"], *command)
        assert done.returncode == 0, done.stdout + done.stderr
    assert hits(url) == []


_VULNERABLE_CAPTURE = """
CREATE OR REPLACE FUNCTION profile_status_capture_v1() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE newest BIGINT;
BEGIN
    WITH logged AS (
        INSERT INTO profile_status_changes_v1 (username, source)
        SELECT DISTINCT lower(username), TG_TABLE_NAME FROM new_rows RETURNING id
    ) SELECT max(id) INTO newest FROM logged;
    PERFORM pg_notify('profile_status_v1', newest::text);
    RETURN NULL;
END;
$$
"""


def test_migrate_repairs_an_install_the_attack_worked_on(
    database_url: str, roles: Roles, settings: Settings
) -> None:
    # As the issue found it: the search path migrate ran with, pinned, and lower() unqualified.
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SET search_path = \"$user\", public")
        admin.execute(_VULNERABLE_CAPTURE)  # type: ignore[arg-type]
        admin.execute(f'GRANT INSERT ON queue TO "{roles.writer}"')
    plant(database_url, roles)
    writer = as_role(database_url, roles.writer)
    write_as(writer, _INSERT, "before", "HIGH", "PENDING", "r-before", None)
    superuser = conninfo_to_dict(database_url).get("user") or "postgres"
    assert ("lower(varchar)", superuser) in hits(database_url), "the attack no longer reproduces"

    assert run_migrate(settings).returncode == 0
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("DELETE FROM public.attack_hits")
    write_as(writer, _INSERT, "After", "HIGH", "PENDING", "r-after", None)
    assert hits(database_url) == []
    with psycopg.connect(database_url, autocommit=True) as admin:
        logged = [r[0] for r in admin.execute("SELECT username FROM profile_status_changes_v1 ORDER BY id").fetchall()]
    assert logged[-1] == "after"


def test_a_temporary_table_named_like_the_change_log_swallows_nothing(
    database_url: str, roles: Roles, db: psycopg.Connection
) -> None:
    db.execute(f'GRANT INSERT ON queue TO "{roles.writer}"')
    db.execute(f'GRANT TEMPORARY ON DATABASE "{conninfo_to_dict(database_url)["dbname"]}" TO "{roles.writer}"')
    with psycopg.connect(as_role(database_url, roles.writer), autocommit=True) as writer:
        writer.execute(
            "CREATE TEMPORARY TABLE profile_status_changes_v1"
            " (id bigserial, username text, source text, changed_at timestamptz DEFAULT pg_catalog.now())"
        )
        writer.execute(_INSERT, ("Temp_Writer", "LOW", "PENDING", "r-temp", None))
        swallowed = writer.execute("SELECT pg_catalog.count(*) FROM pg_temp.profile_status_changes_v1").fetchone()
    assert swallowed == (0,)
    logged = db.execute("SELECT username FROM public.profile_status_changes_v1").fetchall()
    assert ("temp_writer",) in logged


def test_the_capture_owner_may_only_append_to_the_log(
    database_url: str, roles: Roles, settings: Settings, db: psycopg.Connection
) -> None:
    assert run_migrate(settings, "--capture-owner", roles.capture).returncode == 0
    owner, definer, config = db.execute(
        "SELECT pg_catalog.pg_get_userbyid(proowner), prosecdef, proconfig FROM pg_catalog.pg_proc"
        " WHERE oid = 'public.profile_status_capture_v1()'::regprocedure"
    ).fetchone() or (None, None, None)
    assert (owner, definer) == (roles.capture, True)
    assert config == ["search_path=pg_catalog, public, pg_temp"]
    privileges = db.execute(
        "SELECT table_name, privilege_type FROM information_schema.role_table_grants WHERE grantee = %s",
        (roles.capture,),
    ).fetchall()
    assert privileges == []  # no table-wide privilege at all: columns only
    columns = db.execute(
        "SELECT column_name, privilege_type FROM information_schema.column_privileges"
        " WHERE grantee = %s ORDER BY 1, 2",
        (roles.capture,),
    ).fetchall()
    assert columns == [("id", "SELECT"), ("source", "INSERT"), ("username", "INSERT")]
    assert not db.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", (roles.capture,)).fetchone()[0]  # type: ignore[index]
    # Still captured, through the new owner; a second migrate changes nothing.
    assert run_migrate(settings, "--capture-owner", roles.capture).returncode == 0
    db.execute(_INSERT, ("Owned", "LOW", "PENDING", "r-own", None))
    assert db.execute("SELECT count(*) FROM profile_status_changes_v1 WHERE username = 'owned'").fetchone() == (1,)
