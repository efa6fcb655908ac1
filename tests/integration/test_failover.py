"""Several projectors: one active per partition, fast takeover, nothing lost or reordered."""

from __future__ import annotations

import random
import signal
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import orjson
import pytest
import redis

from shared.redis_store.keys import Keys
from shared.redis_store.records import Heartbeat, parse_changes
from shared.settings import Settings
from tests.integration.convergence import wait_converged
from tests.integration.stack import ProjectorProcess, eventually
from tests.workload import WriterThread

pytestmark = pytest.mark.slow


class VersionWatch:
    """Records every accepted document write from the change channel, to check order per username."""

    def __init__(self, url: str, keys: Keys) -> None:
        self._client = redis.Redis.from_url(url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(keys.changes_channel)
        self.versions: dict[str, list[int]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message:
                for change in parse_changes(message["data"]):
                    self.versions[change.username].append(change.version)

    def stop(self) -> None:
        """Stop listening."""
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
        self._client.close()

    def backwards(self) -> list[str]:
        """Usernames whose document version ever decreased."""
        return [n for n, vs in self.versions.items() if any(b < a for a, b in zip(vs, vs[1:]))]


def _active_pid(client: redis.Redis, keys: Keys) -> int | None:
    beat = Heartbeat.parse(client.get(keys.heartbeat))
    return beat.pid if beat else None


@pytest.fixture
def fleet(settings: Settings) -> Iterator[list[ProjectorProcess]]:
    """Projector processes started by the test; all stopped afterwards."""
    processes: list[ProjectorProcess] = []
    yield processes
    for p in processes:
        if p.alive():
            p.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
            p.stop()


def test_failover_under_load(settings: Settings, database_url: str, fleet: list[ProjectorProcess]) -> None:
    keys = settings.keys()
    client = redis.Redis.from_url(settings.redis_url)
    watch = VersionWatch(settings.redis_url, keys)
    fleet.extend(ProjectorProcess(settings).start() for _ in range(3))
    eventually(lambda: _active_pid(client, keys) in {p.pid for p in fleet}, timeout=20)
    writer = WriterThread(database_url, random.randrange(2**32)).start()
    takeovers = []
    try:
        for _ in range(20):
            victim_pid = _active_pid(client, keys)
            victim = next(p for p in fleet if p.pid == victim_pid)
            time.sleep(random.uniform(0.2, 0.6))
            killed_at = time.time()
            victim.kill9()
            fleet.remove(victim)
            fleet.append(ProjectorProcess(settings).start())

            def taken_over() -> bool:
                beat = client.get(keys.heartbeat)
                if not beat:
                    return False
                b = orjson.loads(beat)
                return int(b["pid"]) != victim_pid and float(b["at"]) > killed_at

            eventually(taken_over, timeout=20, interval=0.01)
            takeovers.append(time.time() - killed_at)
        # A frozen active projector: its session is ended by idle_session_timeout, a standby takes over.
        frozen_pid = _active_pid(client, keys)
        frozen = next(p for p in fleet if p.pid == frozen_pid)
        frozen.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        stopped_at = time.time()
        eventually(lambda: _active_pid(client, keys) not in (None, frozen_pid), timeout=30, interval=0.05)
        frozen_takeover = time.time() - stopped_at
        frozen.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]  # the zombie wakes up late
        time.sleep(1)
    finally:
        committed = writer.stop()
    converge = wait_converged(settings)
    watch.stop()
    client.close()
    print(
        f"\n20 kills under {committed} transactions: takeover median {statistics.median(takeovers):.2f} s,"
        f" worst {max(takeovers):.2f} s; frozen projector replaced in {frozen_takeover:.2f} s;"
        f" converged {converge:.2f} s after the writer stopped"
    )
    assert watch.backwards() == []
    assert sum(len(v) for v in watch.versions.values()) > 0


def _partitions_of(client: redis.Redis, keys: Keys, pid: int) -> set[int]:
    """What a projector says it holds: the leader (partition 0) in the main heartbeat, others in their own."""
    main = client.get(keys.heartbeat)
    if main and int(orjson.loads(main)["pid"]) == pid:
        return set(orjson.loads(main)["partitions"])
    beat = client.get(f"{keys.heartbeat}:{pid}")
    return set(orjson.loads(beat)["partitions"]) if beat else set()


def test_partitions_rebalance_as_projectors_join_and_leave(
    settings: Settings, database_url: str, fleet: list[ProjectorProcess]
) -> None:
    keys = settings.keys()
    client = redis.Redis.from_url(settings.redis_url)
    env = {"PROFILE_STATUS_PARTITIONS": "4"}
    writer = WriterThread(database_url, random.randrange(2**32)).start()
    try:
        first = ProjectorProcess(settings, **env).start()
        fleet.append(first)
        eventually(lambda: _active_pid(client, keys) == first.pid, timeout=20)
        second = ProjectorProcess(settings, **env).start()
        fleet.append(second)
        eventually(lambda: _partitions_of(client, keys, second.pid) == {2, 3}, timeout=20)
        # The first gave up 2 and 3 before the second could take them; its heartbeat says so at its next beat.
        eventually(lambda: _partitions_of(client, keys, first.pid) == {0, 1}, timeout=10)
        first.kill9()
        fleet.remove(first)
        eventually(lambda: _partitions_of(client, keys, second.pid) == {0, 1, 2, 3}, timeout=30)
    finally:
        writer.stop()
    wait_converged(settings)
    client.close()


def test_api_replicas_need_nothing_but_redis(settings: Settings, db: object, projector: object) -> None:
    """Two API processes' worth of servers: each answers alike and each pushes every change."""
    import psycopg

    from tests.integration.sse import Listener
    from tests.integration.stack import ApiThread

    replicas = [ApiThread(settings).start() for _ in range(2)]
    try:
        listeners = [Listener(r.base_url, "/api/profile/replicated/status/stream") for r in replicas]
        for listener in listeners:
            eventually(lambda listener=listener: listener.statuses() == ["NOT_FOUND"])
        assert isinstance(db, psycopg.Connection)
        db.execute("INSERT INTO queue (username, source, priority, request_id) VALUES ('replicated', 't', 'HIGH', 'r-rep')")
        for listener in listeners:
            eventually(lambda listener=listener: listener.statuses()[-1:] == ["PENDING"], timeout=2)
        answers = []
        for replica in replicas:
            with replica.client() as http:
                answers.append(http.get("/api/profile/replicated/status").json()["data"])
        assert answers[0] == answers[1]
    finally:
        for replica in replicas:
            replica.stop()
