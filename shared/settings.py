"""Configuration from the environment, read once in each entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from psycopg.conninfo import make_conninfo
from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.model.ttl import DOCUMENT_TTL_S, NOT_FOUND_TTL_S, TtlPolicy
from shared.redis_store.keys import DEFAULT_PREFIX, Keys

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
STARTUP_TIMEOUT_S = 10.0
# Enough shards that a cluster of a few primaries shares the queue's work evenly.
CLUSTER_QUEUE_SHARDS = 16


class Settings(BaseSettings):
    """Everything the processes of profile-status can be told.

    `DATABASE_URL` and `REDIS_URL` as the contract names them; the rest with the
    `PROFILE_STATUS_` prefix (for example `PROFILE_STATUS_KEY_PREFIX`).
    """

    model_config = SettingsConfigDict(env_prefix="PROFILE_STATUS_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL, validation_alias=AliasChoices("DATABASE_URL", "PROFILE_STATUS_DATABASE_URL")
    )
    redis_url: str = Field(
        DEFAULT_REDIS_URL, validation_alias=AliasChoices("REDIS_URL", "PROFILE_STATUS_REDIS_URL")
    )
    # Passwords in files (Docker secrets), so that they are in no URL, environment or image:
    # each replaces the password of its URL, in any characters (no URL-encoding to get wrong).
    database_password_file: Path | None = None
    redis_password_file: Path | None = None
    key_prefix: str = DEFAULT_PREFIX
    # REDIS_URL names one node of a Redis Cluster (the client discovers the rest).
    redis_cluster: bool = False
    # Shards of the active queue; 0 picks 1 on a single Redis, 16 on a cluster.
    # Every process must use the same value; after changing it, run `resync`.
    queue_shards: int = Field(0, ge=0)
    # Cluster only: send reads of polls to replicas (milliseconds behind, within the freshness promise).
    redis_read_from_replicas: bool = False
    startup_timeout_s: float = STARTUP_TIMEOUT_S
    document_ttl_s: int = DOCUMENT_TTL_S
    not_found_ttl_s: int = NOT_FOUND_TTL_S
    log_json: bool = False
    log_level: str = "INFO"

    # Projector
    # Usernames are split into this many partitions; projectors share them (1: one active, others stand by).
    partitions: int = 1
    batch_size: int = 5000
    # After a NOTIFY, wait this long for the rest of a burst before reading the change log.
    coalesce_ms: float = 5.0
    # While changes keep coming, batches start at most this often: each batch costs a dozen
    # statements whatever its size, so a steady trickle is taken a few changes at a time.
    batch_interval_ms: float = Field(50.0, ge=0)
    safety_poll_s: float = 5.0
    heartbeat_interval_s: float = 1.0
    heartbeat_ttl_s: int = 30
    refresh_interval_s: float = 24 * 3600.0
    retry_max_delay_s: float = 5.0
    metrics_port: int | None = None
    # 127.0.0.1 by default; 0.0.0.0 in a container so Prometheus can scrape it.
    metrics_host: str = "127.0.0.1"

    # API
    heartbeat_max_age_s: float = 10.0
    request_timeout_s: float = 5.0
    # Serve repeated polls from process memory, kept exact by the projector's change messages.
    local_cache: bool = True
    sse_max_streams: int = 2000
    # Streams one client address may hold open per API process (0: no limit); beyond: 429.
    sse_max_streams_per_client: int = 16
    sse_max_lifetime_s: float = 1800.0
    # Comma-separated origins allowed to call the API from a browser ("*" for any).
    cors_origins: str = ""
    # `GET /api/queue/recent` lists other people's usernames: off (404) unless asked for (the demo does).
    public_recent_usernames: bool = False
    redis_timeout_s: float = 2.0
    # Misses ask Postgres over at most this many connections per API process, the usernames of a turn
    # in one read; while every connection reads, at most `miss_max_waiting` usernames wait to go in the
    # next read (beyond: 503 at once), each for at most `request_timeout_s`.
    database_pool_size: int = 4
    miss_max_waiting: int = 64
    # What one connection and one client address may hold (api.server): the request head must
    # arrive whole within `header_timeout_s` and `max_header_bytes`; beyond `max_connections`
    # per process uvicorn answers 503; an idle keep-alive connection closes after `keep_alive_s`.
    header_timeout_s: float = 10.0
    max_header_bytes: int = 32 * 1024
    max_connections: int = 4096
    max_connections_per_client: int = 256
    keep_alive_s: int = 5

    @model_validator(mode="after")
    def _passwords_from_files(self) -> Settings:
        if self.database_password_file is not None:
            self.database_url = make_conninfo(self.database_url, password=read_secret(self.database_password_file))
        if self.redis_password_file is not None:
            self.redis_url = redis_url_with_password(self.redis_url, read_secret(self.redis_password_file))
        return self

    def keys(self) -> Keys:
        """The key names of this deployment."""
        shards = self.queue_shards or (CLUSTER_QUEUE_SHARDS if self.redis_cluster else 1)
        return Keys(self.key_prefix, shards)

    def ttl_policy(self) -> TtlPolicy:
        """How long documents live in Redis."""
        return TtlPolicy(self.document_ttl_s, self.not_found_ttl_s)


def read_secret(path: Path) -> str:
    """A secret file's content without the line ends after it (as `$(cat file)` reads it in a shell)."""
    try:
        return path.read_text().rstrip("\n")
    except OSError as exc:
        raise ValueError(f"cannot read the secret file {path}: {exc.strerror}") from None


def redis_url_with_password(url: str, password: str) -> str:
    """`url` (redis:// or rediss://, with or without a user) with `password`, URL-encoded."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0] if at else ""
    netloc = f"{user}:{quote(password, safe='')}@{hosts}"
    return urlunsplit(parts._replace(netloc=netloc))
