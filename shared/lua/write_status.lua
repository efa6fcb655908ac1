-- Store one username's projection if it is not older than what Redis holds.
-- KEYS: 1 document, 2 active-queue sorted set, 3 active-members hash,
--       4 pending sorted set, 5 recently changed sorted set
-- ARGV: 1 username, 2 version (decimal), 3 digest, 4 document JSON, 5 TTL seconds,
--       6 the username's active members (space separated), 7 change channel, 8 now (ms)
-- Returns outcome + 10 * previous status: outcome 0 stale (rejected), 1 unchanged
-- (TTL and version refreshed), 2 written; previous status 1 PENDING, 2 PROCESSING, 0 other.
local cur = redis.call('GET', KEYS[1])
local version, digest = ARGV[2], ARGV[3]
local same, previous = false, 0
if cur then
    local cur_version = string.match(cur, '"version":(%d+)')
    -- Versions may exceed 2^53, so compare them as decimal strings.
    if cur_version and (#cur_version > #version or (#cur_version == #version and cur_version > version)) then
        return 0
    end
    same = string.match(cur, '"digest":"(%x+)"') == digest
    if string.find(cur, '"status":"PENDING"', 1, true) then
        previous = 1
    elseif string.find(cur, '"status":"PROCESSING"', 1, true) then
        previous = 2
    end
end

-- A member is "rank:timestamp:id:owner:S" with S = P (pending) or R (running).
-- Pending members are also in the pending set; both sort in queue order, so
-- counts per priority are ZLEXCOUNTs and the oldest pending job of a priority
-- is its first member: derived, exact, nothing to drift.
local function unlist(m)
    redis.call('ZREM', KEYS[2], m)
    redis.call('ZREM', KEYS[4], m)
end
local function list(m)
    redis.call('ZADD', KEYS[2], 0, m)
    if string.sub(m, -1) == 'P' then
        redis.call('ZADD', KEYS[4], 0, m)
    end
end

-- Members are reconciled even when the document is unchanged: they are what
-- positions are counted from. Re-adding present members is a no-op, and
-- repairs a set that lost some.
local old_members = redis.call('HGET', KEYS[3], ARGV[1]) or ''
local moved = old_members ~= ARGV[6]
if moved then
    for m in string.gmatch(old_members, '%S+') do unlist(m) end
    if ARGV[6] == '' then
        redis.call('HDEL', KEYS[3], ARGV[1])
    else
        redis.call('HSET', KEYS[3], ARGV[1], ARGV[6])
    end
end
for m in string.gmatch(ARGV[6], '%S+') do list(m) end

-- Messages say "{username} {version} {1 if the active queue changed, else 0}":
-- readers drop that username's cached document, and cached positions when the queue moved.
if same then
    local confirmed = string.gsub(cur, '"version":%d+', '"version":' .. version, 1)
    redis.call('SET', KEYS[1], confirmed, 'EX', ARGV[5])
    if moved then
        redis.call('PUBLISH', ARGV[7], ARGV[1] .. ' ' .. version .. ' 1')
    end
    return 1 + 10 * previous
end
redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[5])
redis.call('ZADD', KEYS[5], ARGV[8], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -1001)
redis.call('PUBLISH', ARGV[7], ARGV[1] .. ' ' .. version .. (moved and ' 1' or ' 0'))
return 2 + 10 * previous
