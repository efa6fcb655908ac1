"""The records Redis holds besides documents, each written and read through here.

The Lua scripts build them from values they receive as arguments (they never
read a document's JSON); these are their readers, and the tests hold both sides
to the same format.

- `Meta`, the value of a username's field in its shard's meta hash:
  `"{version} {digest} {status} {own entry} {active entries...}"`.
- the change message, published on the changes channel after a write: one
  line per username, `"{shard}:{seq} {token} {version} {queue move}[ {taken}]"`
  (`CHANGE_LINE`: `change_line` formats it on a cluster, and write_batch.lua
  receives the same format as an argument on a single Redis; `parse_changes` reads it).
  The queue move is 0 (the queue sets did not change), 2 (they changed by exactly
  `taken`: `-entry`/`+entry`, comma-separated, absent when nothing) or 1 (they may
  have changed in any way: every position may have moved). A line whose token is
  `*` names no username: the queue sets changed outside any username's write.
- `Heartbeat`, the projector's liveness record (JSON, with a TTL).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pydantic import BaseModel

from shared.model.document import State, StatusDocument
from shared.redis_store.keys import username_of_token

# Meta statuses: a PENDING or PROCESSING job, a deleted username kept as a tombstone while a
# rebuild runs, anything else. The scripts report the previous one on every write.
PENDING, PROCESSING, NOT_FOUND, OTHER = "P", "R", "N", "-"
NONE = "-"  # no own entry


def meta_status(doc: StatusDocument) -> str:
    """The one-letter status the meta hash keeps for `doc`."""
    if doc.state is State.NOT_FOUND:
        return NOT_FOUND
    status = doc.queue.status if doc.queue is not None else None
    return PENDING if status == "PENDING" else PROCESSING if status == "PROCESSING" else OTHER


@dataclass(frozen=True, slots=True)
class Meta:
    """What Redis holds for one username besides its document.

    `version` orders writes: nothing older is accepted. `digest` says whether a
    new document differs. `own` is the queue entry of the job the document
    shows (None when it is not active); `entries` every active entry of the
    username (its own among them), which it takes out of the queue when they go.
    """

    version: int
    digest: str
    status: str
    own: str | None
    entries: tuple[str, ...]

    @classmethod
    def parse(cls, raw: bytes | str) -> Meta:
        """A meta field's value; ValueError when it is not one."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        version, digest, status, own, *entries = text.split(" ")
        return cls(int(version), digest, status, None if own == NONE else own, tuple(entries))

    def encode(self) -> str:
        """The value the scripts write (for tests and repairs)."""
        return " ".join((str(self.version), self.digest, self.status, self.own or NONE, *self.entries))

    @property
    def tombstone(self) -> bool:
        """Kept only to refuse older writes of a deleted username while a rebuild runs."""
        return self.status == NOT_FOUND


@dataclass(frozen=True, slots=True)
class Change:
    """One line of a change message: a username's write, or (username None) a queue change of no username's."""

    shard: int
    seq: int
    username: str | None
    version: int
    queue_moved: bool
    # What the queue sets took, as signed entries ("-entry", "+entry"); None when not known
    # (every position may have moved). Empty when the queue did not move.
    taken: tuple[str, ...] | None = ()


# One line of a change message: shard (its change counter), seq, token, version, queue move
# (0/1/2), then "" or " " + what the sets took. Written with printf conversions that Python's %
# and Lua's string.format read alike, so that write_batch.lua formats its lines with this very string.
CHANGE_LINE = "%d:%d %s %s %d%s"
NOT_MOVED, MOVED_UNLISTED, MOVED_AS_LISTED = 0, 1, 2
NO_USERNAME = "*"  # the token of a line that names no username (no username's token is this)


def change_line(shard: int, seq: int, name: str, version: int | str, queue_moved: bool | int, taken: str = "") -> str:
    """One line of a change message (`name` is a token, or NO_USERNAME); lines join with a newline.

    `taken` is what the queue sets took as write_rules.lua reports it; a move with
    `taken` None is a move not listed.
    """
    if not queue_moved:
        return CHANGE_LINE % (shard, seq, name, str(version), NOT_MOVED, "")
    if taken is None:
        return CHANGE_LINE % (shard, seq, name, str(version), MOVED_UNLISTED, "")
    return CHANGE_LINE % (shard, seq, name, str(version), MOVED_AS_LISTED, " " + taken if taken else "")


def parse_changes(message: bytes | str) -> list[Change]:
    """Every line of a change message (ValueError for anything else)."""
    text = message.decode() if isinstance(message, bytes) else message
    out = []
    for line in text.split("\n"):
        position, name, version, moved, *rest = line.split(" ")
        shard, _, seq = position.partition(":")
        username = None if name == NO_USERNAME else username_of_token(name)
        move = int(moved)
        if move == NOT_MOVED or move == MOVED_AS_LISTED:
            taken = tuple(rest[0].split(",")) if rest else ()
            if len(rest) > 1 or (move == NOT_MOVED and rest) or any(t[:1] not in ("-", "+") or len(t) < 2 for t in taken):
                raise ValueError(f"not a change line: {line[:200]!r}")
        elif move == MOVED_UNLISTED and not rest:
            taken = None
        else:
            raise ValueError(f"not a change line: {line[:200]!r}")
        out.append(Change(int(shard), int(seq), username, int(version), move != NOT_MOVED, taken))
    return out


class Heartbeat(BaseModel):
    """The projector's liveness, written every beat under `status:@heartbeat` (the active leader)
    or `status:@heartbeat:{pid}` (others), with a TTL so that it vanishes when they stop."""

    at: float  # epoch seconds
    active: bool
    backlog: int = 0
    backlog_age_s: float = 0.0
    rebuilding: bool = False
    partitions: list[int] = []
    # For operators looking at Redis; never shown over HTTP.
    pid: int = 0
    host: str = ""

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the beat."""
        return (time.time() if now is None else now) - self.at

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Heartbeat | None:
        """The stored beat, or None when there is none (or it cannot be read)."""
        if raw is None:
            return None
        try:
            return cls.model_validate_json(raw)
        except ValueError:
            return None
