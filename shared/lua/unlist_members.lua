-- Remove active-queue members that no row explains from both sets that hold
-- them (see write_status.lua for the member format).
-- KEYS: 1 active-queue sorted set, 2 pending sorted set
-- ARGV: the members. Returns how many entries were removed, over both sets.
local removed = 0
for _, m in ipairs(ARGV) do
    removed = removed + redis.call('ZREM', KEYS[1], m) + redis.call('ZREM', KEYS[2], m)
end
return removed
