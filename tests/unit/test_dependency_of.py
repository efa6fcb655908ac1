"""What the projector says it waits for, by the error that ended its session."""

from __future__ import annotations

import psycopg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeout

from projector.daemon import ListenerSilent, dependency_of
from shared.errors import PostgresUnavailable, RedisUnavailable


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.InterfaceError("the connection is closed"),
        PostgresUnavailable("cannot reach PostgreSQL"),
        ListenerSilent("no notification"),
    ],
    ids=type,
)
def test_a_lost_or_refused_postgres_connection_is_waited_for(exc: BaseException) -> None:
    assert dependency_of(exc) == "postgres"


@pytest.mark.parametrize(
    "exc",
    [RedisConnectionError("refused"), RedisTimeout("timeout"), RedisClusterException("no node"), RedisUnavailable("x")],
    ids=type,
)
def test_a_redis_failure_is_waited_for(exc: BaseException) -> None:
    assert dependency_of(exc) == "redis"


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.errors.InsufficientPrivilege("permission denied for table queue"),
        psycopg.errors.UndefinedColumn("column does not exist"),
        psycopg.errors.DataError("date out of range"),
        ValueError("a bug"),
    ],
    ids=type,
)
def test_an_error_no_waiting_mends_is_unexpected(exc: BaseException) -> None:
    assert dependency_of(exc) == "unexpected"


def test_a_bare_network_error_is_the_network() -> None:
    assert dependency_of(ConnectionResetError("reset by peer")) == "network"
