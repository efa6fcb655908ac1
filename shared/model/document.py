"""The status document stored in Redis: clock-independent facts, rendered per request.

A document holds what Postgres said at one snapshot (`version`); everything that
depends on the clock or on other users' jobs (durations, stage, ETA, queue
position) is computed when it is read, by `shared.model.render`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1
# orjson writes UTC as "Z", as pydantic does; everything else it writes alike too
# (offsets, microseconds only when non-zero, UTF-8 strings, the same escapes).
_JSON_OPTIONS = orjson.OPT_UTC_Z


class State(StrEnum):
    """Which of the contract's three branches answers for a username."""

    EXISTS = "exists"
    QUEUED = "queued"
    NOT_FOUND = "not_found"


class ProfileFacts(BaseModel):
    """The answering `primary_profiles` row (the most recently updated one)."""

    model_config = ConfigDict(frozen=True)

    created_at: datetime | None
    last_scraped_at: datetime | None
    followers_count: int | None
    posts_count: int | None


class QueueFacts(BaseModel):
    """The username's most recent `queue` row."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: str | None
    priority: str | None
    attempts: int
    request_id: str | None
    timestamp: datetime | None
    last_attempt: datetime | None
    error_message: str | None
    # Member of the active-queue sorted set while PENDING/PROCESSING, else None;
    # its rank there is the number of active rows ahead.
    queue_member: str | None


# Every document's JSON starts with this, its version's digits right after it: `version` is the
# model's first field. The cluster's write_document.lua receives it as an argument and reads the
# held version there only, so no other field's name or value can be taken for it.
VERSION_PREFIX = '{"version":'


def version_of_json(raw: bytes | str) -> int | None:
    """The version of a stored document's JSON, read as write_document.lua reads it; None if absent."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if not text.startswith(VERSION_PREFIX):
        return None
    digits = text[len(VERSION_PREFIX) :].split(",", 1)[0]
    return int(digits) if digits.isdigit() else None


def _nested(value: object) -> dict[str, Any]:
    """orjson's fallback for the nested facts models: their fields, in declaration order."""
    if isinstance(value, BaseModel):
        return value.__dict__
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class StatusDocument(BaseModel):
    """The value of Redis key `status:{username}` (JSON). See `shared/model/schema/status-document.json`."""

    model_config = ConfigDict(frozen=True)

    # Orders documents by the Postgres snapshot they were read from; Redis keeps only newer ones.
    # The first field, so that a script can read it without parsing the rest (VERSION_PREFIX).
    version: int
    schema_version: Literal[1] = SCHEMA_VERSION
    username: str
    projected_at: datetime
    # Hash of the facts below: equal digests mean an identical status.
    digest: str
    state: State
    profile: ProfileFacts | None = None
    queue: QueueFacts | None = None

    def to_json(self) -> bytes:
        """The document's JSON: byte for byte `model_dump_json().encode()`, built several times faster with orjson.

        This is what the store writes. Falls back to pydantic for what orjson
        refuses (integers beyond 64 bits).
        """
        try:
            return orjson.dumps(self.__dict__, default=_nested, option=_JSON_OPTIONS)
        except orjson.JSONEncodeError:
            return self.model_dump_json().encode()


def facts_json(fields: dict[str, Any]) -> bytes:
    """The JSON of a facts model's fields (in declaration order), as its `model_dump_json()` would write it."""
    return orjson.dumps(fields, option=_JSON_OPTIONS)


Model = TypeVar("Model", bound=BaseModel)
_new = object.__new__
_set_fields = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_ALL_FIELDS: dict[type[BaseModel], set[str]] = {}


def trusted(cls: type[Model], fields: dict[str, Any]) -> Model:
    """`cls.model_construct(**fields)` for a frozen model and a dict of every field in declaration order.

    What model_construct does, without its per-field loop over aliases and
    defaults: the dict becomes the instance's `__dict__` (so do not reuse it),
    and all instances of `cls` share one set of field names as "fields set"
    (pydantic changes that set only on assignment, which a frozen model
    refuses, and copies it before `model_copy(update=...)` adds to it).
    No validation: only for values that come typed from our own rows.
    """
    m = _new(cls)
    _set_fields(m, fields)
    _set_fields_set(m, _ALL_FIELDS.get(cls) or _fields_of(cls))
    _set_extra(m, None)
    _set_private(m, None)
    return m


def _fields_of(cls: type[BaseModel]) -> set[str]:
    if not cls.model_config.get("frozen"):
        raise TypeError(f"{cls.__name__} is not frozen: its instances may not share a fields set")
    return _ALL_FIELDS.setdefault(cls, set(cls.__pydantic_fields__))
