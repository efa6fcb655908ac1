"""Servers for the test-suite: the ones named by TEST_DATABASE_URL / TEST_REDIS_URL, else embedded ones.

Each integration test gets its own database (cloned from a migrated template)
and its own Redis key prefix, and both are removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from psycopg.conninfo import make_conninfo

from demo.embedded import EmbeddedPostgres, EmbeddedRedis
from projector.migrate import migrate
from tests.servers.cluster import EmbeddedRedisCluster


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL server we may create databases on."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    with EmbeddedPostgres() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """A Redis (or Valkey) server."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A formed Valkey cluster (3 primaries, 3 replicas): the URL of one primary.

    Always an embedded one, even with TEST_REDIS_URL set: that server is no cluster.
    """
    with EmbeddedRedisCluster() as cluster:
        yield cluster.url


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(server_url, autocommit=True)


async def _migrate(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await migrate(conn)


@pytest.fixture(scope="session")
def template_database(postgres_server_url: str) -> Iterator[str]:
    """A migrated database that every test's own database is cloned from."""
    name = f"ps_template_{uuid.uuid4().hex[:8]}"
    with _admin(postgres_server_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    asyncio.run(_migrate(make_conninfo(postgres_server_url, dbname=name)))
    yield name
    with _admin(postgres_server_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres_server_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"ps_test_{uuid.uuid4().hex[:10]}"
    with _admin(postgres_server_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield make_conninfo(postgres_server_url, dbname=name)
    with _admin(postgres_server_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def key_prefix(redis_server_url: str) -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_server_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this test's database, for writing rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def rds(redis_server_url: str) -> Iterator[redis.Redis]:
    """A plain Redis client, for looking at what the projector wrote."""
    client = redis.Redis.from_url(redis_server_url)
    yield client
    client.close()
