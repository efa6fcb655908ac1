-- Remove active-queue members that no row explains, keeping the counts and the
-- pending-by-age set in step (see write_status.lua for the member format).
-- KEYS: 1 active-queue sorted set, 2 active counts hash, 3 pending-by-age sorted set
-- ARGV: the members. Returns how many were removed.
local removed = 0
for _, m in ipairs(ARGV) do
    if redis.call('ZREM', KEYS[1], m) == 1 then
        redis.call('HINCRBY', KEYS[2], string.sub(m, 1, 1) .. string.sub(m, -1), -1)
        redis.call('ZREM', KEYS[3], m)
        removed = removed + 1
    end
end
return removed
