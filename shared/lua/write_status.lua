-- Store one username's projection if it is not older than what Redis holds.
-- KEYS: 1 document, 2 active-queue sorted set, 3 active-members hash
-- ARGV: 1 username, 2 version (decimal), 3 digest, 4 document JSON, 5 TTL seconds,
--       6 the username's active members (space separated), 7 change channel
-- Returns 0 stale (rejected), 1 unchanged (TTL and version refreshed), 2 written.
local cur = redis.call('GET', KEYS[1])
local version, digest = ARGV[2], ARGV[3]
local same = false
if cur then
    local cur_version = string.match(cur, '"version":(%d+)')
    -- Versions may exceed 2^53, so compare them as decimal strings.
    if cur_version and (#cur_version > #version or (#cur_version == #version and cur_version > version)) then
        return 0
    end
    same = string.match(cur, '"digest":"(%x+)"') == digest
end

-- Members are reconciled even when the document is unchanged: they are what
-- positions are counted from, and a rebuild may have emptied the sorted set.
-- Re-adding present members is a no-op, and repairs a set that lost some.
local old_members = redis.call('HGET', KEYS[3], ARGV[1]) or ''
if old_members ~= ARGV[6] then
    for m in string.gmatch(old_members, '%S+') do redis.call('ZREM', KEYS[2], m) end
    if ARGV[6] == '' then
        redis.call('HDEL', KEYS[3], ARGV[1])
    else
        redis.call('HSET', KEYS[3], ARGV[1], ARGV[6])
    end
end
for m in string.gmatch(ARGV[6], '%S+') do redis.call('ZADD', KEYS[2], 0, m) end

if same then
    local confirmed = string.gsub(cur, '"version":%d+', '"version":' .. version, 1)
    redis.call('SET', KEYS[1], confirmed, 'EX', ARGV[5])
    return 1
end
redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[5])
redis.call('PUBLISH', ARGV[7], ARGV[1] .. ' ' .. version)
return 2
