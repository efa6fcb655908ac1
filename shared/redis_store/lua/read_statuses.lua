-- One round trip for every poll waiting on a single Redis: each document, and its job's place
-- in the queue, all read at one instant.
-- KEYS: 1 generation marker, 2 the change counter, then per shard in order its pending and
--       running sets; then per username 2: its document, its shard's meta hash
-- ARGV: 1 the number of shards; then per username 2: its token (its field in the meta hash),
--       its shard (0-based)
-- Returns {generation present (0/1), queue size, change counter, then per username 2:
-- document or false, rank or false}. The counter says which change messages the reads
-- already reflect.
local shards = tonumber(ARGV[1])
local first_set, last_set = 3, 2 + 2 * shards
local out = {redis.call('EXISTS', KEYS[1]), 0, tonumber(redis.call('GET', KEYS[2]) or '0')}
local size = nil
for i = 0, (#KEYS - last_set) / 2 - 1 do
    local doc = redis.call('GET', KEYS[last_set + 1 + 2 * i])
    local rank = false
    if doc then
        local meta = redis.call('HGET', KEYS[last_set + 2 + 2 * i], ARGV[2 + 2 * i])
        local own = meta and string.match(meta, '^%d+ %S+ %S (%S+)')
        if own and own ~= '-' then
            if not size then
                size = 0
                for s = first_set, last_set do
                    size = size + redis.call('ZCARD', KEYS[s])
                end
            end
            local own_set = first_set + 2 * tonumber(ARGV[3 + 2 * i])
            if string.sub(own, -1) ~= '@pending@' then
                own_set = own_set + 1
            end
            if redis.call('ZSCORE', KEYS[own_set], own) then
                -- Every set sorts alike: the rank is how many members of all of them sort before this one.
                rank = 0
                for s = first_set, last_set do
                    rank = rank + redis.call('ZLEXCOUNT', KEYS[s], '-', '(' .. own)
                end
            end
        end
    end
    out[4 + 2 * i] = doc
    out[5 + 2 * i] = rank
end
out[2] = size or 0
return out
