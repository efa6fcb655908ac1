-- A rebuild's last step in one shard: close its window, then drop the tombstones no running
-- rebuild needs (those not newer than the oldest snapshot still being written).
-- KEYS: 1 the shard's windows hash, 2 its meta hash.
-- ARGV: 1 the rebuild's token, 2.. tokens of usernames that held a tombstone when listed.
-- Returns how many tombstones went.
local function older(a, b)
    return #a < #b or (#a == #b and a < b)
end
redis.call('HDEL', KEYS[1], ARGV[1])
local oldest = nil
for _, version in ipairs(redis.call('HVALS', KEYS[1])) do
    if oldest == nil or older(version, oldest) then
        oldest = version
    end
end
local dropped = 0
for i = 2, #ARGV do
    local held = redis.call('HGET', KEYS[2], ARGV[i])
    local version = held and string.match(held, '^(%d+) %S+ @meta_not_found@ ')
    if version and (oldest == nil or not older(oldest, version)) then
        redis.call('HDEL', KEYS[2], ARGV[i])
        dropped = dropped + 1
    end
end
return dropped
