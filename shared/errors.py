"""The errors profile-status reports to operators. Each docstring is its default message."""

from __future__ import annotations


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
