"""How our sessions read values: every timestamp a table may hold, and the same formats in every session.

psycopg refuses timestamps Python's `datetime` cannot hold (`infinity`,
`-infinity`, dates before Christ, instants after 9999) with a DataError, which
would fail a whole batch over one row. The loaders below keep psycopg's fast
loader for everything else and turn those values into
`shared.model.instants.OutOfRange`, which orders rows exactly and renders as null.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import psycopg
from psycopg import AsyncConnection, adapters
from psycopg.adapt import Buffer, Loader
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import Format

from shared.model.instants import OutOfRange, parse_postgres

# Our sessions read times in UTC and in ISO format, whatever the database or role defaults
# are: psycopg parses only ISO, and UTC makes equal instants equal values.
SESSION_SETTINGS = {"DateStyle": "ISO", "TimeZone": "UTC"}
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC, where binary timestamps count from
_INT64 = struct.Struct("!q")
_PLUS_INFINITY, _MINUS_INFINITY = 2**63 - 1, -(2**63)


class _OutOfRangeText(Loader):
    """psycopg's own text loader for `base`, and `OutOfRange` where it gives up."""

    base = ""

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._load = adapters.get_loader(adapters.types[self.base].oid, Format.TEXT)(oid, context).load  # type: ignore[misc]

    def load(self, data: Buffer) -> Any:
        try:
            return self._load(data)
        except psycopg.DataError:
            return parse_postgres(bytes(data).decode())


class _OutOfRangeBinary(Loader):
    """psycopg's own binary loader for `base`, and `OutOfRange` where it gives up."""

    base = ""
    format = Format.BINARY

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._load = adapters.get_loader(adapters.types[self.base].oid, Format.BINARY)(oid, context).load  # type: ignore[misc]

    def load(self, data: Buffer) -> Any:
        try:
            return self._load(data)
        except psycopg.DataError:
            micros = _INT64.unpack(bytes(data))[0]
            if micros == _PLUS_INFINITY:
                return OutOfRange(math.inf, "infinity")
            if micros == _MINUS_INFINITY:
                return OutOfRange(-math.inf, "-infinity")
            return OutOfRange(micros + _PG_EPOCH_US, f"{micros + _PG_EPOCH_US} us since 1970")


class TimestamptzText(_OutOfRangeText):
    base = "timestamptz"


class TimestamptzBinary(_OutOfRangeBinary):
    base = "timestamptz"


class TimestampText(_OutOfRangeText):
    base = "timestamp"


class TimestampBinary(_OutOfRangeBinary):
    base = "timestamp"


def register_loaders(conn: AsyncConnection | psycopg.Connection) -> None:
    """Make `conn` read out-of-range timestamps as data (see the module docstring)."""
    for name, loaders in (("timestamptz", (TimestamptzText, TimestamptzBinary)), ("timestamp", (TimestampText, TimestampBinary))):
        for loader in loaders:
            conn.adapters.register_loader(name, loader)


def session_options(url: str) -> str:
    """libpq `options` for `url`: whatever it sets, then our session settings (applied at connect, no round trip)."""
    own = " ".join(f"-c {name}={value}" for name, value in SESSION_SETTINGS.items())
    theirs = str(conninfo_to_dict(url).get("options") or "")
    return f"{theirs} {own}".strip()
