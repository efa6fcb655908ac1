"""A Redis Cluster that stops answering altogether: the projector waits it out, the API says 503."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import psycopg
import pytest

from shared.settings import Settings
from tests.integration.convergence import wait_converged
from tests.integration.faults import ApiWatch, summary
from tests.integration.rows import add_job
from tests.integration.stack import ApiThread, ProjectorProcess
from tests.servers.cluster import EmbeddedRedisCluster

pytestmark = pytest.mark.slow


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedRedisCluster]:
    """A cluster of this test's own, whose nodes it may freeze."""
    with EmbeddedRedisCluster() as cluster:
        yield cluster


@pytest.mark.parametrize("outage_s", [12, pytest.param(30, marks=pytest.mark.long)])
def test_a_cluster_that_stops_answering_is_waited_out(
    settings: Settings, database_url: str, own_cluster: EmbeddedRedisCluster, outage_s: int
) -> None:
    ours = settings.model_copy(update={"redis_url": own_cluster.url})
    child = ProjectorProcess(ours).start()
    api = ApiThread(ours).start()
    try:
        with psycopg.connect(database_url, autocommit=True) as db:
            add_job(db, "before_the_outage")
            wait_converged(ours, timeout=30)
            pids = [node.pid for node in own_cluster.nodes if node.pid is not None]
            for pid in pids:  # every node frozen: no slot answers, cluster clients give up
                os.kill(pid, signal.SIGSTOP)
            time.sleep(1.0)
            watch = ApiWatch(api.base_url, ["before_the_outage"], interval_s=0.2).start()
            add_job(db, "during_the_outage")
            time.sleep(outage_s)
            codes = watch.stop()
            assert child.alive(), "an outage must never end the projector"
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            recovered = wait_converged(ours, timeout=90)
        assert set(codes) <= {200, 503} and codes.get(503, 0) > 0, codes  # never a 500
        took = time.monotonic()
        assert child.stop() == 0
        took = time.monotonic() - took
    finally:
        api.stop()
    print(summary(f"Redis Cluster frozen for {outage_s} s (SIGTERM after: {took:.2f} s)", codes, recovered, 0))
