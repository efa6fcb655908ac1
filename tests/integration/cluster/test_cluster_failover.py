"""A Redis Cluster primary dies under write load: its replica takes over, and nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from shared.settings import Settings
from tests.integration.convergence import differences, wait_converged
from tests.integration.rows import add_profile
from tests.integration.stack import ApiThread, ProjectorProcess, eventually
from tests.integration.test_faults import _seed
from tests.servers.cluster import EmbeddedRedisCluster, cluster_client
from tests.workload import WriterThread

pytestmark = pytest.mark.slow


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedRedisCluster]:
    """A cluster of this test's own, whose nodes it may kill."""
    with EmbeddedRedisCluster() as cluster:
        yield cluster


def test_a_primary_killed_under_load_loses_nothing(
    settings: Settings, database_url: str, db: psycopg.Connection, own_cluster: EmbeddedRedisCluster
) -> None:
    ours = settings.model_copy(update={"redis_url": own_cluster.url})
    child = ProjectorProcess(ours).start()
    api = ApiThread(ours).start()
    try:
        with cluster_client(own_cluster.url) as client:
            eventually(lambda: client.exists(ours.keys().heartbeat), timeout=20)
            writer = WriterThread(database_url, _seed()).start()
            time.sleep(1.0)
            # Not the node the URL names: the processes already know the others, a new client would not.
            victim = own_cluster.primaries[1]
            if own_cluster.url.endswith(f":{victim.port}/0"):
                victim = own_cluster.primaries[2]
            killed = time.monotonic()
            own_cluster.stop_node(victim)
            # A profile: the writer's workload deletes and updates queue rows at random, never our profiles.
            add_profile(db, "written_after_the_kill")
            own_cluster.wait_ok(timeout=20)
            promoted = time.monotonic() - killed
            with api.client() as http:
                def visible() -> bool:
                    response = http.get("/api/profile/written_after_the_kill/status")
                    assert response.status_code == 200, response.text
                    assert response.json()["data"]["status"] == "exists", response.text
                    return True

                eventually(visible, timeout=20, interval=0.05)
            served = time.monotonic() - killed
            time.sleep(1.0)  # writes keep coming on the new primary
            committed = writer.stop()
            converge = wait_converged(ours)
            assert child.alive(), "the projector must survive a primary's failover"
            assert differences(ours).count == 0
            print(
                f"\nprimary killed under {committed} transactions: replica promoted after {promoted:.2f} s, "
                f"a change committed after the kill served after {served:.2f} s, converged {converge:.2f} s after the writer stopped"
            )
    finally:
        api.stop()
        child.stop()
