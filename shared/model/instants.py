"""Timestamps as Postgres holds them, including those Python's `datetime` cannot. Pure.

A `timestamptz` column may hold `infinity`, `-infinity`, dates before Christ
and instants after the year 9999. They are data: rows keep their order by them,
and they render as null. `OutOfRange` stands for such a value, placed exactly
on the time line by its microseconds since the Unix epoch (±inf for the
infinities), so a row with one sorts where Postgres sorts it.

`expressible` is the one test of whether a time may appear in a document: one
that passes stays in range through every addition the renderer makes (stage
boundaries, retry back-off, the freshness window), so rendering never overflows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Documents carry times in years 2..9998: a day's margin either side of what
# `datetime` holds, so that adding or subtracting the renderer's intervals is safe.
_FIRST_YEAR, _LAST_YEAR = 2, 9998
_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True, slots=True)
class OutOfRange:
    """A timestamp Postgres holds that `datetime` cannot: its place in time, and its text for logs."""

    epoch_us: int | float  # microseconds since 1970-01-01 UTC (exact); -inf / inf for the infinities
    text: str


Instant = datetime | OutOfRange


def epoch_us(ts: Instant) -> int | float:
    """Microseconds since the Unix epoch (a naive datetime counts as UTC); ±inf for the infinities."""
    if isinstance(ts, OutOfRange):
        return ts.epoch_us
    # Datetime subtraction is exact in every year (a timedelta is whole days,
    # seconds and microseconds), and cheapest when `ts` is already in UTC.
    delta = (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


_FIRST_US = -62135596800 * 1_000_000  # 0001-01-01
_LAST_US = 253402300799999999  # 9999-12-31 23:59:59.999999


def in_range(value: OutOfRange) -> Instant:
    """A parsed instant as a `datetime` (UTC) where one can hold it, else as it is."""
    us = value.epoch_us
    if isinstance(us, int) and _FIRST_US <= us <= _LAST_US:
        return _EPOCH + timedelta(microseconds=us)
    return value


def expressible(ts: Instant | None) -> datetime | None:
    """`ts` in UTC if a document may carry it, else None (an infinity, or too near either end of the calendar)."""
    if ts is None or isinstance(ts, OutOfRange):
        return None
    try:
        utc = ts.astimezone(UTC)
    except OverflowError:  # within a day of year 1 or 9999, in a time zone that pushes it over
        return None
    return utc if _FIRST_YEAR <= utc.year <= _LAST_YEAR else None


def degraded(ts: Instant | None) -> bool:
    """A value is present but a document cannot show it."""
    return ts is not None and expressible(ts) is None


# What Postgres prints for a timestamptz beyond `datetime`, with DateStyle ISO:
# "294276-12-31 23:59:59.999999+00", "4713-01-01 00:00:00+00 BC", "0044-03-15 12:00:00+00:53:28 BC".
_PG_TIMESTAMP = re.compile(
    r"(\d+)-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
    r"(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?"
)


def parse_postgres(text: str) -> OutOfRange:
    """The instant a Postgres timestamp text names, for values `datetime` cannot hold.

    Years run on the proleptic Gregorian calendar, as in Postgres: 1 BC is year 0,
    2 BC year -1. A text without an offset is UTC (a `timestamp` column).
    Raises ValueError for anything else.
    """
    stripped = text.strip()
    if stripped == "infinity":
        return OutOfRange(math.inf, stripped)
    if stripped == "-infinity":
        return OutOfRange(-math.inf, stripped)
    m = _PG_TIMESTAMP.fullmatch(stripped)
    if m is None:
        raise ValueError(f"not a timestamp: {text!r}")
    year, month, day, hh, mm, ss, frac, sign, oh, om, osec, bc = m.groups()
    y = 1 - int(year) if bc else int(year)
    days = _days_from_civil(y, int(month), int(day))
    seconds = int(hh) * 3600 + int(mm) * 60 + int(ss)
    offset = int(oh or 0) * 3600 + int(om or 0) * 60 + int(osec or 0)
    if sign == "-":
        offset = -offset
    micros = days * _US_PER_DAY + (seconds - offset) * 1_000_000 + int((frac or "0").ljust(6, "0"))
    return OutOfRange(micros, stripped)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), any year."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
