-- The write rules, shared by write_document.lua, write_members.lua and write_batch.lua
-- (shared/store.py puts this file in front of each).
--
-- Versions may exceed 2^53, so they are compared as decimal strings.
local function older(a, b)
    return #a < #b or (#a == #b and a < b)
end

-- Store one username's document unless Redis holds a newer version.
-- Returns outcome + 10 * previous status: outcome 0 stale (rejected), 1 unchanged
-- (TTL and version refreshed), 2 written; previous status 1 PENDING, 2 PROCESSING, 0 other.
local function write_document(key, version, digest, json, ttl)
    local cur = redis.call('GET', key)
    local previous = 0
    if cur then
        local cur_version = string.match(cur, '"version":(%d+)')
        if cur_version and older(version, cur_version) then
            return 0
        end
        if string.find(cur, '"status":"PENDING"', 1, true) then
            previous = 1
        elseif string.find(cur, '"status":"PROCESSING"', 1, true) then
            previous = 2
        end
        if string.match(cur, '"digest":"(%x+)"') == digest then
            local confirmed = string.gsub(cur, '"version":%d+', '"version":' .. version, 1)
            redis.call('SET', key, confirmed, 'EX', ttl)
            return 1 + 10 * previous
        end
    end
    redis.call('SET', key, json, 'EX', ttl)
    return 2 + 10 * previous
end

-- Reconcile one username's entries in its queue shard unless Redis holds a newer version.
-- members: space separated; forget: '1' when the username has no rows at all.
-- Returns 0 stale (rejected), 1 entries unchanged, 2 entries changed.
--
-- The members hash keeps "{version} {members...}" per username, and the version
-- alone once it has none, so a late writer with an older version cannot re-add
-- entries. A username with no rows left is forgotten, like its document, which
-- then only lives as a short negative cache.
--
-- A member is "rank:timestamp:id:owner:S" with S = P (pending) or R (running),
-- in the set its S names. Both sets sort in queue order, so a position is a
-- count of members before it in both, counts per priority are ZLEXCOUNTs and
-- the oldest pending job of a priority is its first member: derived, exact,
-- nothing to drift.
local function write_members(pending, running, hash, username, version, members, forget)
    local held = redis.call('HGET', hash, username) or ''
    local held_version = string.match(held, '^(%d+)') or ''
    if older(version, held_version) then
        return 0
    end
    local old_members = string.sub(held, #held_version + 2)
    local moved = old_members ~= members
    if moved then
        for m in string.gmatch(old_members, '%S+') do
            redis.call('ZREM', string.sub(m, -1) == 'P' and pending or running, m)
        end
    end
    -- Members are re-added even when unchanged: re-adding is a no-op, and
    -- repairs a set that lost some.
    for m in string.gmatch(members, '%S+') do
        redis.call('ZADD', string.sub(m, -1) == 'P' and pending or running, 0, m)
    end
    if members ~= '' then
        redis.call('HSET', hash, username, version .. ' ' .. members)
    elseif forget == '1' then
        redis.call('HDEL', hash, username)
    else
        redis.call('HSET', hash, username, version)
    end
    return moved and 2 or 1
end
