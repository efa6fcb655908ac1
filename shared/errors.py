"""The errors profile-status reports to operators. Each docstring is its default message."""

from __future__ import annotations

import asyncio
import re


class ProfileStatusError(Exception):
    """profile-status failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class PostgresUnavailable(ProfileStatusError):
    """PostgreSQL cannot be reached."""


class RedisUnavailable(ProfileStatusError):
    """Redis cannot be reached."""


def one_line(exc: BaseException) -> str:
    """An exception as one short line for logs and error messages (drivers print several)."""
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def redacted(url: str) -> str:
    """A connection string (URI or key=value) without its password, for messages."""
    return redact_secrets(url)


MASK = "***"
# `scheme://user:password@host...`: the password runs to the last `@` of the
# token (an unencoded `@` or `/` in it must not cut the match short).
_URI_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@'\"]*):[^\s'\"]*@(?P<tail>[^\s@'\"]*)")
# `?password=...` / `&password=...` in a URI's query: the value ends at `&` or `#`.
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:ssl)?pass(?:word|wd)?=)[^&#\s'\"]*", re.IGNORECASE)
# `password=...` in a libpq key=value string, quoted ('it\'s') or not; spaces may surround `=`.
_CONNINFO_PASSWORD = re.compile(
    r"(?P<key>(?<![\w?&.-])(?:ssl)?pass(?:word|wd)?\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|(?:\\.|[^\s\\])+?(?=['\"]?(?:[\s)\]},;]|$)))",
    re.IGNORECASE,
)


def redact_secrets(text: str) -> str:
    """`text` with the password of every connection string in it replaced by `***`.

    Covers URIs (`postgresql://u:pw@h1,h2/db`, `redis://:pw@h`, `rediss://u:pw@h`,
    URL-encoded or not), `?password=` and `&password=` query parameters, and
    libpq key=value strings (`password=pw`, `password = 'p w\\'d'`). Idempotent.
    """
    text = _URI_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@{m['tail']}", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", text)
    return _CONNINFO_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", text)


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop.

    redis-py may swallow a cancellation that lands mid-command (or turn it into a
    connection error): a loop that goes on after a command must check.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
