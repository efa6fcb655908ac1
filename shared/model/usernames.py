"""Username validation and normalization, in the order of the 400 rules in docs/api.md."""

from __future__ import annotations

import re

MAX_USERNAME_LENGTH = 30
_VALID = re.compile(r"[A-Za-z0-9._]+")


class InvalidUsername(ValueError):
    """The username cannot name a profile; the message is the API's 400 `detail`."""


def normalize_username(raw: str) -> str:
    """Return the canonical (lower-cased) form of `raw`, or raise `InvalidUsername`.

    One leading `@` is removed first; then the checks run in that order:
    empty, too long, invalid characters.
    """
    name = raw[1:] if raw.startswith("@") else raw
    if not name.strip():
        raise InvalidUsername("Username is required")
    if len(name) > MAX_USERNAME_LENGTH:
        raise InvalidUsername(f"Username too long (max {MAX_USERNAME_LENGTH} characters)")
    if not _VALID.fullmatch(name):
        raise InvalidUsername("Invalid characters in username")
    return name.lower()



MAX_FOLLOWED = 50
_QUOTED_MAX = 40  # an offending entry is quoted this far in the message


def normalize_usernames(entries: list[str], limit: int = MAX_FOLLOWED) -> list[str]:
    """Normalize each entry as `normalize_username` does; duplicates after normalization collapse.

    Returns the distinct names in the order of their first entry, or raises
    `InvalidUsername` naming the first offending entry (1-based): invalid, or
    the first distinct name beyond `limit`.
    """
    if not entries:
        raise InvalidUsername("usernames is required: a comma-separated list of usernames")
    names: dict[str, None] = {}  # ordered set
    for number, raw in enumerate(entries, start=1):
        try:
            name = normalize_username(raw)
        except InvalidUsername as exc:
            raise InvalidUsername(f"{exc}: entry {number} of usernames ({_quoted(raw)})") from None
        if name not in names and len(names) >= limit:
            raise InvalidUsername(
                f"Too many usernames (max {limit}): entry {number} of usernames ({_quoted(raw)}) is name {limit + 1}"
            )
        names[name] = None
    return list(names)


def _quoted(raw: str) -> str:
    shown = raw if len(raw) <= _QUOTED_MAX else raw[:_QUOTED_MAX] + "…"
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
