-- The write rules, shared by write_batch.lua (single Redis) and write_meta.lua (a cluster's
-- shard); shared/redis_store/store.py puts this file in front of each.
--
-- Per username, its shard's meta hash keeps "{version} {digest} {status} {own} {entries...}"
-- (shared/redis_store/records.py reads it): no write older than `version` is accepted,
-- whatever happened to the document meanwhile (expired, evicted). Every argument
-- comes from the caller; no script searches a document's JSON (write_document.lua reads
-- a held document's version at its fixed place only, after the prefix it is given).
--
-- Versions may exceed 2^53, so they are compared as decimal strings.
--
-- Words in @...@ are filled in when the store loads the scripts (shared/redis_store/store.py
-- `_lua`), from the codecs that define them: @pending@ is a pending queue entry's last letter
-- (shared/model/queue_entry.py), @meta_pending@, @meta_processing@ and @meta_not_found@ the
-- meta statuses (records.py).
local function older(a, b)
    return #a < #b or (#a == #b and a < b)
end

local STATUS_CODE = {['@meta_pending@'] = 1, ['@meta_processing@'] = 2}

-- Take one username's write in its shard: refuse it if older than what the meta hash
-- holds, else reconcile its queue entries and record it.
-- Returns accepted (bool), previous status code (1 pending, 2 processing, 0 other),
-- whether the document differs (digest), whether its queue entries moved, and what the
-- sets took: "-entry" per member removed and "+entry" per member added, comma-separated
-- ('' if nothing), so that a reader can shift the positions it holds instead of reading them.
--
-- An entry is "rank:time:id:owner:S" (shared/model/queue_entry.py), in the set its S
-- names. A username with no rows left (forget = '1') loses its meta field, unless a
-- rebuild is running (its shard's windows hash exists): then the field stays as a
-- tombstone (status N), so that the rebuild, reading an older snapshot, cannot bring
-- the username back however long it runs and whatever the TTLs. The rebuild prunes
-- tombstones when it ends.
--
-- Without a meta field, `doc` (the document's key, when it is on this slot: a single
-- Redis) settles it: a document still held (a deletion's NOT_FOUND, for its TTL) refuses
-- an older write, e.g. a frozen projector's batch written after a standby took over.
-- Its version is read at its fixed place only, right after @version_prefix@.
local VERSION_PREFIX = '@version_prefix@'

local function older_than_document(doc, version)
    local held = redis.call('GET', doc)
    if held and string.sub(held, 1, #VERSION_PREFIX) == VERSION_PREFIX then
        local held_version = string.match(held, '^%d+', #VERSION_PREFIX + 1)
        return held_version ~= nil and older(version, held_version)
    end
    return false
end

local function take(pending, running, meta, windows, username, version, digest, status, own, entries, forget, doc)
    local held = redis.call('HGET', meta, username)
    local held_version, held_digest, held_status, held_entries = '', '', '-', ''
    if held then
        local a, b, c, d = string.match(held, '^(%d+) (%S+) (%S) %S+ ?(.*)$')
        if a then
            held_version, held_digest, held_status, held_entries = a, b, c, d
        end
        if older(version, held_version) then
            return false, 0, false, false, ''
        end
    elseif doc and older_than_document(doc, version) then
        return false, 0, false, false, ''
    end
    local moved = held_entries ~= entries
    local taken = {}
    if moved then
        for m in string.gmatch(held_entries, '%S+') do
            if redis.call('ZREM', string.sub(m, -1) == '@pending@' and pending or running, m) == 1 then
                taken[#taken + 1] = '-' .. m
            end
        end
    end
    -- Entries are re-added even when unchanged: re-adding is a no-op, and repairs a
    -- set that lost some (a repair is a move too: positions behind it shift).
    for m in string.gmatch(entries, '%S+') do
        if redis.call('ZADD', string.sub(m, -1) == '@pending@' and pending or running, 0, m) == 1 then
            taken[#taken + 1] = '+' .. m
            moved = true
        end
    end
    if forget == '1' and redis.call('EXISTS', windows) == 0 then
        redis.call('HDEL', meta, username)
    else
        local value = version .. ' ' .. digest .. ' ' .. status .. ' ' .. own
        if entries ~= '' then
            value = value .. ' ' .. entries
        end
        redis.call('HSET', meta, username, value)
    end
    return true, STATUS_CODE[held_status] or 0, held_digest ~= digest, moved, table.concat(taken, ',')
end

-- Store a document the meta hash accepted: a new one in full, an unchanged one by
-- renewing its TTL (rewriting it only if it went missing).
-- Returns 2 written, 1 unchanged.
local function put_document(key, json, ttl, differs)
    if not differs and redis.call('EXPIRE', key, ttl) == 1 then
        return 1
    end
    redis.call('SET', key, json, 'EX', ttl)
    return 2
end
