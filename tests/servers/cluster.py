"""A local Redis Cluster for the tests: six embedded Valkey nodes, formed with plain CLUSTER commands.

As redis-cli (absent from a fresh machine) would form it. Built from the demo
kit's `EmbeddedRedis`; used only by the test-suite.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from redis.cluster import RedisCluster

from demo.embedded import EmbeddedRedis, EmbeddedServerError, free_port

if TYPE_CHECKING:
    import redis


class EmbeddedRedisClusterNode(EmbeddedRedis):
    """One cluster-mode Valkey of an ``EmbeddedRedisCluster``, in its own temp dir.

    ``node_id`` and ``is_primary`` describe the node as the cluster was formed; a
    failover can change the roles later.
    """

    _name = "valkey-node"

    def __init__(self, node_timeout_ms: int) -> None:
        super().__init__()
        self.node_timeout_ms = node_timeout_ms
        self.bus_port = 0  # the cluster bus, chosen with the client port on each start attempt
        self.node_id = ""
        self.is_primary = False

    def _command(self, data: Path, port: int) -> list[str]:
        # The default bus port, port + 10000, may be taken or beyond 65535: pick a free one.
        self.bus_port = free_port()
        while self.bus_port == port:
            self.bus_port = free_port()
        return super()._command(data, port) + [
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(self.bus_port), "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-require-full-coverage", "yes",
            # A replica's first sync would otherwise wait 5 s for more replicas to join it.
            "--repl-diskless-sync-delay", "0",
            # CLUSTER SLOTS, which cluster clients read, omits a replica until its
            # replication offset is past 0: on an idle primary only its pings move
            # it, every 10 s by default.
            "--repl-ping-replica-period", "1",
        ]  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the node, as a crash would, then remove its temp dir. Idempotent."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self.stop()


class EmbeddedRedisCluster:
    """A Valkey cluster of three primaries, each with one replica, on 127.0.0.1.

    Slots are split 0-5460, 5461-10922 and 10923-16383 over the primaries. ``start()``
    returns once every node reports ``cluster_state:ok``, knows all six nodes in
    their roles, and every replica's link to its primary is up. The short node
    timeout (``node_timeout_ms``) lets a replica take over within a few seconds
    of its primary's death (see ``stop_node``). ``form_timeout`` bounds the forming,
    once the nodes serve clients.
    """

    _slot_ranges = ((0, 5460), (5461, 10922), (10923, 16383))

    def __init__(self, node_timeout_ms: int = 1500, form_timeout: float = 30.0) -> None:
        self.node_timeout_ms = node_timeout_ms
        self.form_timeout = form_timeout
        self.nodes: list[EmbeddedRedisClusterNode] = []

    @property
    def primaries(self) -> list[EmbeddedRedisClusterNode]:
        """The nodes formed as primaries, in slot order."""
        return [node for node in self.nodes if node.is_primary]

    @property
    def replicas(self) -> list[EmbeddedRedisClusterNode]:
        """The nodes formed as replicas; ``replicas[i]`` replicates ``primaries[i]``."""
        return [node for node in self.nodes if not node.is_primary]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the first primary (the first running node once it is stopped)."""
        for node in self.nodes:
            if node.pid is not None:
                return node.url
        raise EmbeddedServerError("embedded valkey cluster is not running")

    def start(self) -> str:
        """Start and form the cluster (no-op when running); return ``url``."""
        if self.nodes:
            return self.url
        try:
            for i in range(6):
                node = EmbeddedRedisClusterNode(self.node_timeout_ms)
                node.is_primary = i < 3
                self.nodes.append(node)
                node.start()
            self._form()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self.url

    def stop(self) -> None:
        """Stop every node and remove their temp dirs. Idempotent."""
        atexit.unregister(self.stop)
        nodes, self.nodes = self.nodes, []
        # Replicas first: a primary shutting down may wait for connected replicas to catch up.
        for node in sorted(nodes, key=lambda n: n.is_primary):
            node.stop()

    def stop_node(self, node: EmbeddedRedisClusterNode, *, kill: bool = True) -> None:
        """Take one node down, by SIGKILL (a crash) or, with ``kill=False``, by a clean shutdown.

        The node stays in ``nodes`` with ``pid`` None; it is not restarted. With the
        node timeout, the other nodes mark it failed and a replica of a primary
        takes over; ``wait_ok`` waits for the cluster to recover.
        """
        if node not in self.nodes:
            raise ValueError("not a node of this cluster")
        if kill:
            node.kill()
        else:
            node.stop()

    def wait_ok(self, timeout: float = 15.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` with all 16384 slots on running primaries.

        Right after a primary dies the others still say "ok" for up to the node
        timeout; the slot owners, not the state alone, show that a replica took over.
        """
        running = [node for node in self.nodes if node.pid is not None]
        running_ids = {node.node_id for node in running}

        def check(client: redis.Redis) -> str | None:
            info = _cluster_info(client)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return f"state {info.get('cluster_state')}, {info.get('cluster_slots_ok')} slots ok"
            served = sum(r[1] - r[0] + 1 for r in client.execute_command("CLUSTER", "SLOTS") if r[2][2] in running_ids)
            return None if served == 16384 else f"{16384 - served} slots still on a stopped primary"

        self._wait("cluster_state:ok", running, check, time.monotonic() + timeout, timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _form(self) -> None:
        deadline = time.monotonic() + self.form_timeout
        for epoch, node in enumerate(self.nodes, start=1):
            with _client(node) as client:
                node.node_id = client.execute_command("CLUSTER", "MYID")
                # Distinct epochs up front, as redis-cli does: else the primaries all
                # claim epoch 0 and the cluster spends rounds resolving the collision.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for node, (first, last) in zip(self.primaries, self._slot_ranges, strict=True):
            with _client(node) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        # Each node meets the first; gossip then introduces them to one another.
        first_node = self.nodes[0]
        for node in self.nodes[1:]:
            with _client(node) as client:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", first_node.port, first_node.bus_port)
        ids = {node.node_id for node in self.nodes}

        def knows_all(client: redis.Redis) -> str | None:
            known = _cluster_nodes(client)
            if set(known) != ids or any("handshake" in flags or "noaddr" in flags for flags, _ in known.values()):
                return f"knows {len(set(known) & ids)} of 6 nodes"
            return None

        self._wait("every node knowing all six", self.nodes, knows_all, deadline, self.form_timeout)
        # A node accepts REPLICATE only for a primary it already knows: hence after the wait.
        for replica, primary in zip(self.replicas, self.primaries, strict=True):
            with _client(replica) as client:
                client.execute_command("CLUSTER", "REPLICATE", primary.node_id)
        expected = {node.node_id: ("master", "-") for node in self.primaries}
        expected |= {r.node_id: ("slave", p.node_id) for r, p in zip(self.replicas, self.primaries, strict=True)}
        layout = {r: [p.node_id, q.node_id]
                  for r, p, q in zip(self._slot_ranges, self.primaries, self.replicas, strict=True)}

        def formed(client: redis.Redis) -> str | None:
            info = _cluster_info(client)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return f"state {info.get('cluster_state')}, {info.get('cluster_slots_ok')} slots ok"
            # Every node must show the roles: a cluster client may ask any of them for the topology.
            roles = {id_: (next(f for f in ("master", "slave") if f in flags), of)
                     for id_, (flags, of) in _cluster_nodes(client).items()}
            if roles != expected:
                return "roles not yet known everywhere"
            # Each slot range with its primary and that primary's replica, as clients will see it.
            slots = {(r[0], r[1]): [n[2] for n in r[2:]] for r in client.execute_command("CLUSTER", "SLOTS")}
            if slots != layout:
                return "CLUSTER SLOTS does not list every replica yet"
            repl = client.info("replication")
            online = repl.get("connected_slaves") == 1 and repl.get("slave0", {}).get("state") == "online"
            if repl["role"] == "master" and not online:
                return "replica not online"
            if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                return "link to primary down"
            return None

        self._wait("cluster_state:ok with every replica in sync", self.nodes, formed, deadline, self.form_timeout)

    def _wait(self, goal: str, nodes: list[EmbeddedRedisClusterNode],
              check: Callable[[redis.Redis], str | None], deadline: float, budget: float) -> None:
        import redis

        # check() returns None when a node is there, else what it lacks (for the error).
        while True:
            lacking: list[str] = []
            for node in nodes:
                if node._proc is not None and node._proc.poll() is not None:  # no use waiting for it
                    raise node._error(f"exited with code {node._proc.returncode} while the cluster formed")
                with _client(node) as client:
                    try:
                        problem = check(client)
                    except redis.RedisError as exc:
                        problem = f"{type(exc).__name__}: {exc}"
                if problem is not None:
                    lacking.append(f"{node.port}: {problem}")
            if not lacking:
                return
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"embedded valkey cluster: no {goal} within {budget:.1f} s; " + "; ".join(lacking))
            time.sleep(0.05)


def _client(node: EmbeddedRedisClusterNode) -> redis.Redis:
    import redis

    return redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True, socket_timeout=2)


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    # The raw "CLUSTER" command bypasses redis-py's response parsing: plain "key:value" lines.
    text: str = client.execute_command("CLUSTER", "INFO")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _cluster_nodes(client: redis.Redis) -> dict[str, tuple[str, str]]:
    """Node id → (flags, primary id or "-") from CLUSTER NODES."""
    text: str = client.execute_command("CLUSTER", "NODES")
    return {f[0]: (f[2], f[3]) for f in (line.split() for line in text.splitlines()) if len(f) >= 8}


@contextmanager
def cluster_client(url: str, **options: Any) -> Iterator[RedisCluster]:
    """A synchronous cluster client; afterwards every node connection it opened is closed.

    redis-py's `RedisCluster.close()` leaves the nodes' connection pools open when the
    client was made from a URL (the node clients do not own those pools), so their
    sockets are left to the garbage collector, which warns (an error in this suite) in
    whichever later test a collection happens to run.
    """
    client = RedisCluster.from_url(url, **options)
    try:
        yield client
    finally:
        nodes = client.get_nodes()
        client.close()
        for node in nodes:
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
