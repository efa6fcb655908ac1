"""No password of any connection string form reaches a message or a log line."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from shared import logs
from shared.errors import redact_secrets, redacted

SECRET = "Zq7-secret_PW"
# (connection string holding SECRET, text that must stay readable)
FORMS = [
    (f"postgresql://app:{SECRET}@db:5432/app", "postgresql://app:***@db:5432/app"),
    (f"postgres://app:{SECRET}@db/app?sslmode=require", "@db/app?sslmode=require"),
    (f"postgresql://app:{SECRET}@h1:5432,h2:5433/app?target_session_attrs=read-write", "@h1:5432,h2:5433/app"),
    (f"postgresql://app@db/app?password={SECRET}&sslmode=require", "&sslmode=require"),
    (f"postgresql://db/app?sslmode=require&password={SECRET}", "postgresql://db/app?sslmode=require"),
    (f"postgresql:///app?host=/var/run/postgresql&password={SECRET}", "host=/var/run/postgresql"),
    (f"host=db user=app password={SECRET} dbname=app", "user=app password=*** dbname=app"),
    (f"host=db password = '{SECRET} with space\\'s' dbname=app", "dbname=app"),
    (f"host=db password='{SECRET}'", "host=db"),
    (f"host=db sslpassword={SECRET} sslkey=/k.pem", "sslkey=/k.pem"),
    (f"redis://:{SECRET}@cache:6379/0", "redis://:***@cache:6379/0"),
    (f"rediss://:{SECRET}@cache:6380/0?ssl_ca_certs=/ca.pem", "@cache:6380/0?ssl_ca_certs=/ca.pem"),
    (f"redis://projector:{SECRET}@cache:6379/0", "redis://projector:***@cache:6379/0"),
    (f"redis://cache:6379/0?password={SECRET}", "redis://cache:6379/0?password=***"),
    # URL-encoded, and a raw `@` / `/` that an operator forgot to encode.
    ("postgresql://app:Zq7%40se%2Fcret%25PW@db/app", "@db/app"),
    (f"postgresql://app:{SECRET}@raw/slash@db/app", "@db/app"),
]


@pytest.mark.parametrize(("dsn", "kept"), FORMS)
def test_every_form_loses_its_password(dsn: str, kept: str) -> None:
    in_messages = (dsn, f"cannot reach PostgreSQL at {dsn} within 10 s", f"connecting with '{dsn}'")
    for text in (*in_messages, repr({"url": dsn})):
        clean = redact_secrets(text)
        assert SECRET not in clean and "Zq7%40se" not in clean, clean
        assert kept.replace("***", "") in clean.replace("***", "")
    for text in in_messages:  # a message redacted twice (a redacted URL in a logged line) stays as it was
        assert redact_secrets(redact_secrets(text)) == redact_secrets(text)
    assert SECRET not in redacted(dsn)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://app@db/app",
        "redis://cache:6379/0",
        "host=db user=app passfile=/home/app/.pgpass dbname=app",
        "user mike_1 has 12 followers",
    ],
)
def test_strings_without_a_password_are_kept(text: str) -> None:
    assert redact_secrets(text) == text


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put the root logger and uvicorn's back as they were (logs.configure replaces them)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    uvicorn = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access")}
    yield
    root.handlers[:], root.level = handlers, level
    for name, (kept, propagate) in uvicorn.items():
        logging.getLogger(name).handlers[:] = kept
        logging.getLogger(name).propagate = propagate


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_every_part_of_every_log_line_is_masked(
    restored_logging: None, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    logs.configure("DEBUG", json=as_json)
    for dsn, _ in FORMS:
        log = logging.getLogger("tests.redaction")
        log.warning("cannot reach %s", dsn, extra={"event": "x", "url": dsn, "urls": [dsn]})
        try:
            raise ConnectionError(f"connection to {dsn} failed")
        except ConnectionError:
            log.exception("failed")
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        log.info("where", stack_info=True, extra={"dsn": dsn})
    lines = out.getvalue()
    assert lines.count("Traceback") == 2 * len(FORMS)
    assert SECRET not in lines and "Zq7%40se" not in lines
    if as_json:
        records = [json.loads(line) for line in lines.splitlines() if line.startswith("{")]
        assert {r["logger"] for r in records} == {"tests.redaction", "uvicorn.error"}
