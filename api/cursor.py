"""`Last-Event-ID` of the two streams: which document versions a reconnecting client holds.

The single-name stream's `id:` is the document's version in decimal (the
contract's words). The multiplexed stream's is one cursor for its whole list:

    {list}.{base}.{d1}.{d2}...

`list` is 6 hex digits of a hash of the normalized names in order, so a cursor
is only read back against the list it was made for (EventSource reconnects to
the same URL; anything else is an unknown id). `base` is the smallest version
held, in base 36, and `dN` the N-th name's version less `base`, in base 36, or
empty while nothing has been sent for that name. The versions of one page's
names are close (they grow with Postgres' transaction counter), so 50 names fit
in a few hundred characters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

_DECIMAL = re.compile(r"[0-9]{1,30}")
_BASE36 = re.compile(r"[0-9a-z]{0,20}")  # versions stay below 2^96: 19 digits
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def parse_version(last_event_id: str | None) -> int | None:
    """The version a single-name stream's client holds (None: none, or an id we did not send)."""
    if last_event_id is None or not _DECIMAL.fullmatch(last_event_id.strip()):
        return None
    return int(last_event_id)


def encode(names: Sequence[str], versions: Sequence[int | None]) -> str:
    """The cursor for `names` whose client holds `versions` (None: nothing yet)."""
    held = [v for v in versions if v is not None]
    base = min(held) if held else 0
    deltas = ["" if v is None else _base36(v - base) for v in versions]
    return ".".join([_list_tag(names), _base36(base) if held else "", *deltas])


def decode(cursor: str | None, names: Sequence[str]) -> list[int | None]:
    """The versions a cursor says the client holds of `names`; none at all when it is not one of ours for them."""
    nothing: list[int | None] = [None] * len(names)
    if not cursor:
        return nothing
    parts = cursor.strip().split(".")
    if len(parts) != len(names) + 2 or parts[0] != _list_tag(names):
        return nothing
    base_text, deltas = parts[1], parts[2:]
    if not all(_BASE36.fullmatch(p) for p in (base_text, *deltas)):
        return nothing
    if not base_text:  # nothing held yet (or deltas without a base: not ours)
        return nothing
    base = int(base_text, 36)
    return [base + int(d, 36) if d else None for d in deltas]


def _list_tag(names: Sequence[str]) -> str:
    return hashlib.blake2b(",".join(names).encode(), digest_size=3).hexdigest()


def _base36(n: int) -> str:
    if n == 0:
        return "0"
    digits = []
    while n:
        n, r = divmod(n, 36)
        digits.append(_DIGITS[r])
    return "".join(reversed(digits))
