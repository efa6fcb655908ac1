-- One shard's part of a job's position on a cluster (see read_statuses.lua for a single Redis).
-- KEYS: 1 the shard's pending set, 2 its running set.
-- ARGV: 1 the job's member, 2 "1" on the job's own shard.
-- Returns {members sorting before it, the shard's size, 1 if listed here (own shard only) else 0}.
local listed = 0
if ARGV[2] == '1' then
    local own = string.sub(ARGV[1], -1) == '@pending@' and KEYS[1] or KEYS[2]
    if redis.call('ZSCORE', own, ARGV[1]) then
        listed = 1
    end
end
local before = redis.call('ZLEXCOUNT', KEYS[1], '-', '(' .. ARGV[1]) + redis.call('ZLEXCOUNT', KEYS[2], '-', '(' .. ARGV[1])
return {before, redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]), listed}
