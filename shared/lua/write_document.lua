-- Store one username's document if it is not older than what Redis holds.
-- KEYS: 1 document
-- ARGV: 1 version (decimal), 2 digest, 3 document JSON, 4 TTL seconds
-- Returns outcome + 10 * previous status: outcome 0 stale (rejected), 1 unchanged
-- (TTL and version refreshed), 2 written; previous status 1 PENDING, 2 PROCESSING, 0 other.
local cur = redis.call('GET', KEYS[1])
local version = ARGV[1]
local previous = 0
if cur then
    local cur_version = string.match(cur, '"version":(%d+)')
    -- Versions may exceed 2^53, so compare them as decimal strings.
    if cur_version and (#cur_version > #version or (#cur_version == #version and cur_version > version)) then
        return 0
    end
    if string.find(cur, '"status":"PENDING"', 1, true) then
        previous = 1
    elseif string.find(cur, '"status":"PROCESSING"', 1, true) then
        previous = 2
    end
    if string.match(cur, '"digest":"(%x+)"') == ARGV[2] then
        local confirmed = string.gsub(cur, '"version":%d+', '"version":' .. version, 1)
        redis.call('SET', KEYS[1], confirmed, 'EX', ARGV[4])
        return 1 + 10 * previous
    end
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
return 2 + 10 * previous
