"""Redis key names. Everything lives under one configurable prefix.

A normalized username is made of `[a-z0-9._]`, so the service's own keys use
`@`, which no username can contain, and never collide with a document key.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "status:"
# Published on the changes channel by the active projector every heartbeat; no username contains "@".
BEAT = "@beat"


@dataclass(frozen=True, slots=True)
class Keys:
    """The names of every key and channel the projector writes, for one prefix."""

    prefix: str = DEFAULT_PREFIX

    def document(self, username: str) -> str:
        """`status:{username}`: the JSON status document."""
        return f"{self.prefix}{username}"

    def username_of(self, key: str) -> str:
        """The username a document key names."""
        return key[len(self.prefix) :]

    @property
    def document_pattern(self) -> str:
        """A SCAN pattern for document keys only."""
        return f"{self.prefix}[^@]*"

    @property
    def active_queue(self) -> str:
        """Sorted set of every active queue row, ordered like the queue (all scores 0)."""
        return f"{self.prefix}@queue"

    @property
    def active_members(self) -> str:
        """Hash: username -> its members of the active queue, so they can be replaced."""
        return f"{self.prefix}@members"

    @property
    def pending(self) -> str:
        """The pending members of the active queue, in queue order (counts and oldest per priority)."""
        return f"{self.prefix}@pending"

    @property
    def recent(self) -> str:
        """Sorted set: username -> when its document last changed (ms), the newest 1,000."""
        return f"{self.prefix}@recent"

    @property
    def estimates(self) -> str:
        """Hash of measured averages (processing and waiting times) kept by the projector."""
        return f"{self.prefix}@estimates"

    def completions(self, minute: int) -> str:
        """Counter of jobs completed in one minute (epoch minutes), with a TTL."""
        return f"{self.prefix}@completions:{minute}"

    @property
    def generation(self) -> str:
        """Present once the projection is complete; gone after a flush or an empty restart."""
        return f"{self.prefix}@generation"

    @property
    def rebuild_marker(self) -> str:
        """Set while a rebuild after data loss runs; a flush meanwhile removes it."""
        return f"{self.prefix}@rebuilding"

    @property
    def heartbeat(self) -> str:
        """The projector's liveness, with a TTL."""
        return f"{self.prefix}@heartbeat"

    @property
    def changes_channel(self) -> str:
        """Pub/sub channel: `"{username} {version} {1 if the active queue changed else 0}"` per change."""
        return f"{self.prefix}@changes"
