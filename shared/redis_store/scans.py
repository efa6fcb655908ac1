"""What the rebuild, `verify` and the daemon's store check read and mark in Redis, by name.

They walk the whole projection (documents, meta fields, queue entries) and
mark its lifecycle (a rebuild running, the projection complete, last refreshed);
this keeps those key names and the raw client inside the store package.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from shared.redis_store.keys import token, username_of_token
from shared.redis_store.records import Meta
from shared.redis_store.store import StatusStore

SCAN_COUNT = 1000

# Marks the projection complete only if no flush wiped the rebuild's own marker meanwhile.
_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[2], ARGV[1])
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
"""


async def documents(store: StatusStore) -> AsyncIterator[tuple[bytes, str | None]]:
    """Every document key with its username (None for a key no username of this layout writes)."""
    k = store.keys
    async for key in store.redis.scan_iter(match=k.document_pattern, count=SCAN_COUNT):
        try:
            yield key, k.username_of(key.decode())
        except ValueError:
            yield key, None


async def delete(store: StatusStore, keys: Sequence[bytes | str]) -> None:
    """Delete keys `documents` found to be an earlier layout's."""
    if keys:
        await store.redis.delete(*keys)


async def metas(store: StatusStore, shard: int) -> AsyncIterator[tuple[str, Meta]]:
    """Every (username, meta) of one shard; a field that cannot be read is deleted on the way."""
    key = store.keys.meta(shard)
    async for field, raw in store.redis.hscan_iter(key, count=SCAN_COUNT):
        try:
            yield username_of_token(field.decode()), Meta.parse(raw)
        except ValueError:
            await store.redis.hdel(key, field)


async def queue_entries(store: StatusStore, key: str) -> AsyncIterator[bytes]:
    """Every entry of one queue set (`keys.queue_sets`)."""
    async for entry, _ in store.redis.zscan_iter(key, count=SCAN_COUNT):
        yield entry


async def held(
    store: StatusStore, usernames: Sequence[str], members: Sequence[Sequence[str]]
) -> list[tuple[bytes | None, Meta | None, list[float | None]]]:
    """For each username: its document, its meta, and the score of each of its expected queue
    entries (`members`) in the set that should hold it (None: absent). One round trip."""
    k = store.keys
    commands: list[tuple[object, ...]] = []
    groups = []
    for name, expected in zip(usernames, members, strict=True):
        group: dict[str, list[str]] = {}
        for m in expected:
            group.setdefault(k.set_of(k.shard_of(name), m), []).append(m)
        groups.append(group)
        commands.append(("GET", k.document(name)))
        commands.append(("HGET", k.meta(k.shard_of(name)), token(name)))
        commands += [("ZMSCORE", key, *ms) for key, ms in group.items()]
    replies = iter(await store.run(commands))
    out = []
    for group in groups:
        doc, meta = next(replies), next(replies)
        scores = [score for _ in group for score in next(replies)]
        out.append((doc, Meta.parse(meta) if meta is not None else None, scores))
    return out


async def state(store: StatusStore) -> tuple[bool, float | None]:
    """(whether a complete projection exists, when the last full rebuild started, epoch seconds)."""
    generation, refreshed = await store.run([("EXISTS", store.keys.generation), ("GET", store.keys.refreshed)])
    return bool(generation), float(refreshed) if refreshed is not None else None


async def start_rebuild(store: StatusStore, rebuild: str) -> None:
    """Mark a clearing rebuild as running (a flush meanwhile removes the mark)."""
    await store.redis.set(store.keys.rebuild_marker, rebuild)


async def finish_rebuild(store: StatusStore, rebuild: str) -> bool:
    """Mark the projection complete, if this rebuild's mark survived; whether it did."""
    k = store.keys
    return bool(await store.redis.eval(_FINISH, 2, k.rebuild_marker, k.generation, rebuild))


async def refreshed(store: StatusStore, started: float) -> None:
    """Record when the last complete rebuild started (the refresh schedule counts from it)."""
    await store.redis.set(store.keys.refreshed, f"{started:.3f}")
