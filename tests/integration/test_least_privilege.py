"""The compose deployment's roles and ACL users, applied to real servers: enough to run, and no more.

Without Docker, the same files do the same work here: `deploy/postgres/roles.sh`
(with this machine's psql) creates the roles in a fresh database, `profile-status
migrate` runs as the owner with the compose file's own flags, and
`deploy/redis/start.sh` starts a redis-server of this test's own with
`deploy/redis/users.acl`. Passwords come from files, as Docker secrets, and are
made of the characters that break URLs. The projector, the API, `verify` and
`resync` then run as their users through everything they do (polls, misses
written back, streams, the overview, a script cache flush, a full Redis flush);
Redis must log no denial. Then each user tries what it must not do.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from demo.embedded import free_port
from shared.settings import Settings
from tests.integration.cli_helpers import run_cli
from tests.integration.rows import add_job, add_profile
from tests.integration.stack import ApiThread, ProjectorThread, eventually

ROOT = Path(__file__).resolve().parents[2]
LISTING = ROOT / "artifacts" / "least-privilege.txt"
NASTY = "p@ss:w/rd%?#&= 'x\"y\\z é"  # every character a URL or a shell could trip on
PG_DEFAULTS = {
    "PROFILE_STATUS_OWNER_ROLE": "profile_status",
    "PROFILE_STATUS_PROJECTOR_ROLE": "profile_status_projector",
    "PROFILE_STATUS_API_ROLE": "profile_status_api",
    "PROFILE_STATUS_CAPTURE_ROLE": "profile_status_capture",
}


@dataclass(frozen=True)
class Deployment:
    """One least-privilege deployment on the test servers."""

    server_url: str
    database: str
    roles: dict[str, str]  # kind -> role name
    secrets: Path
    redis_port: int

    def database_url(self, kind: str) -> str:
        """The URL a process of `kind` would be given: its role, no password."""
        return make_conninfo(self.server_url, dbname=self.database, user=self.roles[kind], password=None)

    def settings(self, kind: str, **extra: Any) -> Settings:
        """Settings as compose gives them to `kind` (projector or api): URLs without passwords, secret files."""
        return Settings(
            database_url=self.database_url(kind),
            database_password_file=self.secrets / f"pg_{kind}_password",
            redis_url=f"redis://profile_status_{kind}@127.0.0.1:{self.redis_port}/0",
            redis_password_file=self.secrets / f"redis_{kind}_password",
            heartbeat_interval_s=0.2,
            safety_poll_s=1.0,
            startup_timeout_s=5.0,
            **extra,
        )

    def admin_redis(self) -> redis.Redis:
        """The operators' Redis user."""
        return redis.Redis(port=self.redis_port, username="admin", password=NASTY + "admin")


def _secrets(folder: Path) -> Path:
    folder.mkdir()
    for name in ("postgres", "pg_owner", "pg_projector", "pg_api", "redis_admin", "redis_projector", "redis_api"):
        (folder / f"{name}_password").write_text(NASTY + name.split("_")[-1] + "\n")
    return folder


@pytest.fixture
def deployment(postgres_server_url: str, tmp_path: Path) -> Iterator[Deployment]:
    """Roles and a database made by roles.sh, and a Redis started by start.sh."""
    psql, server = shutil.which("psql"), shutil.which("redis-server")
    if not psql or not server:
        pytest.skip("needs psql and redis-server on PATH to run deploy/postgres/roles.sh and deploy/redis/start.sh")
    suffix = uuid.uuid4().hex[:6]
    roles = {kind: f"{default}_{suffix}" for kind, default in zip(("owner", "projector", "api", "capture"), PG_DEFAULTS.values(), strict=True)}
    database = f"ps_lp_{suffix}"
    secrets = _secrets(tmp_path / "secrets")
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')  # as the postgres image does (POSTGRES_DB)
    try:
        yield from _deploy(postgres_server_url, psql, server, database, roles, secrets, tmp_path)
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for name in roles.values():
                admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def _deploy(
    postgres_server_url: str, psql: str, server: str, database: str, roles: dict[str, str], secrets: Path, tmp_path: Path
) -> Iterator[Deployment]:
    server_parts = conninfo_to_dict(postgres_server_url)
    env = {
        "PATH": str(Path(psql).parent),
        "PGHOST": str(server_parts.get("host", "127.0.0.1")),
        "PGPORT": str(server_parts.get("port", "5432")),
        "PGUSER": str(server_parts.get("user", "postgres")),
        "PGDATABASE": str(server_parts.get("dbname", "postgres")),
        "PROFILE_STATUS_DATABASE": database,
        **{variable: roles[kind] for variable, kind in zip(PG_DEFAULTS, roles, strict=True)},
        "OWNER_PASSWORD_FILE": str(secrets / "pg_owner_password"),
        "PROJECTOR_PASSWORD_FILE": str(secrets / "pg_projector_password"),
        "API_PASSWORD_FILE": str(secrets / "pg_api_password"),
    }
    for _ in range(2):  # idempotent: the compose service runs on every `up`
        done = subprocess.run(["sh", str(ROOT / "deploy/postgres/roles.sh")], env=env, capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, done.stderr
    redis_proc, port = _start_redis(server, secrets, tmp_path)
    try:
        yield Deployment(postgres_server_url, database, roles, secrets, port)
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)


def _start_redis(server: str, secrets: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """deploy/redis/start.sh, with a stand-in for the image's entrypoint."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    entrypoint = bin_dir / "docker-entrypoint.sh"
    entrypoint.write_text(f'#!/bin/sh\nshift\nexec "{server}" "$@"\n')  # `redis-server ARGS` -> this binary
    entrypoint.chmod(0o755)
    port = free_port()
    proc = subprocess.Popen(
        ["sh", str(ROOT / "deploy/redis/start.sh"), "redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", str(tmp_path)],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "REDIS_ACL_FILE": str(tmp_path / "users.acl"),
            "REDIS_ADMIN_PASSWORD_FILE": str(secrets / "redis_admin_password"),
            "REDIS_PROJECTOR_PASSWORD_FILE": str(secrets / "redis_projector_password"),
            "REDIS_API_PASSWORD_FILE": str(secrets / "redis_api_password"),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )

    def pongs() -> bool:
        assert proc.poll() is None, "redis-server exited (see deploy/redis/users.acl)"
        try:
            return bool(redis.Redis(port=port).ping())  # the default user may ping, and no more
        except redis.ConnectionError:
            return False

    try:
        eventually(pongs, timeout=10)
    except BaseException:
        proc.terminate()
        proc.wait(10)
        raise
    assert NASTY not in (tmp_path / "users.acl").read_text(), "the ACL file holds hashes, not passwords"
    return proc, port


def _compose_migrate_args(roles: dict[str, str]) -> list[str]:
    """The migrate service's command line, with this test's role names."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    renamed = {default: roles[kind] for kind, default in zip(roles, PG_DEFAULTS.values(), strict=True)}
    return [renamed.get(word, word) for word in compose["services"]["migrate"]["command"]]


def test_the_compose_deployment_runs_on_least_privilege(deployment: Deployment) -> None:
    owner = Settings(
        database_url=deployment.database_url("owner"), database_password_file=deployment.secrets / "pg_owner_password"
    )
    migrated = run_cli(owner, *_compose_migrate_args(deployment.roles),
                       PROFILE_STATUS_DATABASE_PASSWORD_FILE=str(deployment.secrets / "pg_owner_password"))
    assert migrated.returncode == 0, migrated.stderr
    writer = psycopg.connect(make_conninfo(deployment.server_url, dbname=deployment.database), autocommit=True)
    add_job(writer, "Least_1", status="PENDING")
    add_job(writer, "least_2", status="PROCESSING")
    add_profile(writer, "least_3")
    admin = deployment.admin_redis()
    projector = ProjectorThread(deployment.settings("projector")).start()
    # Without the process cache every poll asks Redis (and the script cache flush below shows).
    api = ApiThread(deployment.settings("api", local_cache=False, public_recent_usernames=True)).start()
    try:
        with api.client() as http:
            def status(name: str) -> str:
                response = http.get(f"/api/profile/{name}/status")
                assert response.status_code == 200, (response.text, _denials(admin))
                return str(response.json()["data"]["status"])

            eventually(lambda: status("least_1") == "PENDING")
            assert status("least_2") == "PROCESSING" and status("least_3") == "exists"
            assert status("never_heard_of") == "NOT_FOUND"  # a miss, written back by the API's user
            assert admin.exists("status:never_heard_of")
            with http.stream("GET", "/api/profile/least_1/status/stream") as stream:
                assert next(line for line in stream.iter_lines() if line.startswith("event:")) == "event: status"
            assert http.get("/api/queue/status").json()["data"]["total_active"] == 2
            assert set(http.get("/api/queue/recent").json()["data"]["usernames"]) >= {"least_1", "least_2", "least_3"}
            eventually(lambda: http.get("/readyz").status_code == 200)
            assert http.get("/metrics").status_code == 200
            # A restarted Redis has no scripts: each user loads what it runs.
            admin.script_flush()
            assert status("least_3") == "exists"
            writer.execute("UPDATE queue SET status = 'COMPLETED' WHERE username = 'Least_1'")
            eventually(lambda: status("least_1") == "COMPLETED")
            # Redis lost everything: the projector rebuilds, the API meanwhile counts in Postgres.
            admin.flushall()
            eventually(lambda: status("least_2") == "PROCESSING" and admin.exists("status:least_2"))
            eventually(lambda: http.get("/readyz").json().get("projection_complete") is True)
    finally:
        api.stop()
        projector.stop()
        writer.close()
    projector_env = {
        "PROFILE_STATUS_DATABASE_PASSWORD_FILE": str(deployment.secrets / "pg_projector_password"),
        "PROFILE_STATUS_REDIS_PASSWORD_FILE": str(deployment.secrets / "redis_projector_password"),
    }
    as_projector = deployment.settings("projector").model_copy(
        update={"database_url": deployment.database_url("projector"),
                "redis_url": f"redis://profile_status_projector@127.0.0.1:{deployment.redis_port}/0"}
    )
    for command in (["resync"], ["verify", "--settle", "0"]):
        done = run_cli(as_projector, *command, **projector_env)
        assert done.returncode == 0, done.stdout + done.stderr
    assert _denials(admin) == [], "a user lacks a permission it needs"

    # What a compose deployment ends up with, for people to read (docs/security.md quotes it).
    LISTING.parent.mkdir(parents=True, exist_ok=True)
    LISTING.write_text("\n".join([*_role_listing(deployment), "", *_acl_listing(admin)]) + "\n")


def _denials(admin: redis.Redis) -> list[tuple[str, str, str]]:
    """What Redis refused our users: (user, reason, command or key)."""
    return [(e["username"], e["reason"], e["object"]) for e in admin.acl_log() if e["username"] != "admin"]


def _role_listing(d: Deployment) -> list[str]:
    """`\\du` of our roles, and what each may do in the database (as applied here)."""
    with psycopg.connect(make_conninfo(d.server_url, dbname=d.database), autocommit=True) as conn:
        roles = conn.execute(
            "SELECT r.rolname, r.rolsuper, r.rolcanlogin, r.rolcreaterole, r.rolcreatedb,"
            " ARRAY(SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.roleid WHERE a.member = r.oid)"
            " FROM pg_roles r WHERE r.rolname = ANY(%s) ORDER BY 1",
            (list(d.roles.values()),),
        ).fetchall()
        tables = conn.execute(
            "SELECT grantee, table_name, string_agg(privilege_type, ', ' ORDER BY privilege_type)"
            " FROM information_schema.role_table_grants WHERE grantee = ANY(%s) GROUP BY 1, 2 ORDER BY 1, 2",
            (list(d.roles.values()),),
        ).fetchall()
        columns = conn.execute(
            "SELECT grantee, table_name, column_name, privilege_type FROM information_schema.column_privileges"
            " WHERE grantee = %s ORDER BY 2, 3",
            (d.roles["capture"],),
        ).fetchall()
        database = conn.execute("SELECT datacl::text FROM pg_database WHERE datname = current_database()").fetchone()
        schema = conn.execute("SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'").fetchone()
        sequence = conn.execute("SELECT relacl::text FROM pg_class WHERE relname = 'profile_status_changes_v1_id_seq'").fetchone()
        function = conn.execute(
            "SELECT pg_get_userbyid(proowner), prosecdef, proconfig FROM pg_proc WHERE proname = 'profile_status_capture_v1'"
        ).fetchone()
    out = ["role                                  super login createrole createdb member of"]
    out += [f"{n:38s} {s!s:5s} {lg!s:5s} {cr!s:10s} {cd!s:8s} {m}" for n, s, lg, cr, cd, m in roles]
    out += [f"GRANT {p} ON {t} TO {g}" for g, t, p in tables]
    out += [f"GRANT {p} ({c}) ON {t} TO {g}" for g, t, c, p in columns]
    out += [f"database ACL: {database[0] if database else None}", f"schema public ACL: {schema[0] if schema else None}",
            f"change log id sequence ACL: {sequence[0] if sequence else None}", f"capture function (owner, security definer, config): {function}"]
    return out


def _acl_listing(admin: redis.Redis) -> list[str]:
    return [line.decode() if isinstance(line, bytes) else str(line) for line in admin.execute_command("ACL", "LIST")]


def test_each_role_and_user_is_refused_what_it_must_not_do(deployment: Deployment) -> None:
    owner = Settings(
        database_url=deployment.database_url("owner"), database_password_file=deployment.secrets / "pg_owner_password"
    )
    assert run_cli(owner, *_compose_migrate_args(deployment.roles),
                   PROFILE_STATUS_DATABASE_PASSWORD_FILE=str(deployment.secrets / "pg_owner_password")).returncode == 0
    forbidden = {
        "api": [
            "INSERT INTO queue (username, source, priority, request_id) VALUES ('x', 's', 'LOW', 'r')",
            "UPDATE queue SET status = 'FAILED'",
            "DELETE FROM primary_profiles",
            "SELECT * FROM profile_status_changes_v1",
            "CREATE TABLE public.mine (x int)",
            "CREATE TEMPORARY TABLE mine (x int)",
            "CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE sql AS 'SELECT 1::text'",
        ],
        "projector": [
            "INSERT INTO queue (username, source, priority, request_id) VALUES ('x', 's', 'LOW', 'r')",
            "UPDATE profile_status_changes_v1 SET username = 'x'",
            "INSERT INTO profile_status_changes_v1 (username, source) VALUES ('x', 'y')",
            "TRUNCATE queue",
            "CREATE TABLE public.mine (x int)",
            "CREATE TEMPORARY TABLE mine (x int)",
        ],
        "owner": ["CREATE ROLE someone_else", "ALTER ROLE CURRENT_USER SUPERUSER"],
    }
    for kind, statements in forbidden.items():
        with psycopg.connect(deployment.database_url(kind), autocommit=True) as conn:
            for statement in statements:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)  # type: ignore[arg-type]
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(deployment.database_url("capture")).close()

    port = deployment.redis_port
    users = {
        "api": redis.Redis(port=port, username="profile_status_api", password=NASTY + "api"),
        "projector": redis.Redis(port=port, username="profile_status_projector", password=NASTY + "projector"),
        "default": redis.Redis(port=port),
    }
    refused: dict[str, list[tuple[Any, ...]]] = {
        "api": [
            ("SET", "status:@heartbeat", "{}"),
            ("DEL", "status:@rebuilding{status:}"),
            ("HSET", "status:@estimates", "x", "1"),
            ("INCRBY", "status:@completions:1", "1"),
            ("GET", "other:key"),
            ("FLUSHDB",),
            ("CONFIG", "GET", "*"),
            ("KEYS", "*"),
            ("SCRIPT", "FLUSH"),
            ("EVAL", "return 1", "0"),
            ("PUBLISH", "other-channel", "x"),
            ("ACL", "WHOAMI"),
        ],
        "projector": [
            ("GET", "other:key"),
            ("FLUSHALL",),
            ("FLUSHDB",),
            ("CONFIG", "SET", "maxmemory", "1"),
            ("KEYS", "*"),
            ("SCRIPT", "FLUSH"),
            ("ACL", "LIST"),
            ("PUBLISH", "other-channel", "x"),
            ("SHUTDOWN",),
        ],
        "default": [("GET", "status:x"), ("SET", "status:x", "1"), ("INFO",), ("CLIENT", "LIST")],
    }
    for name, commands in refused.items():
        for command in commands:
            with pytest.raises(redis.exceptions.NoPermissionError):
                users[name].execute_command(*command)
    assert users["default"].ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port, username="profile_status_api", password="guess").ping()
