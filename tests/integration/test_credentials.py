"""Least-privilege Postgres roles, and Redis over TLS with a password."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from demo.embedded import free_port
from shared.settings import Settings
from tests.integration.cli_helpers import run_migrate
from tests.integration.stack import ApiThread, ProjectorThread, eventually


@pytest.fixture
def roles(database_url: str) -> Iterator[dict[str, str]]:
    """Login roles for the projector, the API and an outside writer; dropped afterwards."""
    suffix = uuid.uuid4().hex[:6]
    names = {kind: f"ps_{kind}_{suffix}" for kind in ("projector", "api", "writer")}
    with psycopg.connect(database_url, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'CREATE ROLE "{name}" LOGIN')
        # A writer that knows nothing of profile-status: only the seed's table.
        admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON queue, primary_profiles TO "{names["writer"]}"')
    yield names
    with psycopg.connect(database_url, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'DROP OWNED BY "{name}"')
            admin.execute(f'DROP ROLE "{name}"')


def test_processes_run_under_least_privilege_roles(settings: Settings, roles: dict[str, str]) -> None:
    result = run_migrate(settings, "--projector-role", roles["projector"], "--api-role", roles["api"])
    assert result.returncode == 0, result.stderr
    as_role = {kind: make_conninfo(settings.database_url, user=name) for kind, name in roles.items()}
    projector = ProjectorThread(settings.model_copy(update={"database_url": as_role["projector"]})).start()
    api = ApiThread(settings.model_copy(update={"database_url": as_role["api"]})).start()
    try:
        with psycopg.connect(as_role["writer"], autocommit=True) as writer, api.client() as http:
            writer.execute("INSERT INTO queue (username, source, priority, request_id) VALUES ('least', 't', 'HIGH', 'r-least')")
            eventually(lambda: http.get("/api/profile/least/status").json()["data"]["status"] == "PENDING")
            writer.execute("UPDATE queue SET status = 'PROCESSING', last_attempt = now() WHERE username = 'least'")
            eventually(lambda: http.get("/api/profile/least/status").json()["data"]["status"] == "PROCESSING")
            # The miss path reads Postgres as the API's role.
            assert http.get("/api/profile/unknown_to_all/status").json()["data"]["status"] == "NOT_FOUND"
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with psycopg.connect(as_role["api"], autocommit=True) as api_conn:
                    api_conn.execute("DELETE FROM queue")
    finally:
        api.stop()
        projector.stop()


@pytest.fixture
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server speaking only TLS and requiring a password; its rediss:// URL."""
    server = shutil.which("redis-server")
    if not server or not shutil.which("openssl"):
        pytest.skip("needs a redis-server binary built with TLS, and openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no", "--requirepass", "s3cret", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        url = f"rediss://:s3cret@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        eventually(lambda: _pings(url, Path(cert)), timeout=10)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(url: str, cert: Path) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def test_rediss_with_a_password(settings: Settings, tls_redis: str, db: psycopg.Connection) -> None:
    ours = settings.model_copy(update={"redis_url": tls_redis})
    projector = ProjectorThread(ours).start()
    api = ApiThread(ours).start()
    try:
        db.execute("INSERT INTO queue (username, source, priority, request_id) VALUES ('secure', 't', 'LOW', 'r-sec')")
        with api.client() as http:
            eventually(lambda: http.get("/api/profile/secure/status").json()["data"]["status"] == "PENDING")
            assert http.get("/readyz").status_code == 200
    finally:
        api.stop()
        projector.stop()
