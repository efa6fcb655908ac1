-- Remove active-queue members that no row explains from the three sets that hold
-- them (see write_status.lua for the member format).
-- KEYS: 1 active-queue sorted set, 2 active-by-state sorted set, 3 pending-by-age sorted set
-- ARGV: the members. Returns how many entries were removed, over the three sets.
local removed = 0
for _, m in ipairs(ARGV) do
    removed = removed + redis.call('ZREM', KEYS[1], m)
        + redis.call('ZREM', KEYS[2], string.sub(m, 1, 1) .. string.sub(m, -1) .. m)
        + redis.call('ZREM', KEYS[3], m)
end
return removed
