"""The projector's Prometheus metrics (served with `--metrics-port`, summarized in the heartbeat)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CHANGES_APPLIED = Counter(
    "profile_status_projector_changes_applied", "Change-log entries applied to Redis"
)
BATCHES = Counter("profile_status_projector_batches", "Batches of changes applied")
DOCUMENTS = Counter(
    "profile_status_projector_documents",
    "Documents offered to Redis, by outcome (written, unchanged, stale = rejected as older)",
    ["outcome"],
)
LAG = Histogram(
    "profile_status_projector_lag_seconds",
    "From a change's capture in Postgres to its document in Redis",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BACKLOG = Gauge("profile_status_projector_backlog", "Change-log entries not yet applied")
BACKLOG_AGE = Gauge(
    "profile_status_projector_backlog_age_seconds", "Age of the oldest change-log entry"
)
RECONNECTS = Counter(
    "profile_status_projector_reconnects", "Sessions restarted after an outage", ["cause"]
)
REBUILDS = Counter("profile_status_projector_rebuilds", "Full rebuilds of the projection", ["reason"])
ERRORS = Counter("profile_status_projector_errors", "Errors by kind", ["kind"])
WAITING = Gauge(
    "profile_status_projector_waiting", "1 while the projector waits for a dependency to come back", ["dependency"]
)
OUTAGE_SECONDS = Gauge(
    "profile_status_projector_outage_seconds", "How long the projector has been waiting for its dependencies (0: not)"
)
DEGRADED_VALUES = Counter(
    "profile_status_projector_degraded_values",
    "Values a document cannot show (rendered as null), each row and column counted once",
    ["table", "column"],
)
QUARANTINED = Gauge("profile_status_projector_quarantined", "Usernames whose rows cannot be projected at all")
QUARANTINE_EVENTS = Counter("profile_status_projector_quarantine_events", "Usernames put into quarantine")
ROLLBACKS = Counter(
    "profile_status_projector_redis_rollbacks", "Times Redis was found to have lost writes it had acknowledged"
)
ACTIVE = Gauge("profile_status_projector_active", "1 while this projector holds the lock")


def record_outcome(written: int, unchanged: int, stale: int) -> None:
    """Count one write's outcome."""
    DOCUMENTS.labels("written").inc(written)
    DOCUMENTS.labels("unchanged").inc(unchanged)
    DOCUMENTS.labels("stale").inc(stale)
