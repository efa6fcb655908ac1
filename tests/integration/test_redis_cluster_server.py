"""The embedded Valkey cluster the Redis Cluster tests run on: formed, covering every slot, spreading PUBLISH."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from tests.servers.cluster import cluster_client

SLOT_RANGES = [(0, 5460), (5461, 10922), (10923, 16383)]


@pytest.fixture
def cluster(redis_cluster_url: str) -> Iterator[RedisCluster]:
    """A cluster client that found the topology through the fixture's one URL."""
    with cluster_client(redis_cluster_url, decode_responses=True) as client:
        yield client


def test_three_primaries_each_with_a_replica_cover_every_slot(cluster: RedisCluster) -> None:
    states = cluster.cluster_info(target_nodes=RedisCluster.ALL_NODES)
    assert len(states) == 6
    for info in states.values():
        assert (info["cluster_state"], info["cluster_known_nodes"], info["cluster_size"]) == ("ok", "6", "3")
        assert info["cluster_slots_assigned"] == info["cluster_slots_ok"] == "16384"

    primaries, replicas = cluster.get_primaries(), cluster.get_replicas()
    assert len(primaries) == 3 and len(replicas) == 3
    assert len({n.port for n in primaries + replicas}) == 6

    slots = cluster.cluster_slots()
    assert sorted(slots) == SLOT_RANGES
    assert sorted(s["primary"][1] for s in slots.values()) == sorted(n.port for n in primaries)
    assert sorted(r[1] for s in slots.values() for r in s["replicas"]) == sorted(n.port for n in replicas)
    assert all(len(s["replicas"]) == 1 for s in slots.values())


def test_keys_on_different_primaries_are_written_and_read_through_the_cluster_client(cluster: RedisCluster) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    # One key per slot range, hence one per primary.
    keys: dict[int, str] = {}
    for i in range(1000):
        key = f"{prefix}{i}"
        slot = cluster.keyslot(key)
        keys.setdefault(next(n for n, (lo, hi) in enumerate(SLOT_RANGES) if lo <= slot <= hi), key)
        if len(keys) == 3:
            break
    assert len(keys) == 3
    owners = {cluster.get_node_from_key(key).port for key in keys.values()}
    assert owners == {n.port for n in cluster.get_primaries()}
    try:
        for key in keys.values():
            assert cluster.set(key, f"value of {key}")
        for key in keys.values():
            assert cluster.get(key) == f"value of {key}"
            # The key really lives on its own primary, not somewhere the client would forward from.
            node = cluster.get_node_from_key(key)
            with redis.Redis(host=node.host, port=node.port, decode_responses=True) as direct:
                assert direct.get(key) == f"value of {key}"
    finally:
        cluster.delete(*keys.values())  # keys in different slots: redis-py sends a DEL per slot


def test_publish_on_one_node_reaches_subscribers_on_every_other_node(cluster: RedisCluster) -> None:
    publisher, *others = cluster.get_primaries() + cluster.get_replicas()
    channel = f"t{uuid.uuid4().hex[:10]}:events"
    subscribers = [redis.Redis(host=n.host, port=n.port, decode_responses=True) for n in others]
    pubsubs = [s.pubsub() for s in subscribers]
    try:
        for pubsub in pubsubs:
            pubsub.subscribe(channel)
            # Wait for the confirmation: the server has registered the subscription before we publish.
            confirm = pubsub.get_message(timeout=5)
            assert confirm is not None and confirm["type"] == "subscribe"
        with redis.Redis(host=publisher.host, port=publisher.port, decode_responses=True) as pub:
            pub.publish(channel, "hello")  # the count it returns is of this node's subscribers only: 0
        for node, pubsub in zip(others, pubsubs, strict=True):
            message = pubsub.get_message(timeout=5)
            assert message is not None, f"node {node.port} got nothing"
            assert (message["type"], message["channel"], message["data"]) == ("message", channel, "hello")
    finally:
        for pubsub, subscriber in zip(pubsubs, subscribers, strict=True):
            pubsub.close()
            subscriber.close()
