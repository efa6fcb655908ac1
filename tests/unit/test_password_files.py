"""Passwords from files (Docker secrets) go into the connection strings whatever their characters."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from psycopg.conninfo import conninfo_to_dict

from profile_status.cli import EXIT_CANNOT_VERIFY, EXIT_FAILED, main
from shared.settings import Settings

PASSWORDS = ["plain", "p@ss:w/rd%?#&=+ é'\"\\", " spaces around "]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(
    "url",
    ["postgresql://app@db:5432/app?sslmode=require", "postgresql://app:old@db1,db2/app", "host=db user=app dbname=app"],
)
def test_the_database_password_file_wins(tmp_path: Path, url: str, password: str) -> None:
    secret = tmp_path / "pg"
    secret.write_text(password + "\n")
    settings = Settings(database_url=url, database_password_file=secret)
    parts = conninfo_to_dict(settings.database_url)
    assert parts["password"] == password and parts["user"] == "app"


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(
    ("url", "user"),
    [("redis://api@cache:6379/0", "api"), ("rediss://:old@cache:6380/1?ssl_ca_certs=/ca.pem", None), ("redis://cache", None)],
)
def test_the_redis_password_file_wins(tmp_path: Path, url: str, user: str | None, password: str) -> None:
    secret = tmp_path / "redis"
    secret.write_text(password + "\n\n")  # every trailing newline goes, as in `$(cat file)`
    parsed = redis.connection.parse_url(Settings(redis_url=url, redis_password_file=secret).redis_url)
    assert parsed["password"] == password
    assert parsed.get("username") == user
    assert parsed["host"] == "cache"


def test_a_missing_secret_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PROFILE_STATUS_REDIS_PASSWORD_FILE", str(tmp_path / "absent"))
    assert main(["migrate"]) == EXIT_FAILED
    assert main(["verify"]) == EXIT_CANNOT_VERIFY  # verify tells "could not check" from "differences"
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("profile-status: error: invalid configuration") and "absent" in last
