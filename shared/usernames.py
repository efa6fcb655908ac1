"""Username validation and normalization, exactly as the contract's 400 rules order them."""

from __future__ import annotations

import re

MAX_USERNAME_LENGTH = 30
_VALID = re.compile(r"[A-Za-z0-9._]+")


class InvalidUsername(ValueError):
    """The username cannot name a profile; the message is the API's 400 `detail`."""


def normalize_username(raw: str) -> str:
    """Return the canonical (lower-cased) form of `raw`, or raise `InvalidUsername`.

    One leading `@` is removed first; then the checks run in the contract's order:
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

