-- Reconcile one username's entries in its queue shard, unless Redis holds a newer version.
-- KEYS: 1 the shard's pending sorted set, 2 its running sorted set, 3 its members hash
-- ARGV: 1 username, 2 version (decimal), 3 the username's active members (space separated),
--       4 "1" if the username has no rows at all (forget it) else "0"
-- Returns 0 stale (rejected), 1 entries unchanged, 2 entries changed.
--
-- The hash keeps "{version} {members...}" per username, and the version alone
-- once it has none, so a late writer with an older version cannot re-add
-- entries. A username with no rows left is forgotten, like its document, which
-- then only lives as a short negative cache.
local held = redis.call('HGET', KEYS[3], ARGV[1]) or ''
local version = ARGV[2]
local held_version = string.match(held, '^(%d+)') or ''
if #held_version > #version or (#held_version == #version and held_version > version) then
    return 0
end
local old_members = string.sub(held, #held_version + 2)

-- A member is "rank:timestamp:id:owner:S" with S = P (pending) or R (running),
-- in the set its S names. Both sets sort in queue order, so a position is a
-- count of members before it in both, counts per priority are ZLEXCOUNTs and
-- the oldest pending job of a priority is its first member: derived, exact,
-- nothing to drift.
local function set_of(m)
    return string.sub(m, -1) == 'P' and KEYS[1] or KEYS[2]
end
local moved = old_members ~= ARGV[3]
if moved then
    for m in string.gmatch(old_members, '%S+') do
        redis.call('ZREM', set_of(m), m)
    end
end
-- Members are re-added even when unchanged: re-adding is a no-op, and
-- repairs a set that lost some.
for m in string.gmatch(ARGV[3], '%S+') do
    redis.call('ZADD', set_of(m), 0, m)
end
if ARGV[4] == '1' and ARGV[3] == '' then
    redis.call('HDEL', KEYS[3], ARGV[1])
elseif ARGV[3] == '' then
    redis.call('HSET', KEYS[3], ARGV[1], version)
else
    redis.call('HSET', KEYS[3], ARGV[1], version .. ' ' .. ARGV[3])
end
return moved and 2 or 1
