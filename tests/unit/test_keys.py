"""Key names: which keys share a Redis Cluster slot, and how usernames spread over queue shards."""

from __future__ import annotations

from collections import Counter

import pytest
from redis.crc import key_slot

from shared.redis_store.keys import Keys
from shared.settings import Settings


def test_the_keys_of_one_shard_share_a_slot() -> None:
    keys = Keys("status:", shards=16)
    for shard in keys.all_shards:
        assert len({key_slot(k.encode()) for k in keys.shard_keys(shard)}) == 1


def test_shards_live_on_different_slots() -> None:
    keys = Keys("status:", shards=16)
    assert len({key_slot(keys.pending(s).encode()) for s in keys.all_shards}) == 16


def test_the_generation_and_rebuild_markers_share_a_slot() -> None:
    keys = Keys("status:")
    assert key_slot(keys.generation.encode()) == key_slot(keys.rebuild_marker.encode())


def test_documents_keep_their_contract_name_and_slot() -> None:
    keys = Keys("status:")
    assert keys.document("mike_1") == "status:mike_1"
    assert key_slot(b"status:mike_1") == key_slot(keys.document("mike_1").encode())


def test_no_service_key_matches_the_document_pattern() -> None:
    keys = Keys("status:", shards=4)
    service = [keys.generation, keys.rebuild_marker, keys.heartbeat, keys.recent, keys.estimates, keys.completions(1)]
    service += [k for s in keys.all_shards for k in keys.shard_keys(s)]
    assert all(k.startswith("status:@") for k in service)


def test_usernames_spread_evenly_and_stably_over_shards() -> None:
    keys = Keys("status:", shards=16)
    spread = Counter(keys.shard_of(f"user_{i}") for i in range(16_000))
    assert set(spread) == set(range(16))
    assert max(spread.values()) < 2 * min(spread.values())
    assert keys.shard_of("mike_1") == Keys("other:", shards=16).shard_of("mike_1")


def test_one_shard_takes_everything() -> None:
    assert {Keys(shards=1).shard_of(f"u{i}") for i in range(100)} == {0}


def test_shards_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Keys(shards=0)


def test_settings_pick_sixteen_shards_on_a_cluster_unless_told() -> None:
    assert Settings(redis_cluster=False).keys().shards == 1
    assert Settings(redis_cluster=True).keys().shards == 16
    assert Settings(redis_cluster=True, queue_shards=4).keys().shards == 4


HOSTILE = [
    "@recent", "@heartbeat", "@pending{status:0}", "@meta{status:3}", "@generation2{status:}", "@changes",
    "", " ", "a b", "A_B", "ÄÖÜ", "x" * 255, "{status:0}", "status:foo", "foo*", "[^@]*", "~", "~41", "%41",
    "a\nb", "a\tb", "../..", "é", "🙂", "null", "-",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_no_username_reaches_a_service_key_or_picks_a_slot(name: str) -> None:
    keys = Keys("status:", shards=16)
    key = keys.document(name)
    service = set(keys.typed()) | {keys.changes_channel, *keys.legacy()}
    assert key not in service
    assert not key[len("status:"):].startswith("@")
    assert "{" not in key and "}" not in key  # no hash tag of its own choosing
    assert " " not in key and "\n" not in key  # one token in a change message
    assert keys.username_of(key) == name


def test_plain_names_keep_the_contract_key_and_others_cannot_collide_with_them() -> None:
    keys = Keys("status:")
    assert keys.document("mike_1.x") == "status:mike_1.x"
    assert keys.document("Mike_1") == "status:~Mike_1"  # not normalized: never the key of mike_1
    assert keys.document("@recent") == "status:~%40recent"
    encoded = {keys.document(n) for n in HOSTILE}
    assert len(encoded) == len(set(HOSTILE))


@pytest.mark.parametrize("key", ["status:a b", "status:@recent", "status:Mike", "status:~%ZZ"])
def test_keys_this_layout_never_writes_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        Keys("status:").username_of(key)
