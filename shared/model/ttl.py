"""How long status documents live in Redis: the TTL policy. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from shared.model.document import State, StatusDocument

# Documents of known usernames outlive any plausible projector outage; the projector
# refreshes them long before they expire. NOT_FOUND documents are a short negative cache.
DOCUMENT_TTL_S = 7 * 24 * 3600
NOT_FOUND_TTL_S = 60


@dataclass(frozen=True, slots=True)
class TtlPolicy:
    """How long each kind of document lives in Redis."""

    document_s: int = DOCUMENT_TTL_S
    not_found_s: int = NOT_FOUND_TTL_S

    def ttl_for(self, doc: StatusDocument) -> int:
        """Seconds `doc` lives after it was last written or confirmed."""
        return self.not_found_s if doc.state is State.NOT_FOUND else self.document_s
