-- Remove queue entries no row explains (a rebuild's last sweep) and announce it: readers that
-- shift the positions they hold by each change message must hear of every change to the sets.
-- KEYS: 1 the queue set, 2 the change counter
-- ARGV: 1 the changes channel, 2 the format of a change line (records.py CHANGE_LINE), 3 the
--       counter's shard, 4 the token of a line that names no username, 5 the move "not listed";
--       then the members
-- Returns how many members were removed.
local removed = 0
for i = 6, #ARGV do
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
end
if removed > 0 then
    local seq = redis.call('INCR', KEYS[2])
    redis.call('PUBLISH', ARGV[1], string.format(ARGV[2], tonumber(ARGV[3]), seq, ARGV[4], '0', tonumber(ARGV[5]), ''))
end
return removed
